"""The resource sampler on fabricated readings and a fake clock: exact values, no sleeps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Collection
from dataclasses import dataclass

import psutil
import pytest

import bench.measure.sampler as sampler_module
from bench.measure.machine import GpuReading, NvmlReader, gpu_list, gpu_machine_info, open_gpu
from bench.measure.sampler import (
    ProcessTreeReader,
    ResourceSummary,
    Sample,
    Sampler,
    SamplerProcess,
    TreeReading,
    summarise,
)
from strategies.runtime import usable_cores
from tests.helpers.fakes import FakeNvml

MB = 1024 * 1024


class Script:
    """Hands out the given values in order, one per call; fails loudly past the end."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self, *args):
        value = self.values[self.calls]
        self.calls += 1
        if isinstance(value, BaseException):
            raise value
        return value


def twice(times: list[float]) -> list[float]:
    """A clock for a Sampler, read before and after each tree reading: these readings take no time."""
    return [time for time in times for _ in range(2)]


def tree(cpu: dict[int, float], uss: int | None = 100 * MB, pss: int | None = 90 * MB) -> TreeReading:
    return TreeReading(cpu_s=cpu, uss_bytes=uss, pss_bytes=pss)


def test_samples_combine_cpu_memory_and_gpu_exactly():
    trees = Script([tree({1: 1.0, 2: 0.5}, 100 * MB, 90 * MB),
                    tree({1: 1.125, 2: 0.5625}, 300 * MB, 250 * MB),  # +0.1875 CPU s in 0.125 s
                    tree({1: 1.25, 2: 0.625, 3: 7.0}, 200 * MB, None)])  # pid 3 is new: its past is not this pair's
    gpus = Script([GpuReading(None, 4000 * MB, 50.0), GpuReading(1000 * MB, 5000 * MB, 100.0),
                   GpuReading(2000 * MB, 4500 * MB, 25.0)])
    sampler = Sampler(trees, gpus, rate_hz=8.0, cores=2, clock=Script(twice([0.0, 0.125, 0.375])),
                      cpu_clock=Script([0.0, 0.0, 0.0625]))
    for _ in range(3):
        sampler.sample()
    summary = sampler.summary()
    # pair 1: 0.1875 s / 0.125 s / 2 cores = 0.75; pair 2: (0.1875 - 0.0625 sampler) / 0.25 / 2 = 0.25
    assert summary == ResourceSummary(samples=3, cpu_util_mean=0.3125 / 0.375 / 2, cpu_util_max=0.75,
                                      peak_uss_bytes=300 * MB, peak_pss_bytes=250 * MB, gpu_memory_peak_bytes=2000 * MB,
                                      gpu_device_memory_peak_bytes=5000 * MB, gpu_util_mean=175 / 3, gpu_util_max=100.0,
                                      sampler_cpu_s=0.0625, usable_cores=2)


def test_the_gpu_reader_gets_the_pids_of_the_tree():
    seen: list[Collection[int]] = []

    def gpu(pids):
        seen.append(set(pids))
        return GpuReading(None, None, None)

    Sampler(Script([tree({7: 0.0, 8: 0.0})]), gpu, cores=1, clock=Script(twice([0.0])), cpu_clock=Script([0.0])).sample()
    assert seen == [{7, 8}]


def sample(time: float, cpu: float, sampler_cpu: float = 0.0) -> Sample:
    return Sample(time, sampler_cpu, tree({1: cpu}))


def test_a_reading_held_up_mid_way_is_no_peak_but_counts_in_the_mean():
    # The sampler waited 0.2 s for a core inside its second reading: its CPU times are from somewhere in
    # 0.4..0.6 s. Taking the pair 0..0.5 s at face value would read 0.55 CPU s in 0.5 s on 1 core as 110%.
    sampler = Sampler(Script([tree({1: 0.0}), tree({1: 0.55}), tree({1: 1.0})]), rate_hz=2.0, cores=1,
                      clock=Script([0.0, 0.0, 0.4, 0.6, 1.0, 1.0]), cpu_clock=Script([0.0] * 3))
    for _ in range(3):
        sampler.sample()
    assert [reading.read_s for reading in sampler.segments[0]] == [0.0, pytest.approx(0.2), 0.0]
    summary = sampler.summary()
    assert summary.cpu_util_mean == 1.0  # the whole segment: 1.0 CPU s in 1.0 s
    assert summary.cpu_util_max == 1.0  # the mean; neither pair is timed to a tenth of its length


