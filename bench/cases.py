"""What `pytest bench` times: every (strategy, thread settings) case and the scenarios it runs in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.measure.scenarios import STREAMING, Scenario, not_streamed
from bench.options import RunOptions
from bench.thread_spec import resolve
from strategies import CLASSIC, STRATEGIES, Strategy, ThreadSettings
from strategies.runtime import usable_cores


@dataclass(frozen=True)
class Case:
    """One benchmark: a strategy and the thread settings it runs with."""

    strategy: type[Strategy]
    settings: ThreadSettings
    options: tuple[tuple[str, Any], ...] = ()  # extra constructor arguments, e.g. (("k", 4),)

    @property
    def id(self) -> str:
        options = "".join(f"-{key}{value}" for key, value in self.options)
        return f"{self.strategy.name}{options}-{self.settings.label}"


def cases(options: RunOptions) -> list[Case]:
    models = options.workload.model_count
    selected: list[Case] = []
    for name in options.strategies:
        cls = STRATEGIES[name]
        if options.threads:
            # A sweep: exactly the settings asked for, for every selected strategy.
            settings = [resolve(choice, cls, models, usable_cores()) for choice in options.threads]
        else:
            settings = [cls.default_settings(models, usable_cores())]
            if name in CLASSIC:
                # The write-up ran its four with onnxruntime's defaults; so do we, side by side.
                settings.append(ThreadSettings())
        # A setting given twice runs once.
        selected += [Case(cls, each, options.strategy_arguments(name)) for each in dict.fromkeys(settings)]
    return selected


def benchmarks(options: RunOptions) -> tuple[list[tuple[Case, Scenario]], dict[str, str]]:
    """Every (case, scenario) to time, and the cases left out of streaming with the reason."""
    selected, left_out = [], {}
    for case in cases(options):
        for scenario in options.scenarios:
            reason = None if scenario.name != STREAMING else not_streamed(
                case.settings.ort_defaults, dict(case.options), bool(options.threads))
            if reason is None:
                selected.append((case, scenario))
            else:
                left_out[case.id] = reason
    return selected, left_out
