"""Interchangeable ways of running several ONNX models on every frame, behind one interface.

Other packages import from here (the interface and the registry) and from `strategies.runtime` (the
helpers the benchmark's own processes share with the strategies); tests may import the submodules.
- the registry: STRATEGIES, CLASSIC (the write-up's four), get_strategy;
- the interface: what a strategy is, when its frames arrive (Schedule) and how a run fails
  (StrategyError, StrategyUnavailable, RunTimeout);
- what a run works on and returns: Workload, ModelInput, ThreadSettings, Outputs, RunResult.
"""

from strategies.base import RunTimeout, Schedule, Strategy, StrategyError, StrategyUnavailable
from strategies.records import ModelInput, Outputs, RunResult, Workload
from strategies.registry import CLASSIC, STRATEGIES, get_strategy
from strategies.settings import ThreadSettings

__all__ = [
    "CLASSIC", "STRATEGIES", "ModelInput", "Outputs", "RunResult", "RunTimeout", "Schedule", "Strategy",
    "StrategyError", "StrategyUnavailable", "ThreadSettings", "Workload", "get_strategy",
]
