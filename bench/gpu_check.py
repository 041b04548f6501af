"""Every GPU check in one command, for a CUDA host: `python -m bench.gpu_check [--out DIR]`.

Runs each step (STEP_NAMES: the gpu-marked tests, the write-up workload, serial's noise check, the
capacity search, and the real models and their capacity when installed) as its own pytest process,
its output in OUT/<step>.log, then writes OUT/summary.md and prints it. docs/gpu.md ("All GPU
checks in one command") describes the steps, the summary and the exit statuses: 0 passed, 1 a step
failed, 4 usage error or no GPU, 130/143/124 stopped by SIGINT/SIGTERM/--timeout. A stop keeps what
finished: the running step is signalled once (wait_for), no further step starts, summary.md is written.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.compare.saved import CutShort, load_run
from bench.measure.measurement import HistoryError, Measurement
from fixtures.cuda import CudaOptionError, cuda_unavailable_reason, parse_cuda_option
from fixtures.real_models import find_real_model, missing_reason

USAGE_ERROR = 4
TIMED_OUT = 124  # --timeout ran out (coreutils' `timeout` says the same); a signal gives 128 + its number
STOP_GRACE_S = 60.0  # how long a stopped step may take to write what it finished before it is killed
POLL_S = 0.2  # how often a running step is checked against a stop
STEP_NAMES = ("tests", "writeup", "noise", "capacity", "real", "real-capacity")
# The strategies issue 24 names for the capacity step; batched has no stream and runs offline only.
CAPACITY_STRATEGIES = ("serial", "threads", "asyncio_threads", "dynamic_batch", "cuda_graph", "batched")


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    args: tuple[str, ...]
    benchmarks: bool = True  # False: plain tests, no benchmark JSON

    @property
    def stop_signal(self) -> signal.Signals:
        # `pytest bench` turns SIGTERM into an interrupt (bench/measure/harness.py); a plain pytest
        # stops cleanly, JUnit XML written, only on Ctrl-C's SIGINT and dies on SIGTERM.
        return signal.SIGTERM if self.benchmarks else signal.SIGINT


# The dry run (--provider cpu) swaps the write-up's ResNet-18-sized models for tiny ones: the same
# steps, options and summary, in seconds on a CPU.
DRY_RUN_WORKLOAD = ("--model-size", "tiny", "--frame-size", "64x64")


def steps(frames: int, real_frames: int, sample_rate: float, real_models: Sequence[str],
          provider: str = "cuda", cuda_options: Sequence[str] = (), capacity_frames: int = 50,
          capacity_rounds: int = 3, probe_seconds: float = 2.5) -> list[Step]:
    on_gpu = provider == "cuda"
    device = ("--require-gpu", *(arg for option in cuda_options for arg in ("--cuda-option", option))) if on_gpu \
        else ("--provider", "cpu")
    workload = ("--workload", "writeup") if on_gpu else DRY_RUN_WORKLOAD
    common = ("bench", *device, "--sample-rate", str(sample_rate), "--no-history")
    bench = (*common, "--scenario", "offline")
    # The capacity steps stream: each round takes frames / 25 s by design, so they have frames of their own.
    capacity = ("--frames", str(capacity_frames), "--fps", "25", "--rounds", str(capacity_rounds),
                "--probe-seconds", f"{probe_seconds:g}",
                *(arg for name in CAPACITY_STRATEGIES for arg in ("--strategy", name)))
    listed = [
        Step("tests", "gpu-marked tests", ("-m", "gpu", *(("--require-gpu",) if on_gpu else ()), "tests"),
             benchmarks=False),
        Step("writeup", f"write-up workload, every strategy, {frames} frames",
             (*bench, *workload, "--frames", str(frames))),
        Step("noise", f"serial's run-to-run spread: onnxruntime's thread pools or the device ({frames} frames)",
             (*bench, *workload, "--frames", str(frames), "--rounds", "5", "--strategy", "serial",
              "--threads", "ort", "--threads", "intra=1,inter=1,spin=0")),
        Step("capacity", f"cameras at 25 fps each strategy serves (capacity search), {capacity_frames} frames",
             (*common, *workload, *capacity)),
    ]
    if real_models:
        models = tuple(arg for model in real_models for arg in ("--model", model))
        listed += [Step("real", f"real models, {real_frames} frames", (*bench, "--frames", str(real_frames), *models)),
                   Step("real-capacity", f"real models: cameras at 25 fps (capacity search), {capacity_frames} frames",
                        (*common, *models, *capacity))]
    return listed


def real_model_args(detector_size: str = "640x640") -> tuple[list[str], str | None]:
    """The real-model --model values, or the reason they are not installed."""
    reason = missing_reason("det", "cls")
    if reason is not None:
        return [], reason
    return [f"{find_real_model('det')}@{detector_size}", f"{find_real_model('cls')}@48x192"], None


@dataclass
class StepResult:
    step: Step
    returncode: int
    benchmarks: list[Measurement] = field(default_factory=list)  # the fanbench benchmarks of its JSON
    machine: dict[str, Any] = field(default_factory=dict)  # its machine_info's "fanbench" entry
    failures: list[str] = field(default_factory=list)  # "test id: first line of the failure"
    skips: list[str] = field(default_factory=list)
    interrupted: str | None = None  # why the step was stopped before its end; None: it ran to its end


def read_junit(path: Path) -> tuple[list[str], list[str]]:
    """(failures, skips) from a JUnit XML file, each 'test id: first line of the message'."""
    if not path.is_file():
        return [], []
    failures, skips = [], []
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".strip(":")
        for kind in ("failure", "error", "skipped"):
            for element in case.findall(kind):
                message = (element.get("message") or element.text or "").strip().splitlines()
                line = f"{name}: {message[0] if message else kind}"
                (skips if kind == "skipped" else failures).append(line)
    return failures, skips


def read_step(step: Step, returncode: int, out: Path, interrupted: str | None = None) -> StepResult:
    result = StepResult(step, returncode, interrupted=interrupted)
    result.failures, result.skips = read_junit(out / f"{step.name}.xml")
    bench_json = out / f"{step.name}.json"
    if step.benchmarks and bench_json.is_file():
        # Read as every saved run is (bench/compare/saved.py): the file checked, each benchmark a Measurement.
        try:
            run = load_run(bench_json)
            result.benchmarks = run.fanbench_measurements()
        except CutShort:
            # pytest-benchmark opens (empties) the file at start and fills it at the session's end:
            # a pytest killed before then leaves it empty.
            result.failures.append(f"{bench_json.name} is empty or cut short: pytest ended before writing it "
                                   f"(see {step.name}.log)")
        except HistoryError as error:
            result.failures.append(str(error))
        else:
            result.machine = run.machine_info.get("fanbench", {})
    if returncode != 0 and not result.failures and interrupted is None:
        result.failures.append(f"pytest exited with {returncode}: see {step.name}.log")
    return result


def _spread(walls: Sequence[float]) -> str:
    if len(walls) < 2:
        return "1 round"
    low, high, middle = min(walls), max(walls), statistics.median(walls)
    return f"{low:.3f}-{high:.3f} (+-{(high - low) / 2 / middle:.0%})"


def _whole(value: float | None, unit: float = 1) -> str:
    return "-" if value is None else f"{value / unit:.0f}"


def _cameras(m: Measurement) -> str:
    if not m.capacity:
        return "-"
    p99 = m.capacity.get("p99_s")
    return f"{m.capacity['cameras']} (p99 {'-' if p99 is None else f'{p99 * 1e3:.1f}'} ms)"


def benchmark_table(benchmarks: Sequence[Measurement]) -> list[str]:
    timed = [m for m in benchmarks if m.timing.wall_s]
    base = next((m.timing.wall_s for m in timed
                 if m.strategy == "serial" and m.settings.ort_defaults and m.settings.scenario == "offline"), None)
    rows = ["| strategy | settings | scenario | wall (s) | rounds min-max (spread) | x serial-ort-defaults "
            "| GPU util mean % | GPU MB | cameras at capacity | equal | provider |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in timed:
        ratio = f"{base / m.timing.wall_s:.2f}" if base and m.settings.scenario == "offline" else "-"  # streams: paced
        rows.append(f"| {m.strategy} | {m.settings.label} | {m.settings.scenario} | {m.timing.wall_s:.3f} | "
                    f"{_spread(m.timing.rounds_wall_s or [m.timing.wall_s])} | {ratio} | {_whole(m.resources.gpu_util_mean)} | "
                    f"{_whole(m.resources.gpu_memory_peak_bytes, 2**20)} | {_cameras(m)} | "
                    f"{'yes' if m.equivalence.equivalent else 'NO'} | {m.settings.provider} |")
    return rows


def cameras_line(benchmarks: Sequence[Measurement]) -> str | None:
    """Which strategy serves the most cameras, and the runner-up, as the main job's answer says it."""
    found = sorted((m for m in benchmarks if m.capacity),
                   key=lambda m: (-m.capacity["cameras"], m.capacity.get("p99_s") or 0.0))
    if not found:
        return None
    top, c = found[0], found[0].capacity
    line = (f"- this host serves {c['cameras']} cameras at {c['fps']:g} fps with {top.strategy} {top.settings.label} "
            f"(p99 {(c.get('p99_s') or 0.0) * 1e3:.1f} ms)")
    runner = next((m for m in found[1:] if m.strategy != top.strategy), None)
    if runner is not None:
        line += f"; {runner.strategy} {runner.settings.label} serves {runner.capacity['cameras']}"
    return line


