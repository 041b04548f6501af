"""Building onnxruntime sessions, and refusing a session that silently fell back to the CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import ThreadSettings

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class ProviderError(RuntimeError):
    """The session does not run on the provider that was asked for."""


def onnxruntime() -> Any:
    """Import onnxruntime, or say in one line which package to install."""
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


def make_session(path: Path | str, settings: ThreadSettings, provider: str = "cpu",
                 provider_options: dict[str, Any] | None = None) -> Any:
    """An InferenceSession on `provider`, checked against what it really runs on.

    onnxruntime-gpu lists CUDAExecutionProvider as available even where the CUDA libraries
    cannot load, then builds the session on the CPU with only a log line. The check below
    reads `session.get_providers()`, which tells the truth.
    """
    ort = onnxruntime()
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {sorted(PROVIDERS)}, got {provider!r}.")
    wanted = PROVIDERS[provider]
    providers: list[Any] = [wanted] if provider == "cpu" else [(wanted, provider_options or {}), "CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), session_options(settings), providers=providers)
    if session.get_providers()[0] != wanted:
        raise ProviderError(
            f"{path}: asked for {wanted} but the session runs on {session.get_providers()[0]}. "
            "onnxruntime falls back silently when the CUDA 13 / cuDNN 9 libraries cannot load: install "
            "`.[gpu]` and call onnxruntime.preload_dlls(), or run with --provider cpu.")
    return session


def provider_used(session: Any) -> str:
    """'cuda' or 'cpu', from the provider the session really runs on."""
    return "cuda" if session.get_providers()[0] == PROVIDERS["cuda"] else "cpu"


def io_names(session: Any) -> tuple[str, list[str]]:
    """The single input's name and the output names, read from the model."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ValueError(f"the model has {len(inputs)} inputs ({names}); fanbench feeds one image input per model.")
    return inputs[0].name, [output.name for output in session.get_outputs()]
