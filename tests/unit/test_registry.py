"""The registry: explicit names, the classic four first, and a useful error for a bad name."""

from __future__ import annotations

import pytest

from strategies import CLASSIC, STRATEGIES, Strategy, get_strategy
from strategies.registry import UnknownStrategyError


def test_classic_four_are_registered_first_under_their_names():
    assert list(STRATEGIES)[:4] == ["serial", "threads", "processes", "asyncio"] == list(CLASSIC)
    for name, cls in STRATEGIES.items():
        assert cls.name == name
        assert issubclass(cls, Strategy)
        assert cls.__doc__, f"{name} must describe itself (and its flaws)"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(UnknownStrategyError) as error:
        get_strategy("thread")
    assert str(error.value).startswith("unknown strategy 'thread'; choose from: serial, threads, processes, asyncio")


def test_a_strategy_without_execute_cannot_be_built(tiny_workload):
    class Incomplete(Strategy):
        name = "incomplete"

    with pytest.raises(TypeError, match="Incomplete"):
        Incomplete(tiny_workload)