def device_lines(results: Sequence[StepResult]) -> list[str]:
    machine = next((result.machine for result in results if result.machine), {})
    gpu = machine.get("gpu") or {}
    if not machine:
        return ["- device: no benchmark step recorded its machine (see the logs)"]
    return [f"- GPU: {gpu.get('name', '?')}, driver {gpu.get('driver', '?')}, CUDA driver {gpu.get('cuda_driver', '?')}, "
            f"{gpu.get('memory_total_mb', 0):.0f} MB" if gpu else f"- GPU: none recorded ({machine.get('gpu_unavailable')})",
            f"- onnxruntime {machine.get('onnxruntime', '?')} ({machine.get('onnxruntime_device', '?')}), "
            f"providers {', '.join(machine.get('available_providers', []))}, {machine.get('usable_cores', '?')} cores, "
            f"CUDA options {machine.get('cuda_options') or 'default'}"]


def step_status(result: StepResult) -> str:
    if result.interrupted is not None:
        finished = f", {len(result.benchmarks)} benchmark(s) finished" if result.step.benchmarks else ""
        return f"INTERRUPTED ({result.interrupted}{finished})"
    return "passed" if result.returncode == 0 else f"FAILED (exit {result.returncode})"


def summary(results: Sequence[StepResult], command: str, stopped: str | None = None,
            not_run: Sequence[Step] = ()) -> str:
    """The markdown summary; `stopped`: why the check stopped early, `not_run`: the steps it then left out."""
    lines = ["# fanbench GPU check", "", f"`{command}`", ""]
    if stopped is not None:
        lines += [f"**Stopped early: {stopped}.** Every benchmark that finished is below; "
                  f"not run: {', '.join(step.name for step in not_run) or 'none'}.", ""]
    lines += device_lines(results)
    for result in results:
        lines += ["", f"## {result.step.title}: {step_status(result)}", "",
                  f"`pytest {' '.join(result.step.args)}`", ""]
        if result.benchmarks:
            lines += benchmark_table(result.benchmarks)
            cameras = cameras_line(result.benchmarks)
            if cameras is not None:
                lines += ["", cameras]
            tolerances = sorted({m.equivalence.tolerance for m in result.benchmarks if m.equivalence.tolerance})
            lines += [""] + [f"- equal to serial within: {tolerance}" for tolerance in tolerances]
            for m in result.benchmarks:
                if m.timing.harness_overhead is not None:
                    lines.append(f"- harness overhead of {m.strategy} {m.settings.label}: "
                                 f"{m.timing.harness_overhead:+.1%} (bare loop {m.timing.bare_loop_s:.3f} s)")
                if m.equivalence.mismatch:
                    lines.append(f"- {m.strategy} {m.settings.label} NOT equal: {m.equivalence.mismatch}")
        lines += [f"- failed: {line}" for line in result.failures]
        lines += [f"- skipped: {line}" for line in result.skips]
    for step in not_run:
        lines += ["", f"## {step.title}: NOT RUN (the check was stopped before it)"]
    return "\n".join(lines) + "\n"


