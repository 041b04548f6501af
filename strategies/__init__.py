"""Interchangeable ways of running several ONNX models on every frame, behind one interface."""

from strategies.base import (
    Arrivals,
    CallLog,
    CallRecord,
    ModelInput,
    RunResult,
    RunStopped,
    RunTimeout,
    Strategy,
    StrategyError,
    StrategyUnavailable,
    ThreadSettings,
    Workload,
    usable_cores,
)
from strategies.equivalence import Calibration, Tolerance, assert_equivalent
from strategies.registry import CLASSIC, STRATEGIES, UnknownStrategyError, get_strategy
from strategies.runtime.sessions import ProviderError, make_session

__all__ = [
    "CLASSIC",
    "STRATEGIES",
    "Arrivals",
    "Calibration",
    "CallLog",
    "CallRecord",
    "ModelInput",
    "ProviderError",
    "RunResult",
    "RunStopped",
    "RunTimeout",
    "Strategy",
    "StrategyError",
    "StrategyUnavailable",
    "ThreadSettings",
    "Tolerance",
    "UnknownStrategyError",
    "Workload",
    "assert_equivalent",
    "get_strategy",
    "make_session",
    "usable_cores",
]
