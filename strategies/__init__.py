"""Interchangeable ways of running several ONNX models on every frame, behind one interface.

Other packages import the registry and the interface from here, and the helpers they share with the
strategies from `strategies.runtime`; tests may import the submodules."""

from strategies.base import RunTimeout, Schedule, Strategy, StrategyError, StrategyUnavailable
from strategies.records import ModelInput, Outputs, RunResult, Workload
from strategies.registry import CLASSIC, STRATEGIES, get_strategy
from strategies.settings import ThreadSettings

__all__ = [
    "CLASSIC", "STRATEGIES", "ModelInput", "Outputs", "RunResult", "RunTimeout", "Schedule", "Strategy",
    "StrategyError", "StrategyUnavailable", "ThreadSettings", "Workload", "get_strategy",
]
