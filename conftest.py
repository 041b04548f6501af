"""Command-line options and the shared fixtures: the workload (models + decoded frames) and
the serial reference every strategy is checked against."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures.models import SIZES, ModelSpec, file_digest, flops_per_image, model_set, write_model
from fixtures.video import decode_video, frames_tensor, write_synthetic_video


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
    group.addoption("--warmup", type=_at_least(0), default=1, help="Untimed warm-up runs per benchmark (default 1).")
    group.addoption("--no-history", action="store_true",
                    help="Do not save this run into the history, nor compare with the last one "
                         "(`pytest bench` does both by default).")
    # --- reliability and gating (issue 6): parsing and evaluation live in bench/limits.py, bench/gates.py
    from bench.gates import SYNTAX, parse_gate
    from bench.limits import BASE_S, PER_MODEL_FRAME_S, parse_time_limit

    group.addoption("--time-limit", type=parse_time_limit, default=None, metavar="SECONDS",
                    help=f"Fail a benchmark whose single run takes longer, and stop its strategy (default: "
                         f"{BASE_S:g} s + {PER_MODEL_FRAME_S:g} s per model per frame).")
    group.addoption("--gate", action="append", type=parse_gate, default=[], metavar="GATE",
                    help=f"Fail the session unless one benchmark is FACTOR times as fast as another in this run: "
                         f"{SYNTAX}. Repeat for several.")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: starts worker processes or runs many frames; deselect with -m 'not slow'.")
    from strategies import STRATEGIES
    from strategies.sessions import onnxruntime

    try:
        onnxruntime()
    except ImportError as error:
        raise pytest.UsageError(str(error)) from None

    unknown = [name for name in config.getoption("strategy") if name not in STRATEGIES]
    if unknown:
        raise pytest.UsageError(f"--strategy: unknown strategy {unknown[0]!r}; choose from: {', '.join(STRATEGIES)}.")


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

    @classmethod
    def from_config(cls, config: pytest.Config) -> WorkloadConfig:
        height, width = config.getoption("frame_size")
        return cls(frames=config.getoption("frames"), batch=config.getoption("batch"), height=height, width=width,
                   model_count=config.getoption("models"), model_size=config.getoption("model_size"),
                   provider=config.getoption("provider"))

    def model_specs(self) -> list[ModelSpec]:
        base = SIZES[self.model_size]
        return model_set(ModelSpec(width=base.width, stages=base.stages, blocks=base.blocks, classes=base.classes,
                                   height=self.height, width_px=self.width), self.model_count)


def resolve_provider(requested: str, probe_model: Path) -> str:
    """'auto' becomes 'cuda' only when a session really runs on CUDA, else 'cpu'."""
    if requested != "auto":
        return requested
    import onnxruntime as ort

    from strategies import ThreadSettings
    from strategies.sessions import make_session, provider_used

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "cpu"
    try:
        return provider_used(make_session(probe_model, ThreadSettings(intra_op=1), "cuda"))
    except Exception:
        return "cpu"


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
def workload(workload_config: WorkloadConfig, synthetic_models, synthetic_video: Path):
    """Models plus frames decoded and preprocessed before any timing, as in the write-up."""
    from strategies import ModelInput, Workload

    cfg = workload_config
    images = decode_video(synthetic_video, cfg.frames)
    tensor = frames_tensor(images, cfg.height, cfg.width, cfg.batch)  # one array shared by every model
    provider = resolve_provider(cfg.provider, synthetic_models[0][1])
    models = tuple(ModelInput(path.stem, path, tensor) for _, path in synthetic_models)
    return Workload(models, provider)


@pytest.fixture(scope="session")
def model_facts(workload_config: WorkloadConfig, synthetic_models) -> dict[str, object]:
    """What a stored result needs to say about the models it timed."""
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
