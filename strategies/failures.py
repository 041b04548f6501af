"""One wording for "this model failed on this frame", shared by the strategies beyond the classics."""

from __future__ import annotations

from strategies.base import StrategyError


def model_failed(strategy: str, model: str, frame: int, error: BaseException, last: int | None = None) -> StrategyError:
    """The error a run raises when `model` fails on `frame` (on frames `frame`..`last` for a
    call over several). A StrategyError (a RunTimeout from `Arrivals.wait_for`, say) already
    says what happened and passes through unchanged."""
    if isinstance(error, StrategyError):
        return error
    where = f"frame {frame}" if last is None or last == frame else f"frames {frame}-{last}"
    return StrategyError(f"{strategy}: model {model!r} failed on {where}: {error}")
