"""Opening strategies under pytest: skipped with the reason when they cannot run here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from strategies import Strategy, StrategyUnavailable, ThreadSettings, Workload


@contextmanager
def opened(cls: type[Strategy], workload: Workload, settings: ThreadSettings | None = None,
           **kwargs: Any) -> Iterator[Strategy]:
    """Open a strategy for the duration of the block and always close it.

    A strategy that raises StrategyUnavailable in `open` (no GPU, an onnxruntime without the
    needed API, models that cannot be merged) skips the test with its reason; it is never
    dropped silently.
    """
    strategy = cls(workload, settings, **kwargs)
    try:
        strategy.open()
    except StrategyUnavailable as reason:
        strategy.close()
        pytest.skip(str(reason))
    except BaseException:
        strategy.close()
        raise
    try:
        yield strategy
    finally:
        strategy.stop()  # lanes still running (an interrupt, a failed lane) end at their next frame
        strategy.close()