def test_a_short_pair_counts_in_the_mean_but_not_as_the_maximum():
    # 10 Hz: pairs under 0.05 s are too short to trust as a peak (CPU times tick in 10 ms steps)
    segment = [sample(0.0, 0.0), sample(0.125, 0.0625), sample(0.15625, 0.09375)]  # last pair: 0.03125 s at 100%
    summary = summarise([segment], cores=1, interval_s=0.1)
    assert summary.cpu_util_mean == 0.09375 / 0.15625
    assert summary.cpu_util_max == 0.6  # the mean beats the one long pair (0.5)


def test_segments_are_separate_rounds_and_the_time_between_them_is_not_counted():
    rounds = [[sample(0.0, 0.0), sample(0.25, 0.25)], [sample(10.0, 3.0), sample(10.25, 3.125)]]
    summary = summarise(rounds, cores=1, interval_s=0.125)
    assert (summary.samples, summary.cpu_util_mean, summary.cpu_util_max) == (4, 0.75, 1.0)


def test_no_time_between_samples_means_no_cpu_figure():
    summary = summarise([[sample(1.0, 0.0)]], cores=1, interval_s=0.1)
    assert (summary.cpu_util_mean, summary.cpu_util_max, summary.peak_uss_bytes) == (None, None, 100 * MB)


def test_nothing_measured_is_none_not_zero():
    summary = summarise([[Sample(0.0, 0.0, tree({}, None, None)), Sample(1.0, 0.0, tree({}, None, None))]], 1, 0.1)
    assert (summary.peak_uss_bytes, summary.peak_pss_bytes, summary.gpu_util_mean, summary.gpu_memory_peak_bytes) == \
        (None, None, None, None)
    assert summary.cpu_util_mean == 0.0  # the tree was read and used no CPU


def test_the_thread_takes_a_reading_at_start_and_at_stop_of_each_segment():
    clock = Script(twice([0.0, 1.0, 5.0, 6.0]))
    sampler = Sampler(Script([tree({1: 0.0}), tree({1: 0.5}), tree({1: 2.0}), tree({1: 2.25})]), rate_hz=1e-6, cores=1,
                      clock=clock, cpu_clock=Script([0.0] * 4))
    for _ in range(2):  # the interval is days long, so only the start and stop readings happen
        sampler.start()
        sampler.stop()
    assert [[reading.time for reading in segment] for segment in sampler.segments] == [[0.0, 1.0], [5.0, 6.0]]
    assert sampler.summary().cpu_util_mean == 0.75 / 2.0


def test_a_failing_reader_fails_the_round_instead_of_measuring_nothing():
    sampler = Sampler(Script([tree({1: 0.0}), OSError("proc is gone")]), rate_hz=1e-6, cores=1,
                      clock=Script(twice([0.0, 1.0])), cpu_clock=Script([0.0, 0.0]))
    sampler.start()
    with pytest.raises(RuntimeError, match="the resource sampler failed: proc is gone"):
        sampler.stop()
    sampler.stop()  # stopping again is harmless


def test_start_twice_is_refused_and_stop_without_start_is_harmless():
    sampler = Sampler(Script([tree({1: 0.0})] * 2), rate_hz=1e-6, cores=1, clock=Script(twice([0.0, 1.0])),
                      cpu_clock=Script([0.0, 0.0]))
    sampler.stop()
    sampler.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sampler.start()
    finally:
        sampler.stop()


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_the_rate_must_be_positive(rate):
    with pytest.raises(ValueError, match=f"above 0 Hz, got {rate}"):
        Sampler(Script([]), rate_hz=rate)


def test_the_process_tree_reader_reads_this_process():
    reading = ProcessTreeReader()()
    assert os.getpid() in reading.cpu_s
    assert reading.uss_bytes > 0
    if sys.platform.startswith("linux"):
        assert 0 < reading.pss_bytes


