"""Interchangeable ways of running several ONNX models on every frame, behind one interface.

Other packages import from here only; tests may import the submodules. The names below:
- the interface: what a strategy is, when its frames arrive (Arrivals, Schedule, Clock), how a run
  fails (StrategyError, RunTimeout, RunStopped, StrategyUnavailable);
- what a run works on and returns: Workload, ModelInput, Outputs, RunResult, CallRecord, CallLog;
- the registry: STRATEGIES, CLASSIC, get_strategy, UnknownStrategyError;
- sessions: the settings and provider they are built with, checked against what they really run on
  (SessionFactory, ThreadSettings, make_session, provider_used, ProviderError, ...);
- what the benchmark's own processes and experiments share with the strategies: child processes that
  leave terminal signals to their parent (the sampler), where a Ray guard writes its line, the CUDA
  runtime (the cuda_graph experiment).
"""

from strategies.base import Arrivals, Clock, RunStopped, RunTimeout, Schedule, Strategy, StrategyError, StrategyUnavailable
from strategies.records import CallLog, CallRecord, ModelInput, Outputs, RunResult, Workload
from strategies.registry import CLASSIC, STRATEGIES, UnknownStrategyError, get_strategy
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
from strategies.settings import ThreadSettings, usable_cores

__all__ = [
    "CLASSIC", "STRATEGIES", "Arrivals", "CallLog", "CallRecord", "Clock", "CudaRuntimeError", "ModelInput", "Outputs",
    "ProviderError", "RunResult", "RunStopped", "RunTimeout", "Schedule", "SessionFactory", "Strategy", "StrategyError",
    "StrategyUnavailable", "ThreadSettings", "UnknownStrategyError", "Workload", "cuda_runtime",
    "detach_from_terminal_signals", "device_id", "get_strategy", "io_names", "make_session", "onnxruntime",
    "provider_used", "send_ray_guard_lines_to", "terminal_signals_blocked", "usable_cores",
]
