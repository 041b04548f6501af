"""The Ray a process uses, one per process, shared by every `ray` benchmark: a local instance it starts,
or a running cluster it joins (only left)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from strategies.base import StrategyError
from strategies.settings import usable_cores

#: How often the driver wakes while it waits (for ray.init, for an actor's answer), to honour signals, stop and deadline.
POLL_S = 0.2

#: Joining: a TCP probe of PROBE_S first (nothing listening fails at once), then ray.init gets JOIN_TIMEOUT_S
#: (Ray retries a silent address for minutes). Starting a local instance takes about 5 s on 2 busy cores.
PROBE_S = 5.0
JOIN_TIMEOUT_S = 60.0
START_TIMEOUT_S = 120.0
#: How often, at most, a joined cluster's GCS is probed while the driver waits.
GCS_PROBE_EVERY_S = 2.0
CORE_PROCESSES = ("gcs_server", "raylet")
#: After Ray's own shutdown (or none, when the instance is broken), how long its processes get before SIGKILL.
GRACE_S = 2.0


@dataclass
class RayInstance:
    """A local instance (`temp_dir`: its files) or a joined cluster. A local instance knows its processes, to end
    all of them and no other; a guard process (ray_guard.py) does it if this process dies first."""

    temp_dir: str | None
    startup_s: float  # ray.init's duration: starting the local instance, or joining the cluster
    address: str  # the GCS address
    processes: dict[int, psutil.Process] = field(default_factory=dict)
    cores: dict[int, str] = field(default_factory=dict)  # pid -> name of its GCS server and raylet
    guard: subprocess.Popen[bytes] | None = None
    keeper: _Init | None = None  # the thread that ran ray.init, kept until the instance is removed
    quiet: ExitStack = field(default_factory=ExitStack)  # raylet_death_unprinted, for a local instance's life
    probed_at: float = 0.0

    @property
    def joined(self) -> bool:
        return self.temp_dir is None

    def track(self, processes: Iterable[psutil.Process] = ()) -> None:
        """Add `processes` and every new descendant of the instance's processes, each told to the guard."""
        for process in [*processes, *self.processes.values()]:
            try:
                found = [process, *process.children(recursive=True)]
            except psutil.Error:
                continue
            for each in found:
                if each.pid not in self.processes:
                    self.processes[each.pid] = each
                    self._tell_guard(each)
                    with contextlib.suppress(psutil.Error):
                        if each.name() in CORE_PROCESSES:  # named now: a dead process has no name to read
                            self.cores[each.pid] = each.name()

    def _tell_guard(self, process: psutil.Process) -> None:
        if self.guard is None or self.guard.stdin is None:
            return
        with contextlib.suppress(OSError, psutil.Error):  # the process already ended, or the guard did
            self.guard.stdin.write(f"{process.pid} {process.create_time()}\n".encode())
            self.guard.stdin.flush()

    def lost(self) -> str | None:
        """What of the instance is gone, in words (its GCS server or raylet; a joined cluster's GCS), or None."""
        if self.joined:
            now = time.monotonic()
            if now - self.probed_at < GCS_PROBE_EVERY_S:
                return None
            self.probed_at = now
            problem = probe(self.address)
            return None if problem is None else f"the cluster's GCS at {self.address} is gone ({problem})"
        for pid, name in self.cores.items():
            if not running(self.processes[pid]):
                return f"the local Ray instance's {name} (pid {pid}) died"
        return None

    def remove(self, gracefully: bool, connected: bool = True) -> None:
        """End a local instance (Ray's shutdown first when `gracefully`, then SIGKILL), or leave a joined
        cluster; `connected`: ray.init had returned."""
        import ray
        if gracefully and connected:
            ray.shutdown()
        if self.temp_dir is not None:
            self.track()
            end_processes(list(self.processes.values()), GRACE_S if gracefully else 0.0)
        if not gracefully and connected:
            # Broken (GCS server or raylet gone): disconnect the driver too, after its processes are killed;
            # connected to a lost GCS, Ray ends this process after 60 s.
            ray.shutdown()
        if self.keeper is not None:
            self.keeper.done.set()
        self.quiet.close()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            close_guard(self.guard)


