"""Command-line options and the shared fixtures: the workload (models + decoded frames) and
the serial reference every strategy is checked against."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from fixtures import gpu
from fixtures.models import SIZES, ModelSpec, file_digest, flops_per_image, model_set, weight_bytes, write_model
from fixtures.user import UserInput, UserInputError, load_user_input, model_option
from fixtures.video import decode_video, video_frame_shape, write_synthetic_video
from fixtures.workloads import MemoryRefused, check_memory, estimate_memory, synthetic_workload


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}.") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}.")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or int(height) < 1 or int(width) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH with positive whole numbers, e.g. 256x256; got {text!r}.")
    return int(height), int(width)


def _thread_spec(text: str):
    from strategies import ThreadSettings, ThreadSpecError

    try:
        return ThreadSettings.parse(text)
    except ThreadSpecError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fanbench", "fanbench: the workload and the strategies to benchmark")
    group.addoption("--frames", type=_at_least(1), default=40, help="Frames to run through every model (default 40).")
    group.addoption("--batch", type=_at_least(1), default=4,
                    help="Batch size: each frame is repeated into a batch of this many (default 4, as the write-up).")
    group.addoption("--frame-size", type=parse_size, default=(256, 256), metavar="HxW",
                    help="Spatial size frames are resized to (default 256x256).")
    group.addoption("--models", type=_at_least(1), default=4, metavar="N",
                    help="How many synthetic models run on every frame (default 4).")
    group.addoption("--model-size", choices=sorted(SIZES), default="medium",
                    help="Size of the synthetic models (default medium; resnet18 matches the write-up's class of model).")
    group.addoption("--strategy", action="append", default=[], metavar="NAME",
                    help="Benchmark only this strategy; repeat for several (default: every strategy).")
    group.addoption("--provider", choices=["auto", "cpu", "cuda"], default="auto",
                    help="Execution provider. auto (default) uses CUDA when a session really runs on it, else CPU.")
    group.addoption("--rounds", type=_at_least(1), default=3, help="Timed runs per benchmark (default 3).")
    group.addoption("--warmup", type=_at_least(0), default=1,
                    help="Untimed warm-up runs per benchmark (default 1; at least 1 on CUDA, for cuDNN's algorithm search).")
    group.addoption("--no-history", action="store_true",
                    help="Do not save this run into the history, nor compare with the last one "
                         "(`pytest bench` does both by default).")
    # --- users' own models and video (logic in fixtures/user.py, docs/own-models.md) ---
    group.addoption("--model", action="append", type=model_option, default=[], metavar="PATH[@HxW]",
                    help="Benchmark this ONNX model instead of the synthetic ones; repeat for several. @HxW sets "
                         "the input height and width where the model leaves them dynamic.")
    group.addoption("--video", type=Path, default=None, metavar="PATH",
                    help="Decode the frames from this video (OpenCV) instead of the synthetic one.")
    group.addoption("--loop-video", action="store_true",
                    help="Replay --video from the start when it has fewer frames than --frames (default: refuse).")
    # --- Thread-settings sweep and batched's frames per call ---
    group.addoption("--threads", action="append", default=[], type=_thread_spec, metavar="SPEC",
                    help="Thread settings to benchmark every selected strategy with; repeat to sweep. SPEC is "
                         "'default' (the strategy's own), 'ort' (onnxruntime's defaults) or KEY=VALUE pairs: "
                         "intra=N,inter=N,spin=0|1,mode=sequential|parallel (a key left out keeps onnxruntime's "
                         "default). Without --threads: each strategy's default, plus onnxruntime's defaults for "
                         "the classic four.")
    group.addoption("--batch-k", type=_at_least(1), default=4, metavar="K",
                    help="Frames stacked into one call per model by the batched strategy (default 4).")
    # --- scenarios, resource sampling, progress, report directory (bench/plugin.py) ---
    from bench.measure.scenarios import parse_fps

    group.addoption("--fps", type=parse_fps, default=25.0, metavar="F",
                    help="Frame rate of the streaming scenario: frame i arrives at i/F s (default 25, a camera's "
                         "rate); 0 runs the offline scenario only.")
    group.addoption("--scenario", choices=["both", "offline", "streaming"], default="both",
                    help="offline: every frame there at the start; streaming: frames arrive at --fps (default both).")
    group.addoption("--no-sampler", action="store_true",
                    help="Do not sample CPU, memory and GPU during the timed rounds (to measure what sampling costs).")
    group.addoption("--sample-rate", type=_positive_float, default=2.0, metavar="HZ",
                    help="Resource samples per second during the timed rounds (default 2; each sample reads "
                         "every process's PSS, which costs CPU).")
    group.addoption("--report-dir", default="reports/latest", metavar="DIR",
                    help="Where the report (Markdown, charts, timelines) is written after the run (default reports/latest).")
    group.addoption("--no-report", action="store_true", help="Write no report directory.")
    group.addoption("--no-progress", action="store_true",
                    help="No progress bar (it shows only when stderr is a terminal anyway).")

    # --- GPU path and named workloads (docs/gpu.md) ---
    from fixtures.named_workloads import WORKLOADS

    group.addoption("--workload", choices=sorted(WORKLOADS), default=None,
                    help="A named workload that sets --models, --model-size, --frame-size, --batch and --frames "
                         "together; only --frames may still be given. writeup: "
                         + WORKLOADS["writeup"].description + ".")
    group.addoption("--require-gpu", action="store_true",
                    help="Fail the run (not skip) unless a session really runs on the CUDA provider; "
                         "implies --provider cuda.")
    group.addoption("--cuda-option", action="append", default=[], type=gpu.cuda_option_type, metavar="KEY=VALUE",
                    help="A CUDA provider option for every session, e.g. cudnn_conv_algo_search=HEURISTIC or "
                         "device_id=1; repeat for several. Recorded with every result.")
    # --- reliability and gating: parsing and evaluation live in bench/measure/limits.py, bench/compare/gates.py
    from bench.compare.gates import SYNTAX, parse_gate
    from bench.measure.limits import BASE_S, PER_MODEL_FRAME_S, parse_time_limit

    group.addoption("--time-limit", type=parse_time_limit, default=None, metavar="SECONDS",
                    help=f"Fail a benchmark whose single run takes longer, and stop its strategy (default: "
                         f"{BASE_S:g} s + {PER_MODEL_FRAME_S:g} s per model per frame).")
    group.addoption("--gate", action="append", type=parse_gate, default=[], metavar="GATE",
                    help=f"Fail the session unless one benchmark is FACTOR times as fast as another in this run: "
                         f"{SYNTAX}. Repeat for several.")


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}.") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of at least 0, got {text!r}.")
    return value


def _positive_float(text: str) -> float:
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}.")
    return value


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts worker processes or runs many frames; deselect with -m 'not slow'.")
    from fixtures.named_workloads import apply_named_workload

    apply_named_workload(config)
    gpu.configure(config)
    from strategies import STRATEGIES
    from strategies.runtime.sessions import onnxruntime

    try:
        onnxruntime()
    except ImportError as error:
        raise pytest.UsageError(str(error)) from None

    unknown = [name for name in config.getoption("strategy") if name not in STRATEGIES]
    if unknown:
        raise pytest.UsageError(f"--strategy: unknown strategy {unknown[0]!r}; choose from: {', '.join(STRATEGIES)}.")


USER_INPUT = pytest.StashKey["UserInput | None"]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Load and check --model/--video before anything is collected or timed: a bad file ends
    the run here with one line naming it (exit status 4), with nothing started."""
    config = session.config
    height, width = config.getoption("frame_size")
    try:
        if not config.getoption("model"):  # the synthetic models: refused before any video is written or decoded
            check_memory(synthetic_memory(WorkloadConfig.from_config(config), video_frame_shape(config.getoption("video"))))
        config.stash[USER_INPUT] = load_user_input(
            config.getoption("model"), config.getoption("video"), frames=config.getoption("frames"),
            loop=config.getoption("loop_video"), frame_size=(height, width), batch=config.getoption("batch"))
    except (UserInputError, MemoryRefused) as error:
        raise pytest.UsageError(str(error)) from None


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    # --require-gpu: fail at once, before anything runs on the CPU. Here rather than in
    # pytest_sessionstart: pytest prints an exit raised there twice (stderr and the summary).
    gpu.require_gpu(session.config)


