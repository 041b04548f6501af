"""Every fanbench option, declared once (`add_options`), and the one frozen `RunOptions` built
from them at configure time (`build_run_options`). No pytest import: tests build the same object
with argparse (tests/helpers/runs.py parse_args)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.compare.gates import SYNTAX, CapacityGate, Gate, parse_gate
from bench.measure.capacity import check_arrival_rate
from bench.measure.limits import BASE_S, PER_MODEL_FRAME_S, checked_float, parse_time_limit
from bench.measure.scenarios import Scenario, parse_fps, selected_scenarios
from bench.thread_spec import ThreadChoice, ThreadSpecError, parse_threads, too_many_threads
from fixtures.cuda import CudaOptionError, parse_cuda_option
from fixtures.models import SIZES
from fixtures.options import WORKLOADS, OptionError, WorkloadOptions, cold_start_refusal, workload_options
from fixtures.user import model_option
from strategies import STRATEGIES
from strategies.runtime import usable_cores


def at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}.") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}.")
        return value

    return parse


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or int(height) < 1 or int(width) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH with positive whole numbers, e.g. 256x256; got {text!r}.")
    return int(height), int(width)


# Bounded numbers (argparse types): checked_float's one-line refusal names the value and what is allowed.
# --sample-rate: one sample every 100 s to 1000 a second (near 0, an interval too long for the sampler to wait on).
sample_rate = partial(checked_float, valid=lambda value: 0.01 <= value <= 1000, expected="a number of samples per second",
                      refusal="must be between 0.01 and 1000 samples per second")
gpu_share = partial(checked_float, valid=lambda value: 0 <= value <= 1 or (value > 1 and value.is_integer()),
                    expected="a share of a GPU", refusal="must be between 0 and 1, or a whole number of GPUs")
positive_ms = partial(checked_float, valid=lambda value: 0 < value < float("inf"),
                      expected="a number", refusal="must be a positive number")
non_negative_ms = partial(checked_float, valid=lambda value: 0 <= value < float("inf"),
                          expected="a number", refusal="must be 0 or more milliseconds")


def argument_type(parse: Callable[[str], Any], error: type[ValueError]) -> Callable[[str], Any]:
    """`parse` as an argparse type: its `error` becomes argparse's one-line refusal."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except error as refused:
            raise argparse.ArgumentTypeError(str(refused)) from None

    return convert


