"""What the strategies share to run: sessions, workers, lanes, shared frames, the CUDA runtime, Ray.

The names below are the ones the benchmark's own code uses too: sessions built with the run's settings
and checked against the provider they really run on, the cores a run may use, child processes that
leave terminal signals to their parent (the sampler), where a Ray guard writes its line, and the CUDA
runtime (the cuda_graph experiment).
"""

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