def user_input(config: pytest.Config) -> UserInput | None:
    return config.stash.get(USER_INPUT, None)


@dataclass(frozen=True)
class WorkloadConfig:
    """Everything that decides what is run, read once from the command line."""

    frames: int
    batch: int
    height: int
    width: int
    model_count: int
    model_size: str
    provider: str
    cuda_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_config(cls, config: pytest.Config) -> WorkloadConfig:
        height, width = config.getoption("frame_size")
        return cls(frames=config.getoption("frames"), batch=config.getoption("batch"), height=height, width=width,
                   model_count=config.getoption("models"), model_size=config.getoption("model_size"),
                   provider=config.getoption("provider"), cuda_options=gpu.configured_cuda_options(config))

    def model_specs(self) -> list[ModelSpec]:
        base = SIZES[self.model_size]
        return model_set(ModelSpec(width=base.width, stages=base.stages, blocks=base.blocks, classes=base.classes,
                                   height=self.height, width_px=self.width), self.model_count)


def synthetic_memory(cfg: WorkloadConfig, image_shape: tuple[int, int, int]):
    """The memory estimate of a run of the synthetic models (fixtures/workloads.py)."""
    specs = cfg.model_specs()
    return estimate_memory(cfg.frames, [(cfg.batch, 3, cfg.height, cfg.width)], image_shape,
                           [weight_bytes(spec) for spec in specs],
                           output_bytes=sum(4 * cfg.batch * spec.classes for spec in specs))


