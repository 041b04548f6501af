"""Resource sampling during the timed rounds: process-tree CPU and memory, GPU through NVML.

The tree is the benchmark process and every child (workers, the multiprocessing manager). Each
`start()`/`stop()` pair is one segment (one timed round) with a reading at both ends. The benchmark
samples from a process of its own (`SamplerProcess`), so readings never hold its GIL. Memory is PSS (a
page shared by n processes counts 1/n to each) and USS: RSS would count the shared onnxruntime
libraries and copy-on-write pages once per process. CPU utilisation is the tree's user+system seconds
over wall seconds, as a fraction of the usable cores. Foreign load is the busy time of the cores the run
may use (/proc/stat through psutil) minus the tree's and the sampler's, in cores: it tells a slower
strategy from one that ran while another job kept the machine busy (bench/report/recommend.py).
Clocks and readers are injected, so tests feed fabricated readings.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.measure.machine import GpuReader, GpuReading, open_gpu
from strategies.runtime import detach_from_terminal_signals, terminal_signals_blocked, usable_cores

Clock = Callable[[], float]
DEFAULT_RATE_HZ = 10.0


@dataclass(frozen=True)
class TreeReading:
    cpu_s: Mapping[int, float]  # cumulative user+system CPU seconds, per pid of the tree
    uss_bytes: int | None
    pss_bytes: int | None  # None where the OS has no PSS (everything but Linux)


@dataclass(frozen=True)
class Sample:
    time: float  # the middle of the tree reading
    sampler_cpu_s: float  # the sampler's own CPU time so far
    tree: TreeReading
    gpu: GpuReading | None = None
    read_s: float = 0.0  # how long the tree reading took: its CPU times were read at `time` +- half of it
    # Busy CPU seconds of the usable cores so far, the mean of readings on both sides of the tree's; None: not read.
    machine_busy_s: float | None = None


TreeReader = Callable[[], TreeReading]
MachineReader = Callable[[], float]


def _busy(times: Any) -> float:
    """CPU seconds a psutil cpu_times reading spent not idle (guest time is already in user and nice)."""
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))


def machine_busy_reader(cpus: Collection[int] | None = None) -> MachineReader:
    """Busy CPU seconds so far of the given cores (default: those this process may run on). psutil lists the
    online cores in order, so a core's number is its index when all are online; else the machine is read."""
    wanted = set(cpus) if cpus is not None else set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    count = psutil.cpu_count() or 0
    if wanted is None or wanted >= set(range(count)) or len(psutil.cpu_times(percpu=True)) != count:
        return lambda: _busy(psutil.cpu_times())
    chosen = sorted(wanted)
    return lambda: sum(_busy(psutil.cpu_times(percpu=True)[cpu]) for cpu in chosen)


class ProcessTreeReader:
    """Reads a process (default: this one) and all its descendants, but those in `exclude`."""

    def __init__(self, pid: int | None = None, exclude: Collection[int] = ()) -> None:
        self.root = psutil.Process(pid)
        self.exclude = set(exclude)

    def __call__(self) -> TreeReading:
        cpu: dict[int, float] = {}
        uss, pss, has_pss = 0, 0, True
        try:
            processes = [process for process in (self.root, *self.root.children(recursive=True))
                         if process.pid not in self.exclude]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    memory = process.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue  # a worker exited between listing and reading it; it holds nothing now
            cpu[process.pid] = times.user + times.system
            uss += memory.uss
            pss_of = getattr(memory, "pss", None)
            has_pss = has_pss and pss_of is not None
            pss += pss_of or 0
        return TreeReading(cpu_s=cpu, uss_bytes=uss if cpu else None, pss_bytes=pss if cpu and has_pss else None)


