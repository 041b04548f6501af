"""Building onnxruntime sessions, refusing a session that silently fell back to the CPU, and the
base of every strategy that holds one session per model in this process."""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strategies.base import Strategy
from strategies.records import CallLog, Outputs
from strategies.settings import ThreadSettings

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ProviderError(RuntimeError):
    """The session does not run on the provider that was asked for."""


def onnxruntime() -> Any:
    """Import onnxruntime, or say in one line which package to install. Lazy, the one place: the plugins
    parse options without it, so a run without it ends in this line rather than a traceback."""
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ImportError(
            "onnxruntime is not installed: run `pip install -e '.[cpu]'` (or `.[gpu]` on a CUDA host).") from error
    return ort


def session_options(settings: ThreadSettings) -> Any:
    ort = onnxruntime()
    options = ort.SessionOptions()
    if settings.intra_op is not None:
        options.intra_op_num_threads = settings.intra_op
    if settings.inter_op is not None:
        options.inter_op_num_threads = settings.inter_op
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if settings.parallel else ort.ExecutionMode.ORT_SEQUENTIAL
    if settings.spinning is not None:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if settings.spinning else "0")
    return options


_preload_lock = threading.Lock()
_preload_report: str | None = None  # None until preload_cuda_libraries() ran in this process


def preload_cuda_libraries() -> str:
    """`onnxruntime.preload_dlls()` once per process (it loads the pip-installed CUDA and cuDNN libraries); what
    it prints about missing ones is returned for a later fall-back error to quote."""
    global _preload_report
    with _preload_lock:
        if _preload_report is None:
            ort = onnxruntime()
            printed = io.StringIO()
            preload = getattr(ort, "preload_dlls", None)
            if preload is None:
                _preload_report = ""  # onnxruntime < 1.21: libraries come from the system search path
            else:
                try:
                    with contextlib.redirect_stdout(printed):
                        preload()
                except Exception as error:  # e.g. RuntimeError for a bad directory: keep it for the message
                    printed.write(f"onnxruntime.preload_dlls() raised {type(error).__name__}: {error}\n")
                _preload_report = printed.getvalue().strip()
        return _preload_report


def fallback_message(source: str, wanted: str, actual: str, preload_report: str) -> str:
    """Why a CUDA session ended up elsewhere, and what to do about it."""
    message = (
        f"{source}: asked for {wanted} but the session fell back to {actual}. onnxruntime-gpu does this "
        "silently when the CUDA provider cannot load, usually because the CUDA 13 / cuDNN 9 libraries are "
        "missing or not found. Install them with `pip install -e '.[gpu]'` (onnxruntime-gpu[cuda,cudnn]); "
        "fanbench calls onnxruntime.preload_dlls() before creating CUDA sessions so the pip-installed "
        "libraries are found. Check the driver with `nvidia-smi`, or run with --provider cpu.")
    if preload_report:
        message += f" onnxruntime.preload_dlls() reported: {' | '.join(preload_report.splitlines())}"
    return message


def make_session(path: Path | str | bytes, settings: ThreadSettings, provider: str = "cpu",
                 provider_options: dict[str, Any] | None = None) -> Any:
    """An InferenceSession on `provider` (a model file or bytes), checked with `get_providers()`: onnxruntime-gpu
    lists CUDA even where its libraries cannot load, then silently builds the session on the CPU."""
    ort = onnxruntime()
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {sorted(PROVIDERS)}, got {provider!r}.")
    wanted = PROVIDERS[provider]
    source = "<in-memory model>" if isinstance(path, bytes) else str(path)
    preload_report = ""
    if provider == "cpu":
        providers: list[Any] = [wanted]
    else:
        available = ort.get_available_providers()
        if wanted not in available:
            raise ProviderError(
                f"{source}: asked for {wanted} but this onnxruntime {ort.__version__} (device {ort.get_device()}) "
                f"does not have it; it has {', '.join(available)}. Install the GPU build on a CUDA host: "
                "`pip uninstall -y onnxruntime && pip install -e '.[gpu]'`, or run with --provider cpu.")
        preload_report = preload_cuda_libraries()
        providers = [(wanted, provider_options or {}), "CPUExecutionProvider"]
    session = ort.InferenceSession(path if isinstance(path, bytes) else source, session_options(settings),
                                   providers=providers)
    actual = session.get_providers()[0]
    if actual != wanted:
        raise ProviderError(fallback_message(source, wanted, actual, preload_report))
    return session


@dataclass(frozen=True)
class SessionFactory:
    """How every session of a run is made (`Workload.sessions`), here or pickled in a worker or actor, so none
    forgets an option the run asked for; `extra`: a strategy's own options (on CUDA only, as the run's)."""

    provider: str = "cpu"
    options: tuple[tuple[str, str], ...] = ()  # the run's CUDA provider options, sorted pairs

    def open(self, model: Path | str | bytes, settings: ThreadSettings, **extra: str) -> Any:
        options = {**dict(self.options), **extra} if self.provider == "cuda" else None
        return make_session(model, settings, self.provider, options)


def device_id(options: dict[str, str]) -> int:
    return int(options.get("device_id", "0"))


def provider_used(session: Any) -> str:
    return "cuda" if session.get_providers()[0] == PROVIDERS["cuda"] else "cpu"


def io_names(session: Any) -> tuple[str, list[str]]:
    """The single input's name and the output names."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ValueError(f"the model has {len(inputs)} inputs ({names}); fanbench feeds one image input per model.")
    return inputs[0].name, [output.name for output in session.get_outputs()]


class SessionStrategy(Strategy):
    """One session per model, built in `open`."""

    def open(self) -> None:
        self.sessions: list[Any] = []
        self.input_names: list[str] = []
        for model in self.workload.models:
            session = self.workload.sessions.open(model.path, self.settings)
            self.sessions.append(session)
            self.input_names.append(io_names(session)[0])
        self.providers_used = [provider_used(session) for session in self.sessions]

    def close(self) -> None:
        self.sessions = []

    def feeds(self, model: int, frame: int) -> dict[str, np.ndarray]:
        return {self.input_names[model]: self.workload.models[model].frames[self.source(frame)]}

    def run_one(self, log: CallLog, model: int, frame: int, lane: str) -> Outputs:
        return tuple(log.run(self.sessions[model], self.feeds(model, frame), model, frame, lane))
