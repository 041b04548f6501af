"""`cuda_graph`'s logic on the CPU provider: its buffers (the graph itself needs a GPU) and, with a
stand-in for libcudart that copies host memory, its per-lane streams and copies."""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from strategies.cuda_graph import CudaGraph


class CudaGraphBuffersOnCpu(CudaGraph):
    """cuda_graph's pre-allocated, bound-once, updated-in-place buffers, on the CPU provider."""

    name = "cuda_graph_buffers_on_cpu"
    needs_cuda = False


class HostMemoryCudart:
    """The CUDA runtime calls `cuda_graph` makes on CUDA, done on host memory, each one recorded.

    With it `cuda_graph` runs its CUDA path on the CPU provider (an OrtValue's data_ptr() is then
    a host address): streams, page-locked buffers and the order of the copies are checked here."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, int]] = []  # (call, stream or buffer address)
        self.streams: set[int] = set()
        self.pinned: set[int] = set()
        self._next = 1

    def _record(self, call: str, key: int) -> None:
        with self.lock:
            self.calls.append((call, key))

    def create_stream(self, device: int = 0) -> int:
        with self.lock:
            stream, self._next = self._next, self._next + 1
            self.streams.add(stream)
        self._record("create", stream)
        return stream

    def destroy_stream(self, stream: int) -> None:
        assert stream in self.streams
        self.streams.discard(stream)
        self._record("destroy", stream)

    def synchronize(self, stream: int) -> None:
        assert stream in self.streams
        self._record("synchronize", stream)

    def copy_to_device(self, device_ptr: int, host: np.ndarray, stream: int) -> None:
        assert stream in self.streams
        assert host.flags.c_contiguous
        ctypes.memmove(device_ptr, host.ctypes.data, host.nbytes)
        self._record("to_device", stream)

    def copy_to_host(self, host: np.ndarray, device_ptr: int, stream: int) -> None:
        assert stream in self.streams
        assert host.flags.c_contiguous
        ctypes.memmove(host.ctypes.data, device_ptr, host.nbytes)
        self._record("to_host", stream)

    def pin(self, host: np.ndarray) -> None:
        assert host.ctypes.data not in self.pinned, "pinned twice (cudaHostRegister refuses that)"
        self.pinned.add(host.ctypes.data)

    def unpin(self, host: np.ndarray) -> None:
        self.pinned.remove(host.ctypes.data)


def streams_on_cpu() -> type[CudaGraph]:
    return type("CudaGraphStreamsOnCpu", (CudaGraphBuffersOnCpu,), {"cudart": HostMemoryCudart()})