def add_options(add: Callable[..., Any]) -> None:
    """Declare every option with `add`: pytest's group.addoption or argparse's add_argument."""
    add("--frames", type=at_least(1), default=32, help="Frames to run through every model (default 32).")
    add("--batch", type=at_least(1), default=4,
        help="Batch size: each frame is repeated into a batch of this many (default 4, as the write-up).")
    add("--frame-size", type=parse_size, default=(256, 256), metavar="HxW",
        help="Spatial size frames are resized to (default 256x256).")
    add("--models", type=at_least(1), default=4, metavar="N", help="How many synthetic models run on every frame (default 4).")
    add("--model-size", choices=sorted(SIZES), default="medium",
        help="Size of the synthetic models (default medium; resnet18 matches the write-up's class of model).")
    add("--strategy", action="append", default=[], metavar="NAME",
        help="Benchmark only this strategy; repeat for several (default: every strategy).")
    add("--provider", choices=["auto", "cpu", "cuda"], default="auto",
        help="Execution provider. auto (default) uses CUDA when a session really runs on it, else CPU.")
    add("--rounds", type=at_least(1), default=3, help="Timed runs per benchmark (default 3).")
    add("--warmup", type=at_least(0), default=1, help="Untimed warm-up runs per benchmark, each of every camera's first 8 frames "
                                                      "(default 1; at least 1 on CUDA, for cuDNN's algorithm search).")
    add("--interleave", action="store_true",
        help="Run the rounds of all selected benchmarks in turns (A1 B1 C1 A2 B2 C2 ...), every strategy open at once, so that "
             "a change of load from other jobs hits every strategy alike (docs/measurements.md). The capacity search "
             "(docs/capacity.md) runs only without it.")
    add("--no-history", action="store_true",
        help="Do not save this run into the history, nor compare with the last one (`pytest bench` does both by default).")
    # --- users' own models and video (fixtures/user.py, docs/own-models.md) ---
    add("--model", action="append", type=model_option, default=[], metavar="PATH[@HxW]",
        help="Benchmark this ONNX model instead of the synthetic ones; repeat for several. @HxW sets the input height and width "
             "where the model leaves them dynamic.")
    add("--video", action="append", type=Path, default=[], metavar="PATH",
        help="Decode the frames from this video (OpenCV) instead of the synthetic one; repeat for one video per camera (camera "
             "c shows video c mod the number of videos; --streams defaults to that number).")
    add("--loop-video", action="store_true",
        help="Replay --video from the start when it has fewer frames than --frames (default: refuse).")
    add("--threads", action="append", default=[], type=argument_type(parse_threads, ThreadSpecError), metavar="SPEC",
        help="Thread settings to benchmark every selected strategy with; repeat to sweep. SPEC is 'default' (the strategy's "
             "own), 'ort' (onnxruntime's defaults) or KEY=VALUE pairs: intra=N,inter=N,spin=0|1,mode=sequential|parallel (a key "
             "left out keeps onnxruntime's default). Without --threads: each strategy's default, plus onnxruntime's defaults "
             "for the classic four. intra and inter may be at most 4 x the usable cores (refused above).")
    add("--batch-k", type=at_least(1), default=4, metavar="K",
        help="Frames stacked into one call per model by the batched strategy (default 4).")
    add("--ray-address", default=None, metavar="ADDRESS",
        help="The ray strategy joins this running Ray cluster (host:port, or auto) and leaves it running (default: a local Ray "
             "instance started for the run and shut down after it; docs/ray.md).")
    add("--ray-gpus-per-actor", type=gpu_share, default=None, metavar="SHARE",
        help="The share of a GPU each ray actor asks for (default with the CUDA provider: 1/ceil(models/GPUs Ray sees), the "
             "models spread evenly over the GPUs; 0 on the CPU).")
    add("--fps", type=parse_fps, default=25.0, metavar="F",
        help="Frame rate of the streaming scenario: frame i arrives at i/F s (default 25, a camera's rate); 0 runs the offline "
             "scenario only.")
    add("--scenario", choices=["both", "offline", "streaming"], default="both",
        help="offline: every frame there at the start; streaming: frames arrive at --fps (default both).")
    add("--no-sampler", action="store_true",
        help="Do not sample CPU, memory and GPU during the timed rounds (to measure what sampling costs).")
    add("--sample-rate", type=sample_rate, default=2.0, metavar="HZ",
        help="Resource samples per second during the timed rounds (default 2; each sample reads every process's PSS, which "
             "costs CPU).")
    add("--report-dir", default="reports/latest", metavar="DIR",
        help="Where the report (Markdown, charts, timelines) is written after the run (default reports/latest).")
    add("--no-report", action="store_true", help="Write no report directory.")
    add("--no-progress", action="store_true", help="No progress bar (it shows only when stderr is a terminal anyway).")
    # --- GPU path and named workloads (docs/gpu.md) ---
    add("--workload", choices=sorted(WORKLOADS), default=None,
        help="A named workload that sets --models, --model-size, --frame-size, --batch and --frames "
             "together; only --frames may still be given. writeup: " + WORKLOADS["writeup"].description + ".")
    add("--require-gpu", action="store_true",
        help="Fail the run (not skip) unless a session really runs on the CUDA provider; implies --provider cuda.")
    add("--cuda-option", action="append", default=[], type=argument_type(parse_cuda_option, CudaOptionError), metavar="KEY=VALUE",
        help="A CUDA provider option for every session, e.g. cudnn_conv_algo_search=HEURISTIC or device_id=1; repeat for "
             "several. Recorded with every result.")
    # --- reliability and gating (bench/measure/limits.py, bench/compare/gates.py) ---
    add("--time-limit", type=parse_time_limit, default=None, metavar="SECONDS",
        help=f"Fail a benchmark whose single run takes longer, and stop its strategy (default: "
             f"{BASE_S:g} s + {PER_MODEL_FRAME_S:g} s per model per frame).")
    # --- several cameras and capacity (bench/measure/capacity.py, docs/capacity.md) ---
    add("--streams", type=at_least(1), default=1, metavar="N",
        help="Cameras in the streaming scenario, each at --fps; the workload's frames go round-robin to them (default 1).")
    add("--stream-phase", choices=["spread", "aligned"], default="spread",
        help="spread: camera c's frame j arrives at j/fps + c/(N fps); aligned: all N frames of a period at once, the worst "
             "case (default spread).")
    add("--deadline-ms", type=positive_ms, default=None, metavar="MS",
        help="A frame's latency bound (default: one frame period of its camera).")
    add("--no-capacity", action="store_true", help="Do not search, per strategy, for the most cameras at --fps it serves "
                                                   "(searched by default whenever streaming runs).")
    add("--probe-seconds", type=positive_ms, default=2.5, metavar="S",
        help="Length of each capacity probe's stream (default 2.5; frames are reused when the workload has fewer).")
    add("--max-batch", type=at_least(1), default=None, metavar="N",
        help="dynamic_batch: the most frames in one call per model (default 8).")
    add("--max-delay-ms", type=non_negative_ms, default=None, metavar="MS",
        help="dynamic_batch: how long a frame may wait for more to batch with (default 0: never wait).")
    add("--gate", action="append", type=parse_gate, default=[], metavar="GATE",
        help=f"Fail the session unless one benchmark is FACTOR times as fast as another in this run, or a "
             f"strategy serves at least N cameras: {SYNTAX}. Repeat for several.")