def test_the_process_tree_reader_leaves_out_the_pids_it_is_told_to():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert child.pid in ProcessTreeReader()().cpu_s
        assert child.pid not in ProcessTreeReader(exclude={child.pid})().cpu_s
    finally:
        child.communicate()


def test_a_sampler_outside_the_tree_does_not_take_its_own_cpu_out_of_the_trees():
    segment = [Sample(0.0, 0.0, tree({1: 1.0})), Sample(1.0, 0.5, tree({1: 1.5}))]
    assert summarise([segment], cores=1, interval_s=0.5).cpu_util_mean == 0.0  # a thread of the tree: 0.5 - 0.5
    assert summarise([segment], cores=1, interval_s=0.5, sampler_in_tree=False).cpu_util_mean == 0.5


@pytest.fixture
def sampler_process():
    process = SamplerProcess("cpu", rate_hz=50.0)
    try:
        yield process
    finally:
        process.close()
    assert not process.process.is_alive()


def test_the_sampler_process_samples_this_process_from_outside_and_leaves_itself_out(sampler_process):
    sampler = sampler_process.new()
    for _ in range(2):  # two rounds: two segments, each read at start and stop
        sampler.start()
        sampler.stop()
    summary = sampler.summary()
    assert summary.samples >= 4
    assert summary.peak_uss_bytes > 0
    assert summary.sampler_cpu_s >= 0.0
    assert sampler_process.process.pid != os.getpid()
    # What the process reads is this process's tree without the sampler itself.
    sampler_pid = sampler_process.process.pid
    assert sampler_pid in ProcessTreeReader()().cpu_s  # a child of this process...
    assert sampler.new().summary().samples == 0  # ...and a new benchmark starts with no samples


def test_the_sampler_process_survives_ctrl_c_and_reports_errors_in_one_line(sampler_process):
    os.kill(sampler_process.process.pid, signal.SIGINT)  # as a terminal's Ctrl-C reaches the whole group
    with pytest.raises(RuntimeError, match=r"^the resource sampler failed: RuntimeError: the sampler process got "
                                           r"'summary' before 'new'\.$"):
        sampler_process.summary()
    sampler_process.new().start()
    sampler_process.stop()
    sampler_process.stop()  # stopping twice is harmless, as for the thread sampler
    assert sampler_process.summary().samples >= 2


def test_the_sampler_process_survives_a_group_sigterm_mid_segment(sampler_process):
    # `timeout`, a CI cancel or systemd signal the whole process group: the benchmark handles it and
    # stops the sampler in its teardown, which met a broken pipe when SIGTERM had killed it.
    sampler_process.new().start()
    os.kill(sampler_process.process.pid, signal.SIGTERM)
    sampler_process.stop()
    assert sampler_process.summary().samples >= 2
    assert sampler_process.process.is_alive()


def test_a_sampler_process_killed_mid_segment_fails_in_one_line_not_with_a_broken_pipe(sampler_process):
    # pytest takes a BrokenPipeError for its own broken stdout: exit status 1 and not a word.
    sampler_process.new().start()
    sampler_process.process.kill()
    sampler_process.process.join()
    with pytest.raises(RuntimeError, match=r"^the resource sampler process ended unexpectedly \(exit code -9\); rerun, "
                                           r"or measure without it \(--no-sampler\)\.$"):
        sampler_process.stop()


def test_the_sampler_process_runs_at_the_lowest_cpu_priority(sampler_process):
    # Where onnxruntime's spinning pools keep every core busy, a sample must wait rather than take a core.
    process = psutil.Process(sampler_process.process.pid)
    sampler_process.new().start()  # its sampling thread exists now
    try:
        assert process.nice() == 19
        if sys.platform == "linux":  # every thread, the sampling one included, is SCHED_IDLE
            threads = [thread.id for thread in process.threads()]
            assert len(threads) >= 2
            assert {os.sched_getscheduler(thread) for thread in threads} == {os.SCHED_IDLE}
    finally:
        sampler_process.stop()


def test_closing_the_sampler_process_twice_is_harmless(sampler_process):
    sampler_process.close()
    sampler_process.close()


@dataclass
class NvmlProcess:
    pid: int
    usedGpuMemory: int | None


