"""Faults during a run: a worker process that dies or hangs, a lane that raises, an interrupt.

Every test fails a run for real (a worker killed by pid, a real segfault, a stuck worker, an
exception inside `session.run`, KeyboardInterrupt in the main thread) and then checks that
the error names the strategy, the model and the cause, and that no child process is left.
No assertion depends on timing: periods only make runs long enough to be interrupted midway.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from strategies import STRATEGIES, RunTimeout, StrategyError, Workload, get_strategy
from strategies.base import RunStopped
from strategies.processes import Processes
from strategies.runtime.shared_frames import SHM_DIR, block_prefix
from strategies.runtime.workers import WorkerPool
from tests.helpers.faults import FaultyProcesses, FaultySession, fault, never_ready
from tests.helpers.run_bench import bench_inprocess
from tests.helpers.workloads import tiny_workload

pytest_plugins = ["pytester"]

LONG_PERIOD = 0.05  # with LONG_FRAMES, a run that would take 5 s unless stopped
LONG_FRAMES = 100


@pytest.fixture(scope="module")
def short(model_dir: Path) -> Workload:
    return tiny_workload(model_dir, models=2, frames=6, batch=1)


@pytest.fixture(scope="module")
def long(model_dir: Path) -> Workload:
    return tiny_workload(model_dir, models=2, frames=LONG_FRAMES, batch=1)


@pytest.fixture
def no_leftover_children() -> Iterator[None]:
    """After the test: every child process the test started is gone (not even a zombie)."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    left = [child for child in psutil.Process().children(recursive=True)
            if child.pid not in before and not is_resource_tracker(child)]
    assert not left, f"child processes left behind: {left}"


def is_resource_tracker(process: psutil.Process) -> bool:
    """multiprocessing's resource tracker: started with the first spawned process, it lives as long as
    this interpreter by design (it unlinks whatever shared memory a crashed process leaves)."""
    try:
        return any("resource_tracker" in part for part in process.cmdline())
    except psutil.NoSuchProcess:
        return False


def interrupt() -> None:
    """Ctrl-C: a real SIGINT to this process, which Linux delivers to the main thread."""
    os.kill(os.getpid(), signal.SIGINT)


def later(delay: float, action) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()
    return timer


def model_name(workload: Workload, index: int) -> str:
    return re.escape(repr(workload.names[index]))


# --- worker processes -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_worker_killed_mid_run_fails_naming_model_and_signal(long: Workload, signum: signal.Signals) -> None:
    with Processes(long) as strategy:
        victim = strategy.pool.pids[1]
        timer = later(0.5, lambda: os.kill(victim, signum))
        # The time limit only bounds the test if death went unnoticed: then it fails with RunTimeout.
        with pytest.raises(StrategyError, match=rf"processes: worker 'process-1' \(model {model_name(long, 1)}\) "
                                                rf"died \(killed by signal {signum.name}\)"):
            strategy.run(period=LONG_PERIOD, time_limit=60)
        timer.join()
    assert not psutil.pid_exists(victim)


@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
@pytest.mark.parametrize(("how", "reason"), [
    ("exit", r"died \(exit code 3\)"),
    ("segfault", r"died \(killed by signal SIGSEGV\)"),
    ("raise", r"failed: model {model} failed on frame 2: injected fault"),
])
def test_worker_fault_fails_naming_model_and_cause(short: Workload, how: str, reason: str) -> None:
    class Faulty(FaultyProcesses):
        fault_at = (1, 2, how)

    with Faulty(short) as strategy:
        expected = rf"processes: worker 'process-1' \(model {model_name(short, 1)}\) " \
                   + reason.format(model=model_name(short, 1))
        with pytest.raises(StrategyError, match=expected):
            strategy.run(time_limit=60)


@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
def test_a_worker_that_never_gets_ready_fails_the_start_naming_it_and_is_killed() -> None:
    pool = WorkerPool("processes", ["process-0", "process-1"], ["m0", "m1"])
    try:
        with pytest.raises(RunTimeout, match=r"^processes: worker 'process-0' \(model 'm0'\), worker 'process-1' "
                                             r"\(model 'm1'\) did not start \(a new Python, onnxruntime, the model's "
                                             r"session\) within 0\.5 s; the workers are stopped\.$"):
            pool.start(never_ready, lambda index: (), timeout=0.5)
        workers = [psutil.Process(pid) for pid in pool.pids]
    finally:
        pool.close()
    assert not [worker for worker in workers if worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE]