@dataclass(frozen=True)
class ResourceSummary:
    """What the timed rounds used; None where it could not be measured."""

    samples: int = 0
    cpu_util_mean: float | None = None  # process tree, fraction of the usable cores, 0..1
    cpu_util_max: float | None = None
    peak_uss_bytes: int | None = None  # process tree, summed
    peak_pss_bytes: int | None = None
    gpu_memory_peak_bytes: int | None = None  # this process tree on the GPU (NVML)
    gpu_device_memory_peak_bytes: int | None = None  # the whole device
    gpu_util_mean: float | None = None  # percent
    gpu_util_max: float | None = None
    sampler_cpu_s: float = 0.0  # CPU time the sampler itself spent
    # Cores busy outside the run (its tree and the sampler), over all rounds and per round; None / []: not read.
    foreign_load_cores: float | None = None
    rounds_foreign_load_cores: list[float] = field(default_factory=list)
    usable_cores: int | None = None  # the cores the utilisation is a fraction of

    @classmethod
    def absent(cls) -> ResourceSummary:
        return cls()


def _peak(values: Sequence[Any]) -> Any:
    return max((value for value in values if value is not None), default=None)


def summarise(segments: Sequence[Sequence[Sample]], cores: int, interval_s: float,
              sampler_in_tree: bool = True) -> ResourceSummary:
    """Combine the segments' samples. CPU: per pair of consecutive samples, the CPU seconds the tree's
    processes (in both) gained over the seconds between them, less the sampler's own where it is in the
    tree; the mean over all pairs' time together, the maximum that or a precise pair's, the larger."""
    samples = [sample for segment in segments for sample in segment]
    busy_total, span_total, peak = 0.0, 0.0, None
    foreign_rounds: list[float] = []
    foreign_total, foreign_span = 0.0, 0.0
    for segment in segments:
        foreign, segment_span, machine_read = 0.0, 0.0, True
        for before, after in itertools.pairwise(segment):
            span = after.time - before.time
            if span <= 0:
                continue
            tree = sum(after.tree.cpu_s[pid] - before.tree.cpu_s[pid] for pid in after.tree.cpu_s.keys() & before.tree.cpu_s)
            sampler = after.sampler_cpu_s - before.sampler_cpu_s
            busy = max(0.0, tree - sampler) if sampler_in_tree else tree
            if before.machine_busy_s is None or after.machine_busy_s is None:
                machine_read = False
            else:
                # Minus the run's own: the tree (with the sampler when it is a thread of it), a process started
                # within the pair (all its CPU time is from the pair), the sampler's process when not in the tree.
                started = sum(after.tree.cpu_s[pid] for pid in after.tree.cpu_s.keys() - before.tree.cpu_s)
                own = tree + started + (0.0 if sampler_in_tree else sampler)
                foreign += after.machine_busy_s - before.machine_busy_s - own
            segment_span += span
            busy_total += busy
            span_total += span
            # A peak only from a pair long enough (CPU times tick in 10 ms steps: a short pair shows that as a
            # spike) and timed to a tenth of it (a held-up reading could turn a busy pair into a spike over 100%).
            if span >= interval_s / 2 and before.read_s + after.read_s <= span / 10:
                peak = max(peak or 0.0, busy / span / cores)
        if machine_read and segment_span > 0:
            # Counters tick in 10 ms steps, so a quiet round can come out a little below zero: it is zero.
            foreign_rounds.append(max(0.0, foreign) / segment_span)
            foreign_total, foreign_span = foreign_total + max(0.0, foreign), foreign_span + segment_span
    cpu_mean = busy_total / span_total / cores if span_total > 0 else None
    gpus = [sample.gpu for sample in samples if sample.gpu is not None]
    utils = [gpu.util_percent for gpu in gpus if gpu.util_percent is not None]
    return ResourceSummary(
        samples=len(samples), cpu_util_mean=cpu_mean,
        cpu_util_max=None if cpu_mean is None else max(cpu_mean, peak or 0.0),
        peak_uss_bytes=_peak([sample.tree.uss_bytes for sample in samples]),
        peak_pss_bytes=_peak([sample.tree.pss_bytes for sample in samples]),
        gpu_memory_peak_bytes=_peak([gpu.memory_bytes for gpu in gpus]),
        gpu_device_memory_peak_bytes=_peak([gpu.device_memory_bytes for gpu in gpus]),
        gpu_util_mean=sum(utils) / len(utils) if utils else None, gpu_util_max=_peak(utils),
        sampler_cpu_s=sum(segment[-1].sampler_cpu_s - segment[0].sampler_cpu_s for segment in segments if segment),
        foreign_load_cores=foreign_total / foreign_span if foreign_span > 0 else None,
        rounds_foreign_load_cores=foreign_rounds, usable_cores=cores)


