"""The explicit registry of strategies, keyed by the names users pass to --strategy."""

from __future__ import annotations

from strategies.asyncio import Asyncio
from strategies.asyncio_threads import AsyncioThreads
from strategies.base import Strategy
from strategies.batched import Batched
from strategies.cuda_graph import CudaGraph
from strategies.dynamic_batch import DynamicBatch
from strategies.fanout import Fanout
from strategies.iobinding import IOBinding
from strategies.merged import Merged
from strategies.processes import Processes
from strategies.processes_shm import ProcessesShm
from strategies.ray import RayActors
from strategies.run_async import RunAsync
from strategies.serial import Serial
from strategies.threads import Threads

# The table's order: the reference, the write-up's classics, the strategies that fix their flaws,
# the GPU techniques (which also run on the CPU), and Ray.
STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Serial, Threads, Processes, Asyncio,
    AsyncioThreads, ProcessesShm, Fanout, Merged, RunAsync, Batched, DynamicBatch,
    IOBinding, CudaGraph, RayActors,
)}

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