def resolve_provider(requested: str, probe_model: Path, cuda_options: dict[str, str] | None = None) -> str:
    """'auto' becomes 'cuda' only when a session really runs on CUDA, else 'cpu'."""
    if requested != "auto":
        return requested
    import onnxruntime as ort

    from strategies import ThreadSettings
    from strategies.runtime.sessions import make_session, provider_used

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "cpu"
    try:
        return provider_used(make_session(probe_model, ThreadSettings(intra_op=1), "cuda", cuda_options))
    except Exception:
        return "cpu"


def checked_provider(config: pytest.Config, requested: str, probe_model: Path,
                     cuda_options: dict[str, str]) -> str:
    """The provider `requested` resolves to; the run ends as a usage error if it may not be timed
    with this run's options (--provider auto found a GPU, but --warmup 0 was given)."""
    provider = resolve_provider(requested, probe_model, cuda_options)
    refusal = gpu.cold_start_refusal(provider, config.getoption("warmup"))
    if refusal is not None:
        pytest.exit(f"--provider {requested} resolved to cuda: {refusal}", returncode=pytest.ExitCode.USAGE_ERROR)
    return provider


def pytest_runtest_setup(item: pytest.Item) -> None:
    gpu.skip_without_gpu(item)


@pytest.fixture(scope="session")
def workload_config(pytestconfig: pytest.Config) -> WorkloadConfig:
    return WorkloadConfig.from_config(pytestconfig)


@pytest.fixture(scope="session")
def synthetic_models(workload_config: WorkloadConfig, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[ModelSpec, Path]]:
    """The synthetic model files, written once per test session."""
    directory = tmp_path_factory.mktemp("models")
    return [(spec, write_model(spec, directory)) for spec in workload_config.model_specs()]


@pytest.fixture(scope="session")
def synthetic_video(workload_config: WorkloadConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_video(tmp_path_factory.mktemp("video") / "synthetic.mp4", workload_config.frames)


@pytest.fixture(scope="session")
def workload(workload_config: WorkloadConfig, request: pytest.FixtureRequest):
    """Models plus frames decoded and preprocessed before any timing, as in the write-up.
    A user's --model/--video, loaded at session start, replace the synthetic ones."""
    from strategies import Workload

    cfg = workload_config
    user = user_input(request.config)
    if user is not None and user.models is not None:
        provider = checked_provider(request.config, cfg.provider, user.models[0].path, dict(cfg.cuda_options))
        return Workload(user.models, provider, cuda_options=cfg.cuda_options)
    synthetic_models = request.getfixturevalue("synthetic_models")
    if user is not None and user.images is not None:
        images = user.images
    else:
        images = decode_video(request.getfixturevalue("synthetic_video"), cfg.frames)
    provider = checked_provider(request.config, cfg.provider, synthetic_models[0][1], dict(cfg.cuda_options))
    specs = [spec for spec, _ in synthetic_models]
    built = synthetic_workload(specs, images, cfg.batch, synthetic_models[0][1].parent, provider)
    return replace(built, cuda_options=cfg.cuda_options)


@pytest.fixture(scope="session")
def model_facts(workload_config: WorkloadConfig, request: pytest.FixtureRequest) -> dict[str, object]:
    """What a stored result needs to say about the models it timed (FLOPs unknown for a user's model)."""
    user = user_input(request.config)
    if user is not None and user.models is not None:
        return {"model_flops": [None] * len(user.models), "model_set_hash": file_digest([m.path for m in user.models])}
    synthetic_models = request.getfixturevalue("synthetic_models")
    return {
        "model_flops": [flops_per_image(spec) * workload_config.batch for spec, _ in synthetic_models],
        "model_set_hash": file_digest([path for _, path in synthetic_models]),
    }


@pytest.fixture(scope="session")
def reference(workload):
    """Outputs of `serial` with its default settings: the oracle for every strategy."""
    from strategies import get_strategy

    with get_strategy("serial")(workload) as serial:
        return serial.run().outputs


@pytest.fixture(scope="session")
def calibration(workload, reference):
    """Each model's measured tolerance: noise floor and discrimination (strategies/equivalence.py),
    measured once per run with the reference, outside every timed region."""
    from strategies.equivalence import measure_calibration

    return measure_calibration(workload, reference)
