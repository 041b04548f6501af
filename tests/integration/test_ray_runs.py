"""`pytest bench --strategy ray` end to end: the saved run records the Ray it ran on, on a local instance and
on a running cluster joined with --ray-address (started here with the venv's `ray` CLI, left running by the
run, stopped by this module).

Each test starts Ray (seconds) and `pytest bench`, so the module is in the slow tier; it is skipped with the
reason where Ray is not installed. The runs are as small as a run with Ray gets: 4 small models, 2 frames,
one round.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.helpers.run_bench import bench_subprocess

ray = pytest.importorskip("ray", reason="Ray is not installed: `pip install -e '.[ray]'`")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="Ray's CLI cluster: Linux only")]

RUN = ("--strategy", "ray", "--frames", "2", "--model-size", "small", "--rounds", "1", "--warmup", "0",
       "--provider", "cpu", "--no-history", "--no-report", "--probe-seconds", "0.25")
RAY_CLI = Path(sys.executable).with_name("ray")  # the venv's: the cluster's workers then run this Python
# Ray >= 2.5x starts a `ray start` cluster with token authentication by default and a driver joining it only
# sends the token (~/.ray/auth_token) when told to (docs/ray.md): said explicitly on both sides, so the test
# does not depend on that default.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def saved_run(path: Path) -> dict:
    return json.loads(path.read_text())


def check_ray_recorded(run: dict, joined: bool, address: str) -> dict:
    """The saved run's machine_info["fanbench"]["ray"] agrees with its ray benchmarks' strategy_info; returned."""
    recorded = run["machine_info"]["fanbench"]["ray"]
    infos = [benchmark["extra_info"]["strategy_info"] for benchmark in run["benchmarks"]]
    assert len(infos) == 2, "the offline and the streaming benchmark"
    assert recorded["version"] == ray.__version__
    assert recorded["joined"] is joined
    assert recorded["requested_address"] == address
    # One Ray for the run: every benchmark names the same address and start-up (the second joins nothing).
    assert {info["ray_gcs_address"] for info in infos} == {recorded["address"]}
    assert {info["ray_startup_s"] for info in infos} == {recorded["startup_s"]}
    assert recorded["startup_s"] > 0
    models = [each["model"] for each in infos[0]["ray_placement"]]
    assert sorted(recorded["placement"]) == sorted(models)
    placed_on = {where["node_id"] for wheres in recorded["placement"].values() for where in wheres}
    assert placed_on == {node["node_id"] for node in recorded["nodes"]}
    assert recorded["gpus_per_actor"] == 0.0  # the CPU provider asks for no GPU
    return recorded


def test_a_saved_run_with_a_local_ray_records_it_in_machine_info(tmp_path: Path) -> None:
    result = bench_subprocess(*RUN, f"--benchmark-json={tmp_path / 'run.json'}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    recorded = check_ray_recorded(saved_run(tmp_path / "run.json"), joined=False, address="local")
    assert len(recorded["nodes"]) == 1


@dataclass
class Cluster:
    address: str  # host:port of its GCS, as given to --ray-address
    temp_dir: Path

    def processes(self) -> list[psutil.Process]:
        """The cluster's processes: those naming its temporary directory (GCS server, raylet, monitors) and
        their descendants (workers, agents; Ray renames those, so their command line no longer names it).
        Never another Ray of this machine: `ray stop` would end every one, other users' included."""
        found: dict[int, psutil.Process] = {}
        me = psutil.Process()
        ours = {me.pid, *(process.pid for process in me.parents())}  # never this test's own processes
        for process in psutil.process_iter():
            try:
                if process.pid not in ours and str(self.temp_dir) in " ".join(process.cmdline()):
                    found[process.pid] = process
                    found.update((child.pid, child) for child in process.children(recursive=True))
            except psutil.Error:
                continue
        return list(found.values())


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie (a killed daemon waits there until init reaps it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop(cluster: Cluster) -> None:
    """`ray stop --force`, for this cluster only: SIGKILL to its processes, waited for."""
    processes = cluster.processes()
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + 30
    while any(running(process) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def ray_cluster() -> Iterator[Cluster]:
    if not RAY_CLI.is_file():
        pytest.skip(f"no `ray` command next to {sys.executable}")
    # Short: Ray's socket paths under it must stay below ~107 characters.
    cluster = Cluster("", Path(tempfile.mkdtemp(prefix="fbc-", dir="/tmp")))
    port = free_port()
    try:
        # The dashboard port too: by default 8265, which another Ray on this machine may hold.
        started = subprocess.run(
            [str(RAY_CLI), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             f"--dashboard-port={free_port()}",
             f"--temp-dir={cluster.temp_dir}", "--disable-usage-stats"],
            env={**os.environ, **AUTH}, capture_output=True, text=True, timeout=120, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        cluster.address = f"127.0.0.1:{port}"
        yield cluster
    finally:
        stop(cluster)
        left = [process for process in cluster.processes() if running(process)]
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        assert not left, f"the test cluster's processes outlived `stop`: {left}"


# Run in a subprocess, as another driver: the cluster's actors by pid, with their state, why they died, and
# when they started and ended (ms since the epoch).
ACTORS = """
import json, re, sys
import ray
from ray._private import state  # the GCS's actor table: the state API needs the dashboard, off here
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
print(json.dumps({actor["Pid"]: {"class": actor["ActorClassName"], "state": actor["State"],
                                 "reason": "".join(re.findall(r"reason: (\\w+)", str(actor["DeathCause"]))),
                                 "start": actor["StartTime"], "end": actor["EndTime"]}
                  for actor in state.actors().values()}))
"""


def cluster_actors(address: str) -> dict[int, dict]:
    listed = subprocess.run([sys.executable, "-c", ACTORS, address], env={**os.environ, **AUTH},
                            capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, f"the cluster is no longer reachable: {listed.stderr[-2000:]}"
    return {int(pid): actor for pid, actor in json.loads(listed.stdout.splitlines()[-1]).items()}


def test_joining_a_running_cluster_leaves_it_running_and_kills_only_the_runs_actors(tmp_path: Path,
                                                                                   ray_cluster: Cluster) -> None:
    cluster_processes = {process.pid for process in ray_cluster.processes()}
    result = bench_subprocess(*RUN, "--ray-address", ray_cluster.address,
                              f"--benchmark-json={tmp_path / 'run.json'}", env={**os.environ, **AUTH})
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run = saved_run(tmp_path / "run.json")
    recorded = check_ray_recorded(run, joined=True, address=ray_cluster.address)
    assert recorded["address"].endswith(ray_cluster.address.rsplit(":", 1)[1])  # the cluster's GCS, by its port

    # The cluster runs on: its GCS server and raylet are the ones started before the run, and it answers.
    alive = {process.pid for process in ray_cluster.processes() if running(process)}
    assert cluster_processes <= alive, "the run ended processes of the cluster it joined"
    actors = cluster_actors(ray_cluster.address)
    # The benchmarks in the order they ran (offline, then streaming), each with its own 4 actors.
    pids = [[each["pid"] for each in benchmark["extra_info"]["strategy_info"]["ray_placement"]]
            for benchmark in run["benchmarks"]]
    run_pids = {pid for benchmark in pids for pid in benchmark}
    assert len(run_pids) == 8, "4 actors for each of the 2 benchmarks"
    assert run_pids <= set(actors), f"the run's actors are not in the cluster's table: {actors}"
    for pid in run_pids:
        # Released by the run (killed, or its last handle dropped: REF_DELETED or OUT_OF_SCOPE, as Ray 2.60
        # names it by timing; Ray records whichever it sees first), not ended by the cluster because the run's
        # driver left (OWNER_DIED).
        assert actors[pid]["class"] == "ModelActor"
        assert actors[pid]["state"] == "DEAD"
        assert actors[pid]["reason"] in {"RAY_KILL", "REF_DELETED", "OUT_OF_SCOPE"}, actors[pid]
        assert 0 < actors[pid]["start"] <= actors[pid]["end"], actors[pid]
    # Each benchmark ended its actors when it closed: the first's were gone before the second's started.
    assert max(actors[pid]["end"] for pid in pids[0]) <= min(actors[pid]["start"] for pid in pids[1]), actors
    left = [process for process in ray_cluster.processes() if process.pid in run_pids and running(process)]
    assert not left, f"the run's actor processes still run: {left}"
