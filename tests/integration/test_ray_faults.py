"""The `ray` strategy on a real local Ray instance: an actor killed mid-run, Ctrl-C and SIGTERM.

Every test starts Ray (seconds), so the module is in the slow tier, and it is skipped with the
reason where Ray is not installed. No assertion depends on timing: the period only makes a run
long enough to be interrupted midway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from strategies import StrategyError
from tests.helpers.run_bench import ROOT, TINY_RUN, BenchSession, bench_subprocess, shm_mapped_by

ray = pytest.importorskip("ray", reason="Ray is not installed: `pip install -e '.[ray]'`")
from strategies import ray as ray_strategy  # noqa: E402  (after the skip: it is about Ray)
from strategies.runtime import ray_instance  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="uses /dev/shm and Linux signals")]

RAY_PROCESSES = ("raylet", "gcs_server", "ray::")
SHM = Path("/dev/shm")


def ray_processes(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those of `processes` that are Ray's: its raylet, its GCS server, its workers and actors."""
    found = []
    for process in processes:
        try:
            text = " ".join(process.cmdline()) or process.name()
        except psutil.Error:
            continue
        if any(name in text for name in RAY_PROCESSES):
            found.append(process)
    return found


def fb_ray_dirs() -> set[str]:
    return {path.name for path in Path("/tmp").glob("fb-ray-*")}


def test_actor_killed_mid_run_fails_in_one_line_and_leaves_nothing(tiny_workload) -> None:
    dirs_before = fb_ray_dirs()
    strategy = ray_strategy.RayActors(tiny_workload)
    strategy.open()
    try:
        started = ray_processes(psutil.Process().children(recursive=True))
        assert started, "the local Ray instance runs under this process"
        shm = shm_mapped_by(started)
        victim = strategy.pids[1]
        # Frames arrive every 0.5 s: the kill lands while frames are still to come.
        killer = threading.Timer(0.6, os.kill, (victim, signal.SIGKILL))
        killer.start()
        with pytest.raises(StrategyError) as failure:
            strategy.run(period=0.5)
        killer.join()
    finally:
        strategy.close()
        ray_instance.shutdown_ray()
    message = str(failure.value)
    assert "\n" not in message, message
    assert f"model {tiny_workload.names[1]!r}" in message, message
    assert "died" in message, message
    assert message.startswith("ray: "), message
    _, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, f"Ray processes left running: {alive}"
    assert fb_ray_dirs() <= dirs_before, f"Ray's temporary directory left: {fb_ray_dirs() - dirs_before}"
    leaked = sorted(name for name in shm if (SHM / name).exists())
    assert not leaked, f"left in /dev/shm: {leaked}"


def test_a_closed_strategy_refuses_to_run(tiny_workload) -> None:
    strategy = ray_strategy.RayActors(tiny_workload)
    strategy.open()
    strategy.close()
    try:
        with pytest.raises(StrategyError, match="closed"):
            strategy.run()
    finally:
        ray_instance.shutdown_ray()


def test_info_records_version_address_placement_and_startup(tiny_workload) -> None:
    try:
        with ray_strategy.RayActors(tiny_workload) as strategy:
            info = strategy.info()
    finally:
        ray_instance.shutdown_ray()
    assert info["ray_version"] == ray.__version__
    assert info["ray_address"] == "local"
    assert info["ray_gcs_address"]
    assert info["ray_startup_s"] > 0
    assert [each["model"] for each in info["ray_placement"]] == tiny_workload.names
    assert all(each["pid"] > 0 and each["node_ip"] for each in info["ray_placement"])


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["SIGINT", "SIGTERM"])
def test_signal_during_a_ray_run_stops_cleanly(tmp_path: Path, signum: signal.Signals, group: bool) -> None:
    dirs_before = fb_ray_dirs()
    session = BenchSession(tmp_path, "ray")
    try:
        session.wait_until_timing("ray")
        # Ray's start-up takes seconds: wait until the actors run, then see every process of the run.
        main = psutil.Process(session.process.pid)
        deadline = 120
        while deadline > 0 and not any("ModelActor" in " ".join(p.cmdline()) for p in ray_processes(
                main.children(recursive=True))):
            threading.Event().wait(0.5)
            deadline -= 0.5
        threading.Event().wait(1.0)
        descendants = main.children(recursive=True)
        assert ray_processes(descendants), "the run had not started Ray"
        status, output = session.stop(signum, group)
    finally:
        session.kill()
    assert status == pytest.ExitCode.INTERRUPTED, output
    _, alive = psutil.wait_procs(descendants, timeout=15)
    assert not alive, f"processes left running: {alive}\n{output}"
    assert fb_ray_dirs() <= dirs_before, f"Ray's temporary directory left: {fb_ray_dirs() - dirs_before}"
    leaked = sorted(name for name in session.shm if (SHM / name).exists())
    assert not leaked, f"left in /dev/shm: {leaked}"


# ---------------------------------------------------------------- Ray's own failures (issue 20)

def instance_dirs(processes: list[psutil.Process]) -> set[Path]:
    """The local instances' directories these processes name (the GCS server's --log_dir is under it)."""
    dirs = set()
    for process in processes:
        try:
            words = process.cmdline()
        except psutil.Error:
            continue
        for word in words:
            if "/fb-ray-" in word:
                head, _, rest = word.partition("/fb-ray-")
                dirs.add(Path(head.split("=")[-1] + "/fb-ray-" + rest.split("/")[0]))
    return dirs


def naming(dirs: set[Path]) -> list[psutil.Process]:
    """Running processes whose command line names one of `dirs`."""
    found = []
    for process in psutil.process_iter():
        try:
            if any(str(path) in " ".join(process.cmdline()) for path in dirs):
                found.append(process)
        except psutil.Error:
            continue
    return found