def _checked_rate(rate_hz: float) -> float:
    if rate_hz <= 0:
        raise ValueError(f"the sampling rate must be above 0 Hz, got {rate_hz!r}.")
    return rate_hz


class Sampler:
    """Samples in a background thread between `start()` and `stop()`; one segment per pair.

    `in_tree` False: the tree reader leaves the sampler's process out."""

    def __init__(self, tree: TreeReader, gpu: GpuReader | None = None, *, rate_hz: float = DEFAULT_RATE_HZ,
                 cores: int | None = None, clock: Clock = time.perf_counter, cpu_clock: Clock = time.thread_time,
                 in_tree: bool = True, machine: MachineReader | None = None) -> None:
        self.tree, self.gpu, self.machine = tree, gpu, machine
        self.interval_s = 1.0 / _checked_rate(rate_hz)
        self.cores = cores or usable_cores()
        self.clock, self.cpu_clock, self.in_tree = clock, cpu_clock, in_tree
        self.segments: list[list[Sample]] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None

    def sample(self) -> Sample:
        """Take one reading into the current segment (the thread calls this; tests may too)."""
        if not self.segments:
            self.segments.append([])
        # The clock on both sides of the reading: a sampler that waits for a core (it runs at the lowest
        # priority) may be held up in the middle, and its CPU times are then only known to be from in between.
        machine_before = self.machine() if self.machine is not None else None
        began = self.clock()
        tree = self.tree()
        ended = self.clock()
        machine_after = self.machine() if self.machine is not None else None
        gpu = self.gpu(tree.cpu_s.keys()) if self.gpu is not None else None
        machine = None if machine_before is None or machine_after is None else (machine_before + machine_after) / 2
        reading = Sample((began + ended) / 2, self.cpu_clock(), tree, gpu, read_s=ended - began, machine_busy_s=machine)
        self.segments[-1].append(reading)
        return reading

    def _loop(self) -> None:
        try:
            self.sample()
            self._started.set()
            while not self._stop.wait(self.interval_s):
                self.sample()
            self.sample()
        except BaseException as error:  # surfaced by stop(): a sampler that silently stops measures nothing
            self._error = error
        finally:
            self._started.set()

    def start(self) -> None:
        """Open a segment and return once its first reading is taken."""
        if self._thread is not None:
            raise RuntimeError("the sampler is already running; call stop() first.")
        self.segments.append([])
        self._stop.clear()
        self._started.clear()
        self._thread = threading.Thread(target=self._loop, name="fanbench-sampler", daemon=True)
        self._thread.start()
        self._started.wait()

    def stop(self) -> None:
        """Take the segment's last reading and end the thread. Safe to call when not running."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"the resource sampler failed: {error}") from error

    def summary(self) -> ResourceSummary:
        return summarise([segment for segment in self.segments if segment], self.cores, self.interval_s, self.in_tree)


def lowest_cpu_priority() -> None:
    """Make this process (and the threads it starts later) yield every core to the benchmark.

    `nice` 19 still gets a share of a core onnxruntime's pools spin on and may preempt a spinning thread
    that a parallel operator then waits for; SCHED_IDLE runs only where a core has nothing else to run.
    The readings are timestamped, so a late one is still right."""
    os.nice(19)  # where SCHED_IDLE is missing (macOS) or refused, the lowest nice level at least
    if not (hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE")):
        return
    # The policy is per thread on Linux: set it on every thread there is (numpy's BLAS starts some
    # at import); threads started later inherit it from the one that starts them.
    tasks = Path("/proc/self/task")
    for thread in [int(name) for name in os.listdir(tasks)] if tasks.is_dir() else [0]:
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))


def _serve(conn: Any, root_pid: int, provider: str, rate_hz: float, cores: int) -> None:
    """The sampler process: one `Sampler` per benchmark, driven by commands from the pipe: a name, or
    (name, key) for `new` and `select` (an interleaved run selects the benchmark whose round comes next)."""
    # Ctrl-C and SIGTERM, also sent to the whole process group, are the benchmark's to handle: it
    # stops this process in its teardown (had it died of them, that teardown would meet a broken pipe).
    detach_from_terminal_signals()
    lowest_cpu_priority()
    conn.send(("ok", None))
    probe = open_gpu(provider)
    tree = ProcessTreeReader(root_pid, exclude={os.getpid()})
    machine = machine_busy_reader()
    samplers: dict[str, Sampler] = {}
    sampler: Sampler | None = None
    try:
        while True:
            try:
                command = conn.recv()
            except EOFError:  # the benchmark process is gone
                return
            command, key = command if isinstance(command, tuple) else (command, "")
            try:
                answer: Any = None
                if command in ("new", "select"):
                    if sampler is not None:
                        sampler.stop()
                    if command == "new":
                        # process_time: the whole sampler process's CPU (reported, not subtracted: not in the tree).
                        samplers[key] = Sampler(tree, probe.reader, rate_hz=rate_hz, cores=cores,
                                                cpu_clock=time.process_time, in_tree=False, machine=machine)
                    elif key not in samplers:
                        raise RuntimeError(f"the sampler process has no sampler {key!r}; 'new' it first.")
                    sampler = samplers[key]
                elif command == "close":
                    conn.send(("ok", None))
                    return
                elif sampler is None:
                    raise RuntimeError(f"the sampler process got {command!r} before 'new'.")
                else:
                    answer = getattr(sampler, command)()  # start, stop, summary
                conn.send(("ok", answer))
            except Exception as error:
                conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        for each in samplers.values():
            with contextlib.suppress(Exception):
                each.stop()
        probe.shutdown()


class SamplerProcess:
    """`Sampler`s in a separate process, started once per session (about a second), with the same
    start/stop/summary. It ignores Ctrl-C and SIGTERM (sent to the whole process group, they reach it too),
    so an interrupted run can still stop it; `close()` or the benchmark's exit (the pipe closes) ends it."""

    def __init__(self, provider: str, *, rate_hz: float = DEFAULT_RATE_HZ, cores: int | None = None) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process holding onnxruntime's threads
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, name="fanbench-sampler", daemon=True,
                                       args=(child, os.getpid(), provider, _checked_rate(rate_hz), cores or usable_cores()))
        # Blocked while the interpreter starts, until _serve ignores them: a group Ctrl-C or SIGTERM
        # in that second would otherwise kill the sampler instead of only reaching the benchmark.
        with terminal_signals_blocked():
            self.process.start()
        child.close()
        self._running = False
        self._answer()  # started and ignoring Ctrl-C

    def _call(self, command: str | tuple[str, str]) -> Any:
        try:
            self._conn.send(command)
        except OSError as error:  # BrokenPipeError: pytest would take it for its own stdout's, exit 1 and say nothing
            raise self._ended() from error
        return self._answer()

    def _ended(self) -> RuntimeError:
        self.process.join(1)  # its exit code, once reaped
        return RuntimeError(f"the resource sampler process ended unexpectedly (exit code {self.process.exitcode}); "
                            "rerun, or measure without it (--no-sampler).")

    def _answer(self) -> Any:
        try:
            status, answer = self._conn.recv()
        except (EOFError, OSError) as error:
            raise self._ended() from error
        if status != "ok":
            raise RuntimeError(f"the resource sampler failed: {answer}")
        return answer

    def new(self, key: str = "") -> SamplerProcess:
        """A fresh sampler under `key` (replacing one of that key), selected: start/stop/summary act on it."""
        self._call(("new", key))
        self._running = False
        return self

    def select(self, key: str) -> None:
        """Act on the sampler `new(key)` made (stopping the selected one first)."""
        self._call(("select", key))
        self._running = False

    def start(self) -> None:
        self._call("start")
        self._running = True

    def stop(self) -> None:
        """Safe to call when not running (as `Sampler.stop`)."""
        if self._running:
            self._running = False
            self._call("stop")

    def summary(self) -> ResourceSummary:
        return self._call("summary")

    def close(self) -> None:
        """End the process; safe to call twice and after it died."""
        if self.process.is_alive():
            with contextlib.suppress(OSError, EOFError, RuntimeError):
                self._call("close")
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self._conn.close()