def running(process: psutil.Process) -> bool:
    """Alive and not a zombie."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def end_processes(processes: list[psutil.Process], grace_s: float) -> None:
    """Wait up to `grace_s` for `processes` to end, then SIGKILL the rest (Ray's agents ignore SIGTERM)."""
    alive = [process for process in processes if running(process)]
    if alive and grace_s > 0:
        _, alive = psutil.wait_procs(alive, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(processes, timeout=GRACE_S * 5)


#: Where a guard writes its one line (None: this process's stderr). `pytest bench` sets the terminal's
#: stderr: during a test pytest points fd 2 at its capture file, which a run that Ray ended never prints.
guard_stderr: int | None = None


def send_guard_lines_to(fd: int | None) -> None:
    global guard_stderr
    guard_stderr = fd


def start_guard(temp_dir: str) -> subprocess.Popen[bytes]:
    script = Path(__file__).resolve().parent / "ray_guard.py"  # by path: it needs only psutil
    return subprocess.Popen([sys.executable, str(script), temp_dir, str(os.getpid())], stdin=subprocess.PIPE,
                            stderr=guard_stderr, start_new_session=True)


def close_guard(guard: subprocess.Popen[bytes] | None) -> None:
    if guard is None:
        return
    with contextlib.suppress(OSError):
        assert guard.stdin is not None
        guard.stdin.write(b"done\n")
        guard.stdin.close()
    try:
        guard.wait(timeout=10)
    except subprocess.TimeoutExpired:
        guard.kill()
        guard.wait()


def probe(address: str, timeout: float = PROBE_S) -> str | None:
    """Why nothing accepts a TCP connection at HOST:PORT within `timeout`, or None when something does."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except ValueError:
        return "not HOST:PORT"
    except OSError as error:
        return error.strerror or type(error).__name__


_instance: RayInstance | None = None
_instance_lock = threading.Lock()
# ray.init abandoned (it ran past its bound): it may still finish in its thread, so no later start is tried.
_abandoned: str | None = None

# Recent Ray starts a `ray start` cluster with token authentication by default, and a driver joining it
# sends the token (~/.ray/auth_token, or RAY_AUTH_TOKEN) only when this variable says so; without it the
# GCS refuses the driver and ray.init fails after seconds of retries (docs/ray.md).
AUTH_MODE = "RAY_AUTH_MODE"
AUTH_HINT = (f"; if the cluster uses token authentication (`ray start`'s default in recent Ray), set {AUTH_MODE}=token "
             "in this environment (docs/ray.md)")


def local_ray_temp_dir() -> str:
    """A short directory of the run's own: Ray's socket paths under it must stay below ~107 characters."""
    base = tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="fb-ray-", dir=base if len(base) <= 40 else "/tmp")


class _Init(threading.Thread):
    """ray.init in a thread of its own, so that the main thread can bound the wait and stays free for
    signals; off the main thread Ray installs no SIGTERM handler (its own raises SystemExit, bypassing the
    suite's). The thread lives until `done`: Ray starts its processes with PR_SET_PDEATHSIG, which Linux
    fires when the *thread* that started them ends."""

    def __init__(self, ray: Any, options: dict[str, Any]):
        super().__init__(name="fanbench-ray-init", daemon=True)
        self.ray, self.options = ray, options
        self.context: Any = None
        self.error: BaseException | None = None
        self.returned = threading.Event()
        self.done = threading.Event()  # the instance is removed: the thread may end
        self.abandoned = False  # set by the main thread when it stopped waiting

    def run(self) -> None:
        try:
            self.context = self.ray.init(log_to_driver=False, configure_logging=False, **self.options)
        except BaseException as error:  # handed to the main thread
            self.error = error
            return
        finally:
            self.returned.set()
        if self.abandoned:  # finished after all, for nobody: leave (the processes are being killed)
            self.ray.shutdown()
            return
        self.done.wait()


def _not_the_thread_warning(record: logging.LogRecord) -> bool:
    """Drops Ray's warning that it set no SIGTERM handler outside the main thread: that is the point."""
    return "SIGTERM handler is not set" not in record.getMessage()


def init_ray(ray: Any, timeout: float, **options: Any) -> tuple[Any, _Init]:
    """`ray.init(**options)` waited for at most `timeout` s (RayInitTimeout past it), and the thread that ran it."""
    init = _Init(ray, options)
    logger = logging.getLogger("ray._private.worker")
    logger.addFilter(_not_the_thread_warning)
    try:
        init.start()
        deadline = time.monotonic() + timeout
        while not init.returned.is_set() and time.monotonic() < deadline:
            init.returned.wait(min(POLL_S, max(0.0, deadline - time.monotonic())))
        if not init.returned.is_set():
            raise RayInitTimeout(timeout)
    except BaseException:
        init.abandoned = True
        raise
    finally:
        logger.removeFilter(_not_the_thread_warning)
    if init.error is not None:
        raise init.error
    return init.context, init


class RayInitTimeout(Exception):
    def __init__(self, timeout: float):
        super().__init__(f"ray.init did not return within {timeout:g} s")


def join_refusal(address: str, problem: str, hint: bool = True) -> StrategyError:
    """`hint`: add the token advice (the address answered, but Ray could not join it)."""
    return StrategyError(f"ray: could not join the Ray cluster at {address!r}: {problem}"
                         f"{AUTH_HINT if hint and AUTH_MODE not in os.environ else ''}")


def _start_local(ray: Any) -> RayInstance:
    """ray.init, bounded, its processes tracked from their first moment (a guard in place first); on any
    failure or interrupt every one of them is killed and the directory removed."""
    temp_dir = local_ray_temp_dir()
    me = psutil.Process()
    before = {child.pid for child in me.children()}
    instance = RayInstance(temp_dir, 0.0, "local", guard=start_guard(temp_dir))
    before.add(instance.guard.pid)
    instance.quiet.enter_context(raylet_death_unprinted(ray))
    started = time.perf_counter()
    try:
        context, instance.keeper = init_ray(ray, START_TIMEOUT_S, num_cpus=usable_cores(), include_dashboard=False,
                                            _temp_dir=temp_dir)
    except BaseException as error:
        instance.track(child for child in me.children() if child.pid not in before)
        instance.remove(gracefully=False, connected=False)
        if isinstance(error, RayInitTimeout):
            global _abandoned
            _abandoned = f"ray: the local Ray instance did not start: {error}"
            raise StrategyError(_abandoned) from None
        raise
    instance.startup_s = time.perf_counter() - started
    instance.address = context.address_info.get("gcs_address", "local")
    instance.track(child for child in me.children() if child.pid not in before)
    return instance


@contextmanager
def raylet_death_unprinted(ray: Any) -> Iterator[None]:
    """While inside, the driver does not print Ray's "Raylet is terminated" log dump (twice): the run reports that
    death in one line. Ray prints through `ray._private.worker.print_to_stdstream`, looked up at each call."""
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    original = getattr(worker, "print_to_stdstream", None)
    if original is None:
        yield
        return

    def printed(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if any("Raylet is terminated" in str(line) for line in data.get("lines", ())):
            return None
        return original(data, *args, **kwargs)

    worker.print_to_stdstream = printed
    try:
        yield
    finally:
        worker.print_to_stdstream = original


def _join(ray: Any, address: str) -> RayInstance:
    """A running cluster: a HOST:PORT address probed first (ray.init retries a closed port for minutes)."""
    if "://" not in address and address != "auto":
        problem = probe(address)
        if problem is not None:
            raise join_refusal(address, f"nothing accepts a connection there ({problem}; a {PROBE_S:g} s TCP probe); "
                               "start the cluster or give its GCS address (HOST:PORT of `ray start --head`)", hint=False)
    started = time.perf_counter()
    try:
        context, keeper = init_ray(ray, JOIN_TIMEOUT_S, address=address)
    except ConnectionError as error:  # Ray retries for seconds first
        raise join_refusal(address, one_line(error)) from None
    except RayInitTimeout as error:
        global _abandoned
        _abandoned = f"ray: could not join the Ray cluster at {address!r}: {error}; is it a Ray GCS address?"
        raise StrategyError(_abandoned) from None
    return RayInstance(None, time.perf_counter() - started, context.address_info.get("gcs_address", address),
                       keeper=keeper, probed_at=time.monotonic())


def ray_instance(ray: Any, address: str | None) -> RayInstance:
    """The process's Ray, started (address None) or joined once, outside every timed region."""
    global _instance
    with _instance_lock:
        if _abandoned is not None:
            raise StrategyError(f"{_abandoned} (an earlier ray benchmark of this run; it is not retried)")
        if _instance is None:
            _instance = _start_local(ray) if address is None else _join(ray, address)
            atexit.register(shutdown_ray)
        elif _instance.joined != (address is not None):
            had = "joined a cluster" if _instance.joined else "started a local Ray instance"
            raise StrategyError(f"ray: this process already {had}; one Ray per process: give every ray benchmark "
                                "of a run the same --ray-address.")
        return _instance


def shutdown_ray() -> None:
    """At exit: stop the local instance, or leave the joined cluster (Ray ends this job's actors)."""
    _remove_instance(gracefully=True)


def discard_ray() -> None:
    """Remove a broken instance (its GCS server or raylet died) at once; a later benchmark starts or joins anew."""
    _remove_instance(gracefully=False)


def _remove_instance(gracefully: bool) -> None:
    global _instance
    with _instance_lock:
        instance, _instance = _instance, None
        if instance is None:
            return
        with signals_deferred():  # bounded, and half a removal leaves processes behind
            instance.remove(gracefully)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM held while inside (main thread only), then handled as they would have been."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, _frame: received.append(number))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in received[:1]:
            signal.raise_signal(signum)


def one_line(error: BaseException) -> str:
    """The first meaningful line of a Ray error (Ray's messages carry tracebacks)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(error)):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