def fake_nvml(processes: dict[str, list[NvmlProcess]], util: dict[str, int], used: dict[str, int]) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        nvmlDeviceGetComputeRunningProcesses=lambda handle: processes[handle],
        nvmlDeviceGetUtilizationRates=lambda handle: types.SimpleNamespace(gpu=util[handle]),
        nvmlDeviceGetMemoryInfo=lambda handle: types.SimpleNamespace(used=used[handle]))


def test_nvml_counts_this_trees_memory_and_the_utilisation_of_its_devices():
    nvml = fake_nvml({"a": [NvmlProcess(11, 100), NvmlProcess(99, 5000)], "b": [NvmlProcess(98, 7)]},
                     {"a": 40, "b": 90}, {"a": 6000, "b": 8000})
    assert NvmlReader(nvml, ["a", "b"])({10, 11}) == GpuReading(memory_bytes=100, device_memory_bytes=14000, util_percent=40.0)


def test_nvml_without_this_trees_processes_reports_every_device_and_no_process_memory():
    nvml = fake_nvml({"a": [NvmlProcess(99, 5000)], "b": []}, {"a": 40, "b": 90}, {"a": 6000, "b": 0})
    assert NvmlReader(nvml, ["a", "b"])({10}) == GpuReading(memory_bytes=None, device_memory_bytes=6000, util_percent=90.0)


def test_nvml_that_cannot_see_per_process_memory_says_none():
    nvml = fake_nvml({"a": [NvmlProcess(10, None)]}, {"a": 70}, {"a": 6000})
    assert NvmlReader(nvml, ["a"])({10}).memory_bytes is None


def test_a_cpu_workload_has_no_gpu_metrics_and_says_why():
    probe = open_gpu("cpu")
    assert probe.reader is None
    assert probe.reason == "the workload runs on the 'cpu' provider, not on a GPU"


def install_pynvml(monkeypatch, init_error: bool = False, count: int = 1) -> list[str]:
    module = FakeNvml(fail_init=init_error, count=count)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module.events


def test_nvml_that_cannot_start_gives_its_reason(monkeypatch):
    install_pynvml(monkeypatch, init_error=True)
    probe = open_gpu("cuda")
    assert (probe.reader, probe.reason) == (None, "NVML could not start: Driver Not Loaded")


def test_nvml_without_gpus_is_shut_down_again(monkeypatch):
    events = install_pynvml(monkeypatch, count=0)
    probe = open_gpu("cuda")
    assert (probe.reader, probe.reason, events) == (None, "NVML finds no GPU", ["init", "shutdown"])