def test_hung_worker_is_stopped_at_the_time_limit(short: Workload) -> None:
    class Hanging(FaultyProcesses):
        fault_at = (0, 1, "hang")

    with Hanging(short) as strategy:
        pid = strategy.pool.pids[0]
        with pytest.raises(RunTimeout, match=rf"worker 'process-0' \(model {model_name(short, 0)}\) "
                                             r"did not answer within"):
            strategy.run(time_limit=0.5)
    assert not psutil.pid_exists(pid)  # killed by close, although it never reads its pipe again


@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
def test_workers_stop_themselves_at_the_time_limit(long: Workload) -> None:
    with Processes(long) as strategy:
        with pytest.raises(RunTimeout, match=r"processes: worker 'process-\d' .* stopped: model .* before frame \d+: "
                                             r"the run passed its time limit of 0.3 s"):
            strategy.run(period=LONG_PERIOD, time_limit=0.3)


@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
def test_interrupt_while_workers_run_kills_them(long: Workload) -> None:
    with pytest.raises(KeyboardInterrupt), Processes(long) as strategy:  # noqa: PT012
        pids = strategy.pool.pids
        later(0.5, interrupt)  # Ctrl-C mid-run
        strategy.run(period=LONG_PERIOD, time_limit=60)
    assert not any(psutil.pid_exists(pid) for pid in pids)


@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
def test_killed_manager_leaves_no_temporary_folder(long: Workload) -> None:
    """The Manager serving `processes`' frames listens on a socket in a temporary folder; killed,
    it cannot remove the folder itself (it left a `pymp-*` folder behind): `close` removes it."""
    before = set(os.listdir(tempfile.gettempdir()))
    with Processes(long) as strategy:
        os.kill(strategy.manager._process.pid, signal.SIGKILL)
        with pytest.raises(StrategyError, match=r"processes: worker 'process-\d' .* failed: model .* failed on frame 0"):
            strategy.run(period=LONG_PERIOD, time_limit=60)
    assert set(os.listdir(tempfile.gettempdir())) <= before


def run_bench(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """`pytest bench` in this process (its workers are this test's children), on a tiny workload."""
    return bench_inprocess(pytester, "--frames", "4", "--models", "2", "--model-size", "tiny",
                              "--frame-size", "16x16", "--rounds", "1", "--warmup", "0", "--no-history", "--no-report",
                              "--no-progress", "--threads", "default", "--scenario", "offline", *args)


@pytest.mark.slow
@pytest.mark.usefixtures("no_leftover_children")
@pytest.mark.parametrize("name", ["processes", "processes_shm"])
@pytest.mark.parametrize(("signum", "args", "reason"), [
    (signal.SIGKILL, [], r"died \(killed by signal SIGKILL\)\.$"),
    (signal.SIGSTOP, ["--time-limit", "1"], r"did not answer within \d+\.\d s; the workers are stopped\. "
                                            r"Raise the limit with --time-limit SECONDS if the run is just slow\.$"),
], ids=["killed", "stopped"])
def test_a_lost_worker_fails_its_benchmark_in_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                       name: str, signum: signal.Signals, args: list[str],
                                                       reason: str) -> None:
    """A worker killed (or stopped, then past --time-limit) as the run starts: the benchmark fails
    with one line naming the worker, its model and the cause, not a traceback; nothing is left."""
    cls = STRATEGIES[name]
    execute = cls._execute

    def lose_a_worker(self, arrivals):
        os.kill(self.pool.pids[1], signum)
        return execute(self, arrivals)

    monkeypatch.setattr(cls, "_execute", lose_a_worker)
    result = run_bench(pytester, "--strategy", name, *args)
    output = result.outlines + result.errlines
    assert result.ret == pytest.ExitCode.TESTS_FAILED, "\n".join(output)
    line = rf"^{name}-intra\S+: {name}: worker 'process-1' \(model '[^']+'\) {reason}"
    assert [text for text in output if re.search(line, text)], "\n".join(output)
    assert not [text for text in output if "Traceback" in text or text.startswith("E ") or "strategies/" in text], \
        "\n".join(output)
    assert not [entry for entry in os.listdir(SHM_DIR) if entry.startswith(block_prefix())]