@dataclass(frozen=True)
class RunOptions:
    """Every option of a run, checked and with the named workload and --require-gpu applied."""

    workload: WorkloadOptions
    strategies: tuple[str, ...]  # --strategy, else every registered one in registry order
    threads: tuple[ThreadChoice, ...]
    batch_k: int
    ray_address: str | None  # None: the ray strategy starts a local instance
    ray_gpus_per_actor: float | None  # None: default_gpu_share on CUDA, 0 on the CPU (strategies/ray.py)
    rounds: int
    warmup: int
    interleave: bool  # rounds of all benchmarks in turns (bench/interleave.py)
    time_limit: float | None  # None: the per-workload default (bench/measure/limits.py)
    scenarios: tuple[Scenario, ...]
    sampler: bool
    sample_rate: float
    progress: bool
    history: bool
    report_dir: Path | None  # None: no report (--no-report, --benchmark-disable or --benchmark-skip)
    gates: tuple[Gate | CapacityGate, ...]
    capacity: bool  # search each streaming benchmark's capacity (not --no-capacity, streaming selected)
    probe_seconds: float
    dynamic_batch: tuple[tuple[str, Any], ...]  # dynamic_batch's --max-batch / --max-delay-ms, as given
    # pytest-benchmark's own options, as given
    benchmark_disabled: bool  # --benchmark-disable or --benchmark-skip
    compare_fail: tuple[Any, ...]  # --benchmark-compare-fail checks
    storage: str
    netrc: str
    save: str | None
    autosave: bool
    compare: Any  # None: not asked; []: --benchmark-compare without a number

    def strategy_arguments(self, name: str) -> tuple[tuple[str, Any], ...]:
        """Constructor arguments of strategy `name` taken from options: batched's frames per call, dynamic_batch's
        batching, ray's cluster address and GPU share (only those given, so ids stay short)."""
        arguments = {"batched": (("k", self.batch_k),), "dynamic_batch": self.dynamic_batch,
                     "ray": (("address", self.ray_address), ("gpus_per_actor", self.ray_gpus_per_actor))}
        return tuple((key, value) for key, value in arguments.get(name, ()) if value is not None)


