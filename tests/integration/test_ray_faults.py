"""The `ray` strategy on a real local Ray instance: an actor killed mid-run, Ctrl-C and SIGTERM.

Every test starts Ray (seconds), so the module is in the slow tier, and it is skipped with the
reason where Ray is not installed. No assertion depends on timing: the period only makes a run
long enough to be interrupted midway.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import psutil
import pytest

from strategies import StrategyError
from tests.helpers.run_bench import BenchSession, shm_mapped_by

ray = pytest.importorskip("ray", reason="Ray is not installed: `pip install -e '.[ray]'`")
from strategies import ray as ray_strategy  # noqa: E402  (after the skip: it is about Ray)

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
        ray_strategy.shutdown_ray()
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
        ray_strategy.shutdown_ray()


def test_info_records_version_address_placement_and_startup(tiny_workload) -> None:
    try:
        with ray_strategy.RayActors(tiny_workload) as strategy:
            info = strategy.info()
    finally:
        ray_strategy.shutdown_ray()
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