# --- lanes in this process ---------------------------------------------------------------

def inject(strategy, model: int, at: int, action) -> list[FaultySession]:
    """Wrap every session; the one of `model` runs `action` on its `at`-th call."""
    strategy.sessions = [FaultySession(session, at if index == model else -1, action)
                         for index, session in enumerate(strategy.sessions)]
    return strategy.sessions


@pytest.mark.parametrize("name", ["threads", "asyncio", "serial"])
def test_lane_error_reports_model_and_frame_and_stops_the_rest(long: Workload, name: str) -> None:
    with get_strategy(name)(long) as strategy:
        sessions = inject(strategy, model=1, at=3, action=lambda: fault("raise"))
        with pytest.raises(StrategyError, match=rf"^{name}: model {model_name(long, 1)} failed on frame 3: injected fault$"):
            strategy.run(period=LONG_PERIOD, time_limit=60)
    # The other model stopped early instead of running its remaining frames.
    assert sessions[0].calls < LONG_FRAMES


def test_threads_stop_promptly_when_interrupted(long: Workload) -> None:
    with pytest.raises(KeyboardInterrupt), get_strategy("threads")(long) as strategy:  # noqa: PT012
        sessions = inject(strategy, model=0, at=2, action=interrupt)
        strategy.run(period=LONG_PERIOD, time_limit=60)
    # Leaving `with` stopped the lanes: they did not run every frame before close returned.
    assert all(session.calls < LONG_FRAMES for session in sessions)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("fanbench-")]


def test_stop_from_another_thread_raises_run_stopped(long: Workload) -> None:
    with get_strategy("threads")(long) as strategy:
        sessions = inject(strategy, model=0, at=2, action=strategy.stop)
        with pytest.raises(RunStopped, match="stopped before it finished"):
            strategy.run(period=LONG_PERIOD, time_limit=60)
        assert all(session.calls < LONG_FRAMES for session in sessions)
        assert strategy.run(time_limit=60).outputs  # the next run starts afresh


def test_asyncio_interrupted_inside_session_run_leaves_no_pending_task(long: Workload) -> None:
    def raise_interrupt() -> None:
        raise KeyboardInterrupt  # as Python's SIGINT handler does inside the running code

    strategy = get_strategy("asyncio")(long)
    strategy.open()
    try:
        inject(strategy, model=0, at=2, action=raise_interrupt)
        with pytest.raises(KeyboardInterrupt):
            strategy.run(time_limit=60)
        # The interrupt left the loop stopped mid-task; the run finished every task on its way out.
        assert not asyncio.all_tasks(strategy.loop)
    finally:
        strategy.close()


def test_time_limit_must_be_positive(short: Workload) -> None:
    with get_strategy("serial")(short) as strategy, pytest.raises(ValueError, match="time_limit must be positive"):
        strategy.run(time_limit=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in ("processes", "processes_shm") if name in STRATEGIES])
def test_worker_and_manager_processes_outlive_a_group_sigterm_and_close_still_ends_them(short, no_leftover_children,
                                                                                        name: str) -> None:
    # `timeout`, a CI cancel or systemd signal the whole process group: the parent handles it and stops
    # its children in order. A child that died of it showed up as a worker failure instead.
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    strategy = get_strategy(name)(short)
    strategy.open()
    try:
        children = [child for child in psutil.Process().children(recursive=True)
                    if child.pid not in before and not is_resource_tracker(child)]
        assert len(children) == len(short.models) + (name == "processes")  # the workers, and the Manager
        for child in children:
            os.kill(child.pid, signal.SIGTERM)
        result = strategy.run()
    finally:
        strategy.close()
    assert [len(outputs) for outputs in result.outputs] == [short.frame_count] * len(short.models)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
