"""The explicit registry of strategies, keyed by the names users pass to --strategy."""

from __future__ import annotations

from .base import Strategy
from .coroutines import Asyncio
from .cuda_graph import CudaGraph
from .iobinding import IOBinding
from .processes import Processes
from .serial import Serial
from .threads import Threads

# Order is the order of the table: the reference first, then the write-up's classics.
STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Serial, Threads, Processes, Asyncio)}
STRATEGIES.update({cls.name: cls for cls in (IOBinding, CudaGraph)})  # GPU techniques (issue 7); also run on the CPU

#: The write-up's four; they are also benchmarked with onnxruntime's default thread settings.
CLASSIC = ("serial", "threads", "processes", "asyncio")


class UnknownStrategyError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered under `name`; an unknown name lists the valid ones."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; choose from: {', '.join(STRATEGIES)}.") from None