class Stop:
    """Whether, and why, the check stops early: SIGINT, SIGTERM or the --timeout deadline."""

    ran_out = "--timeout {:g} s ran out"

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.reason: str | None = None
        self.exit_status = 0
        self.hurry = False  # a second signal: kill the running step now

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # A signal handler: only records, so a signal anywhere (between steps, while the summary
        # is written) cannot cut the summary short.
        if self.reason is not None:
            self.hurry = True
        else:
            self.reason, self.exit_status = f"received {signal.Signals(signum).name}", 128 + signum

    @property
    def requested(self) -> bool:
        """True once a signal came or the deadline passed."""
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason, self.exit_status = self.ran_out.format(self.timeout_s), TIMED_OUT
        return self.reason is not None


class StepBudget(Stop):
    """A step's own time limit under the whole check's Stop: when the budget runs out the step is
    stopped as a signal would stop it (what finished is kept) and the check goes on to the next step."""

    ran_out = "its budget of {:g} s ran out"

    def __init__(self, stop: Stop, budget_s: float | None) -> None:
        super().__init__(budget_s)
        self.stop = stop

    @property
    def requested(self) -> bool:
        if self.stop.requested:  # the check's stop wins; wait_for reads `hurry` right after this
            self.reason, self.hurry = self.stop.reason, self.stop.hurry
        return super().requested