def wait_for_actors(main: psutil.Process) -> list[psutil.Process]:
    """The run's descendants once its Ray actors run (Ray's start-up takes seconds)."""
    for _ in range(240):
        descendants = main.children(recursive=True)
        if any("ModelActor" in " ".join(p.cmdline()) for p in ray_processes(descendants)):
            threading.Event().wait(1.0)  # the agents and every actor up
            return main.children(recursive=True)
        threading.Event().wait(0.5)
    pytest.fail("the run's Ray actors never started")


@pytest.mark.parametrize("victim", ["gcs_server", "raylet"])
def test_a_lost_gcs_server_or_raylet_ends_the_run_in_one_line_and_leaves_nothing(tmp_path: Path, victim: str) -> None:
    """kill -9 of the local instance's GCS server (Ray would end the driver, silently, 60 s later) or raylet
    (Ray ends the driver at its next object-store call, printing the raylet's log twice): either the
    benchmark fails in one line and the instance is removed, or, where Ray ended the process first, its
    guard removes the instance and says so in one line."""
    session = BenchSession(tmp_path, "ray", "-x")
    try:
        session.wait_until_timing("ray")
        descendants = wait_for_actors(psutil.Process(session.process.pid))
        dirs = instance_dirs(descendants)
        assert dirs, "the run's local Ray instance names its directory"
        (process,) = [p for p in descendants if p.name() == victim]
        process.kill()
        rest, _ = session.process.communicate(timeout=120)
        output = "".join(session.output) + rest.decode(errors="replace")
    finally:
        session.kill()
    assert session.process.returncode == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    failures = [line for line in output.splitlines()
                if f"instance's {victim} (pid {process.pid}) died on frame" in line
                or "ended without stopping its local Ray instance" in line]
    assert failures, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert "Raylet is terminated" not in output, output[-3000:]
    _, alive = psutil.wait_procs(descendants, timeout=30)
    assert not alive, f"processes left running: {alive}\n{output[-3000:]}"
    assert not naming(dirs), "processes of the instance left running"
    assert not any(path.exists() for path in dirs), f"the instance's directory left: {dirs}"


def test_sigterm_during_ray_init_exits_2_and_leaves_nothing(tmp_path: Path) -> None:
    """Ray's ray.init installs a SIGTERM handler (SystemExit) in the main thread: the SIGTERM failed one test
    and the run went on. Now ray.init runs in a thread of its own and the suite's handler ends the run."""
    session = BenchSession(tmp_path, "ray")
    try:
        session.wait_until_timing("ray")
        main = psutil.Process(session.process.pid)
        seen: dict[int, psutil.Process] = {}
        for _ in range(600):  # until ray.init has started the GCS server: it runs for seconds after that
            seen.update((p.pid, p) for p in main.children(recursive=True))
            if any(p.name() == "gcs_server" for p in seen.values() if p.is_running()):
                break
            threading.Event().wait(0.05)
        else:
            pytest.fail("ray.init never started a GCS server")
        assert not any("ModelActor" in " ".join(p.cmdline()) for p in ray_processes(list(seen.values()))), \
            "too late: the actors already run"
        dirs = instance_dirs(list(seen.values()))
        status, output = session.stop(signal.SIGTERM, group=False)
    finally:
        session.kill()
    assert status == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert "SystemExit" not in output, output[-3000:]
    _, alive = psutil.wait_procs(list(seen.values()), timeout=30)
    assert not alive, f"processes left running: {alive}\n{output[-3000:]}"
    assert not naming(dirs), "processes of the instance left running"
    assert not any(path.exists() for path in dirs), f"the instance's directory left: {dirs}"


@pytest.mark.parametrize("address", ["127.0.0.1:1", "auto"])
def test_a_cluster_that_is_not_there_fails_each_benchmark_in_one_line(address: str, tmp_path: Path) -> None:
    """Nothing listening at 127.0.0.1:1 hung forever (no --time-limit applies to ray.init); `auto` with no
    cluster gave the right message in a 70-line traceback. `auto` finds a cluster through the file Ray keeps
    under its temporary root (/tmp/ray/ray_current_cluster): a root of the test's own, so that a cluster
    another job started on this machine is not found."""
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(tmp_path)}
    result = bench_subprocess("--strategy", "ray", "--ray-address", address, *TINY_RUN, env=env, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith(f"ray: could not join the Ray cluster at {address!r}")]
    assert len(lines) == 2, output[-3000:]  # the offline and the streaming benchmark
    assert "Traceback" not in output, output[-3000:]
    assert not any(path in output for path in ("strategies/ray.py:", "strategies/runtime/ray_instance.py:")), output[-3000:]


def test_an_address_that_never_answers_is_given_up_after_the_join_bound() -> None:
    """A port that accepts connections but is no Ray GCS: ray.init retries for minutes; fanbench waits
    JOIN_TIMEOUT_S (lowered here), then fails in one line, and a later benchmark is refused at once."""
    script = (
        "import socket, sys, ray\n"
        "from strategies.runtime import ray_instance as rs\n"
        "rs.JOIN_TIMEOUT_S = 2.0\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "address = f'127.0.0.1:{server.getsockname()[1]}'\n"
        "for _ in range(2):\n"
        "    try:\n"
        "        rs.ray_instance(ray, address)\n"
        "    except rs.StrategyError as error:\n"
        "        print(error)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = result.stdout.splitlines()
    assert first.startswith("ray: could not join the Ray cluster at '127.0.0.1:"), first
    assert "within 2 s" in first, first
    assert second.startswith(first), second
    assert "not retried" in second, second
