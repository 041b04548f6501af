"""What the strategies share to run; the names below are those the benchmark's own code uses too."""

from strategies.runtime.cudart import CudaRuntimeError, cuda_runtime
from strategies.runtime.ray_instance import send_guard_lines_to as send_ray_guard_lines_to
from strategies.runtime.sessions import (
    ProviderError,
    SessionFactory,
    device_id,
    io_names,
    make_session,
    onnxruntime,
    provider_used,
)
from strategies.runtime.workers import detach_from_terminal_signals, terminal_signals_blocked
from strategies.settings import usable_cores

__all__ = [
    "CudaRuntimeError", "ProviderError", "SessionFactory", "cuda_runtime", "detach_from_terminal_signals",
    "device_id", "io_names", "make_session", "onnxruntime", "provider_used", "send_ray_guard_lines_to",
    "terminal_signals_blocked", "usable_cores",
]