def test_without_pynvml_each_reader_keeps_the_reason_its_saved_records_show(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert open_gpu("cuda").reason == "pynvml is not importable (install nvidia-ml-py)"  # extra_info gpu_absent
    assert gpu_machine_info() == {"gpu": None, "gpu_unavailable": "pynvml is not installed (pip install nvidia-ml-py)"}
    assert gpu_list() == []


def test_the_gpu_list_names_every_device_and_shuts_nvml_down(monkeypatch):
    events = install_pynvml(monkeypatch, count=2)
    sys.modules["pynvml"].nvmlSystemGetDriverVersion = lambda: b"580.1"
    sys.modules["pynvml"].nvmlDeviceGetName = lambda handle: f"H100 {handle}"
    assert gpu_list() == [{"name": "H100 gpu0", "driver": "580.1"}, {"name": "H100 gpu1", "driver": "580.1"}]
    assert events == ["init", "shutdown"]


def test_nvml_with_a_gpu_reads_it_until_shut_down(monkeypatch):
    events = install_pynvml(monkeypatch, count=2)
    probe = open_gpu("cuda")
    assert probe.reason is None
    assert probe.reader.handles == ["gpu0", "gpu1"]
    probe.shutdown()
    assert events == ["init", "shutdown"]


def test_foreign_load_is_the_machines_busy_time_less_the_trees_and_the_samplers_per_round():
    def reading(time, tree_cpu, machine, sampler_cpu=0.0, pids=(1,)):
        return Sample(time, sampler_cpu, tree({pid: tree_cpu for pid in pids}), machine_busy_s=machine)

    rounds = [[reading(0.0, 1.0, 10.0), reading(0.5, 1.5, 10.75, 0.05)],  # 0.75 busy - 0.5 tree - 0.05 sampler
              [reading(5.0, 2.0, 20.0), reading(5.5, 2.25, 20.5, 0.0, pids=(1, 2))]]  # pid 2 started: its 0.25 is own
    summary = summarise(rounds, cores=2, interval_s=0.1, sampler_in_tree=False)
    assert summary.rounds_foreign_load_cores == [pytest.approx(0.4), 0.0]
    assert summary.foreign_load_cores == pytest.approx(0.2)
    # A sampler thread of the tree is in the tree's time already: only the tree comes off.
    assert summarise(rounds[:1], cores=2, interval_s=0.1).rounds_foreign_load_cores == [pytest.approx(0.5)]
    # Without machine readings there is no figure, not a zero.
    assert summarise([[sample(0.0, 0.0), sample(1.0, 0.5)]], cores=1, interval_s=0.1).foreign_load_cores is None


BUSY = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass\n"


def cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def test_a_busy_process_outside_the_tree_is_foreign_load_and_a_busy_child_inside_it_is_not():
    """A tree rooted at a process whose child spins, and a spinning process outside the tree, in one window:
    the sampler must count the outside one as foreign and the child as the tree's own. Only inequalities
    that other jobs on the machine cannot break: their load can only add to the foreign figure."""
    inside_root = subprocess.Popen([sys.executable, "-c", "import subprocess, sys\n"
                                    f"subprocess.run([sys.executable, '-c', {BUSY!r}])"])
    outside = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        root = psutil.Process(inside_root.pid)
        deadline = 50
        while not root.children() and deadline:  # wait for the busy child to start
            psutil.wait_procs([], timeout=0.1)
            deadline -= 1
        (child,) = root.children()
        machine = sampler_module.machine_busy_reader()
        sampler = Sampler(ProcessTreeReader(inside_root.pid), rate_hz=10.0, cores=usable_cores(), in_tree=False,
                          cpu_clock=time.process_time, machine=machine)
        child_before, outside_before, machine_before = cpu_of(child), cpu_of(psutil.Process(outside.pid)), machine()
        sampler.start()
        time.sleep(1.5)
        sampler.stop()
        child_s, outside_s = cpu_of(child) - child_before, cpu_of(psutil.Process(outside.pid)) - outside_before
        machine_s = machine() - machine_before
        summary = sampler.summary()
        span = sampler.segments[0][-1].time - sampler.segments[0][0].time
        foreign_s = summary.foreign_load_cores * span
        tick = 0.05  # 10 ms counters, read on a few processes and cores at each end
        assert child_s > 0.2  # both really ran
        assert outside_s > 0.2
        assert foreign_s >= outside_s - tick  # the outside spinner is foreign load
        assert foreign_s <= machine_s - child_s + tick  # the child inside the tree is not
        assert summary.cpu_util_mean * summary.usable_cores * span >= child_s - tick  # it is the tree's own
    finally:
        for process in (outside, inside_root):
            with contextlib.suppress(psutil.NoSuchProcess):
                for each in psutil.Process(process.pid).children(recursive=True):
                    each.kill()
            process.kill()
            process.wait()


def test_the_sampler_process_keeps_one_sampler_per_key_for_interleaved_rounds(sampler_process):
    # An interleaved run selects each benchmark's sampler before its round: the segments stay apart.
    sampler_process.new("a")
    sampler_process.new("b")
    for key, rounds in (("a", 1), ("b", 2), ("a", 1), ("b", 1)):
        sampler_process.select(key)
        for _ in range(rounds):
            sampler_process.start()
            sampler_process.stop()
    sampler_process.select("a")
    first = sampler_process.summary()
    sampler_process.select("b")
    second = sampler_process.summary()
    assert first.samples >= 4
    assert second.samples >= 6
    assert len(first.rounds_foreign_load_cores) in (0, 2)  # one value per round, where the machine is read
    assert len(second.rounds_foreign_load_cores) in (0, 3)
    with pytest.raises(RuntimeError, match=r"^the resource sampler failed: RuntimeError: the sampler process has "
                                           r"no sampler 'c'; 'new' it first\.$"):
        sampler_process.select("c")