@contextmanager
def stopping_on_signals(stop: Stop) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM only tell `stop`; the check then ends in order."""
    previous = {signum: signal.signal(signum, stop.on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def wait_for(process: subprocess.Popen[bytes], step: Step, stop: Stop) -> tuple[int, str | None]:
    """The step's exit status, and why it was stopped (None: it ran to its end). On a stop the step is
    signalled once, given STOP_GRACE_S to write what it finished, then killed."""
    signalled_at: float | None = None
    while True:
        try:
            returncode = process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
        else:  # exit 0 after the signal: it finished its last test in the meantime
            return returncode, stop.reason if signalled_at is not None and returncode != 0 else None
        if not stop.requested:
            continue
        if signalled_at is None:
            print(f"fanbench gpu_check: {stop.reason}: stopping step {step.name}, up to {STOP_GRACE_S:g} s "
                  f"to write what it finished (a second signal kills it now) ...", flush=True)
            process.send_signal(step.stop_signal)
            signalled_at = time.monotonic()
        elif stop.hurry or time.monotonic() - signalled_at >= STOP_GRACE_S:
            with suppress(ProcessLookupError):  # it ended in the meantime
                os.killpg(process.pid, signal.SIGKILL)  # its session: its worker processes too
            why = "on a second signal" if stop.hurry else f"not stopped {STOP_GRACE_S:g} s later"
            return process.wait(), f"{stop.reason}; killed, {why}"


def run_step(step: Step, out: Path, stop: Stop | None = None) -> StepResult:
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *step.args,
            f"--junitxml={out / f'{step.name}.xml'}"]
    if step.benchmarks:
        args += [f"--benchmark-json={out / f'{step.name}.json'}", f"--report-dir={out / f'{step.name}-report'}"]
    print(f"fanbench gpu_check: {step.title} ...", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log is whole up to the moment a step is stopped or killed
    with open(out / f"{step.name}.log", "w") as log:
        # Its own session: only wait_for signals it. A terminal's Ctrl-C or `timeout`'s SIGTERM to the process
        # group would otherwise reach it too, and a second SIGTERM kills `pytest bench` mid-save.
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        returncode, interrupted = wait_for(process, step, stop or Stop())
    return read_step(step, returncode, out, interrupted)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/gpu-check"), help="where logs, JSON and "
                        "summary.md go (default reports/gpu-check)")
    parser.add_argument("--frames", type=int, default=300, help="frames of the write-up workload (default 300)")
    parser.add_argument("--real-frames", type=int, default=100, help="frames of the real-model run (default 100)")
    parser.add_argument("--capacity-frames", type=int, default=50,
                        help="frames of the capacity steps' workloads (each streamed at 25 fps; default 50)")
    parser.add_argument("--capacity-rounds", type=int, default=3, help="timed rounds of the capacity steps (default 3)")
    parser.add_argument("--probe-seconds", type=float, default=2.5,
                        help="each capacity probe's stream, in seconds (default 2.5, as pytest bench's)")
    parser.add_argument("--sample-rate", type=float, default=10.0, help="resource samples per second (default 10)")
    parser.add_argument("--step", action="append", choices=STEP_NAMES, dest="only", metavar="STEP",
                        help=f"run only this step (repeat for several; default all: {', '.join(STEP_NAMES)})")
    parser.add_argument("--budget", action="append", default=[], metavar="STEP=SECONDS",
                        help="a step's own time limit (repeat for several): when it runs out the step is stopped "
                             "as SIGTERM stops it, its finished benchmarks kept, and the check goes on with the next "
                             "step (default: none)")
    parser.add_argument("--cuda-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a CUDA provider option for every benchmark step (as `pytest bench --cuda-option`)")
    parser.add_argument("--provider", choices=("cuda", "cpu"), default="cuda",
                        help="cpu: a dry run of every step on the CPU with tiny models (the write-up's replaced by "
                             f"{' '.join(DRY_RUN_WORKLOAD)}, the real detector at 64x64), to check the check itself "
                             "(default cuda)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="stop the whole check after this long as SIGTERM does: the running step writes what "
                             f"it finished (up to {STOP_GRACE_S:g} s more), summary.md says which step ran out "
                             f"of time; exit {TIMED_OUT} (default: no limit)")
    args = parser.parse_args(argv)
    for name in ("frames", "real_frames", "capacity_frames", "capacity_rounds", "probe_seconds", "sample_rate", "timeout"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.exit(USAGE_ERROR, f"error: --{name.replace('_', '-')} must be above 0, got {getattr(args, name)}.\n")
    for text in args.cuda_option:
        try:
            parse_cuda_option(text)
        except CudaOptionError as error:
            parser.exit(USAGE_ERROR, f"error: --cuda-option: {error}\n")
    args.budgets = {}
    for text in args.budget:
        name, _, seconds = text.partition("=")
        with suppress(ValueError):  # not a number: refused below
            if name in STEP_NAMES and float(seconds) > 0:
                args.budgets[name] = float(seconds)
                continue
        parser.exit(USAGE_ERROR, f"error: --budget expects STEP=SECONDS with STEP one of {', '.join(STEP_NAMES)} "
                                 f"and SECONDS above 0, got {text!r}.\n")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reason = cuda_unavailable_reason() if args.provider == "cuda" else None
    if reason is not None:
        print(f"fanbench gpu_check needs a CUDA GPU: {reason}", file=sys.stderr)
        return USAGE_ERROR
    args.out.mkdir(parents=True, exist_ok=True)
    real_models, missing = real_model_args("640x640" if args.provider == "cuda" else "64x64")
    chosen = [step for step in steps(args.frames, args.real_frames, args.sample_rate, real_models, args.provider,
                                     args.cuda_option, args.capacity_frames, args.capacity_rounds, args.probe_seconds)
              if args.only is None or step.name in args.only]
    stop = Stop(args.timeout)
    results: list[StepResult] = []
    with stopping_on_signals(stop):
        for step in chosen:
            if stop.requested:
                break
            results.append(run_step(step, args.out, StepBudget(stop, args.budgets.get(step.name))))
        not_run = chosen[len(results):]
        # A signal after the last step ended changes nothing: the check is whole. A step stopped by
        # its own budget is no stop of the check: it failed, and the others ran.
        stopped = stop.reason if stop.reason is not None and (
            not_run or any(result.interrupted for result in results)) else None
        command = "python -m bench.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv)
        text = summary(results, command.strip(), stopped, not_run)
        if missing and (args.only is None or "real" in args.only):
            text += f"\n## real models: skipped\n\n- {missing}\n"
        (args.out / "summary.md").write_text(text)
        print(text, flush=True)
    if stopped is not None:
        return stop.exit_status
    return 0 if all(result.returncode == 0 for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