def build_run_options(values: Mapping[str, Any], given: Collection[str]) -> RunOptions:
    """RunOptions from the parsed command line (`vars(config.option)`); OptionError when options contradict."""
    workload = workload_options(values, given)
    if refusal := cold_start_refusal(workload.provider, values["warmup"]):
        raise OptionError(refusal)
    if unknown := [name for name in values["strategy"] if name not in STRATEGIES]:
        raise OptionError(f"--strategy: unknown strategy {unknown[0]!r}; choose from: {', '.join(STRATEGIES)}.")
    for choice in values["threads"]:
        if refusal := too_many_threads(choice, usable_cores()):
            raise OptionError(refusal)
    fps, streams, phase = values["fps"], values["streams"], values["stream_phase"]
    videos = max(1, len(values["video"]))
    if videos > 1 and "--streams" not in given:
        streams = videos  # one camera per video
    deadline_ms = values["deadline_ms"]
    streaming = values["scenario"] != "offline" and fps > 0
    for flag, given_value in (("--streams", "--streams" in given and streams != 1), ("--deadline-ms", deadline_ms),
                              ("--stream-phase", "--stream-phase" in given)):
        if given_value and not streaming:
            raise OptionError(f"{flag}: there is no stream to apply it to (--fps 0 or --scenario offline); "
                              "give --fps above 0 and --scenario both or streaming.")
    capacity_gates = [str(gate) for gate in values["gate"] if isinstance(gate, CapacityGate)]
    if capacity_gates and values["interleave"]:
        raise OptionError(f"--gate {capacity_gates[0]!r}: capacity is searched only when the benchmarks run one after "
                          "another; drop --interleave (or the gate).")
    if capacity_gates and (not streaming or values["no_capacity"]):
        raise OptionError(f"--gate {capacity_gates[0]!r}: a capacity needs the streaming scenario with a frame rate; "
                          "give --fps above 0, without --scenario offline or --no-capacity.")
    if fps == 0 and "--probe-seconds" in given:
        raise OptionError("--probe-seconds: a capacity needs a frame rate; give --fps above 0 (or drop --probe-seconds).")
    try:
        if streaming:
            check_arrival_rate(streams, fps, phase)
        scenarios = selected_scenarios(values["scenario"], fps, streams, phase,
                                       None if deadline_ms is None else deadline_ms / 1000, videos)
    except ValueError as error:
        raise OptionError(f"--streams {streams}: {error}" if "OS timers" in str(error) else str(error)) from None
    disabled = bool(values["benchmark_disable"] or values["benchmark_skip"])
    if values["interleave"] and disabled:
        flag = "--benchmark-disable" if values["benchmark_disable"] else "--benchmark-skip"
        raise OptionError(f"--interleave: {flag} times no rounds to take in turns; drop one of the two.")
    return RunOptions(
        workload=workload, strategies=tuple(values["strategy"] or STRATEGIES), threads=tuple(values["threads"]),
        batch_k=values["batch_k"], ray_address=values["ray_address"], ray_gpus_per_actor=values["ray_gpus_per_actor"],
        rounds=values["rounds"], warmup=values["warmup"], interleave=values["interleave"], time_limit=values["time_limit"],
        scenarios=tuple(scenarios), sampler=not values["no_sampler"], sample_rate=values["sample_rate"],
        progress=not values["no_progress"], history=not values["no_history"], gates=tuple(values["gate"]),
        report_dir=None if values["no_report"] or disabled else Path(values["report_dir"]),
        capacity=streaming and not values["no_capacity"] and not disabled and not values["interleave"],
        probe_seconds=values["probe_seconds"], benchmark_disabled=disabled,
        dynamic_batch=tuple((key, values[key]) for key in ("max_batch", "max_delay_ms") if values[key] is not None),
        compare_fail=tuple(values["benchmark_compare_fail"] or ()), storage=values["benchmark_storage"],
        netrc=values["benchmark_netrc"], save=values["benchmark_save"], autosave=bool(values["benchmark_autosave"]),
        compare=values["benchmark_compare"])
