"""Interchangeable ways of running several ONNX models on every frame, behind one interface.

Other packages import from here only; tests may import the submodules.
"""

from strategies.base import Arrivals, Clock, RunStopped, RunTimeout, Schedule, Strategy, StrategyError, StrategyUnavailable
from strategies.records import CallLog, CallRecord, ModelInput, Outputs, RunResult, Workload
from strategies.registry import CLASSIC, STRATEGIES, UnknownStrategyError, get_strategy
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
from strategies.settings import ThreadSettings, usable_cores

__all__ = [
    "CLASSIC", "STRATEGIES", "Arrivals", "CallLog", "CallRecord", "Clock",
    "ModelInput", "Outputs", "ProviderError", "RunResult",
    "RunStopped", "RunTimeout", "Schedule", "SessionFactory", "Strategy", "StrategyError", "StrategyUnavailable",
    "ThreadSettings", "UnknownStrategyError", "Workload",
    "device_id", "get_strategy", "io_names", "make_session",
    "onnxruntime", "provider_used", "send_ray_guard_lines_to", "usable_cores",
]
