"""The few CUDA runtime calls a per-session stream needs (`user_compute_stream`, and copies on that
stream: `OrtValue.update_inplace` is a synchronous `cudaMemcpy`), through ctypes on the libcudart that
onnxruntime-gpu's `cuda` extra installs. Each is checked: CudaRuntimeError names the call and CUDA's text."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import threading
from typing import Any

import numpy as np

HOST_TO_DEVICE, DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind
STREAM_NON_BLOCKING = 1  # cudaStreamNonBlocking: no implicit wait on the legacy default stream
HOST_REGISTER_PORTABLE = 1


class CudaRuntimeError(RuntimeError):
    """A CUDA runtime call failed, or libcudart could not be loaded."""


def _candidates() -> list[str]:
    """libcudart's sonames (preload_dlls() has usually loaded one), then the nvidia-cuda-runtime wheel's files."""
    names = ["libcudart.so.13", "libcudart.so.12", "libcudart.so"]
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    with contextlib.suppress(ImportError):
        import nvidia  # the namespace package of NVIDIA's pip wheels

        for root in nvidia.__path__:
            names += sorted(glob.glob(os.path.join(root, "cu*", "lib", "libcudart.so*")), reverse=True)
            names += sorted(glob.glob(os.path.join(root, "cuda_runtime", "lib", "libcudart.so*")), reverse=True)
    return names


_lock = threading.Lock()
_runtime: CudaRuntime | None = None


def cuda_runtime() -> CudaRuntime:
    """The process's CudaRuntime, loaded once."""
    global _runtime
    with _lock:
        if _runtime is None:
            errors = []
            for name in _candidates():
                try:
                    _runtime = CudaRuntime(ctypes.CDLL(name))
                    break
                except OSError as error:
                    errors.append(f"{name}: {error}")
            else:
                raise CudaRuntimeError("libcudart could not be loaded (install `.[gpu]`, whose cuda extra ships it): "
                                       + "; ".join(errors[:3]))
        return _runtime


class CudaRuntime:
    def __init__(self, library: Any) -> None:
        self.lib = library
        self.lib.cudaGetErrorString.restype = ctypes.c_char_p
        self.lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                             ctypes.c_void_p]
        self.lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self.lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]
        self.lib.cudaHostRegister.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint]
        self.lib.cudaHostUnregister.argtypes = [ctypes.c_void_p]
        self.lib.cudaSetDevice.argtypes = [ctypes.c_int]

    def _check(self, call: str, status: int) -> None:
        if status != 0:
            text = self.lib.cudaGetErrorString(status).decode(errors="replace")
            raise CudaRuntimeError(f"{call} failed: CUDA error {status}: {text}")

    def create_stream(self, device: int = 0) -> int:
        """A new non-blocking stream on `device`; its address, as onnxruntime's `user_compute_stream` takes it."""
        self._check("cudaSetDevice", self.lib.cudaSetDevice(device))
        stream = ctypes.c_void_p()
        self._check("cudaStreamCreateWithFlags",
                    self.lib.cudaStreamCreateWithFlags(ctypes.byref(stream), ctypes.c_uint(STREAM_NON_BLOCKING)))
        return int(stream.value or 0)

    def destroy_stream(self, stream: int) -> None:
        self._check("cudaStreamDestroy", self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)))

    def synchronize(self, stream: int) -> None:
        """Wait for the work queued on this stream only (never the whole device)."""
        self._check("cudaStreamSynchronize", self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)))

    def copy_to_device(self, device_ptr: int, host: np.ndarray, stream: int) -> None:  # host: C-contiguous
        self._check("cudaMemcpyAsync(host to device)", self.lib.cudaMemcpyAsync(
            ctypes.c_void_p(device_ptr), ctypes.c_void_p(host.ctypes.data), host.nbytes, HOST_TO_DEVICE,
            ctypes.c_void_p(stream)))

    def copy_to_host(self, host: np.ndarray, device_ptr: int, stream: int) -> None:
        self._check("cudaMemcpyAsync(device to host)", self.lib.cudaMemcpyAsync(
            ctypes.c_void_p(host.ctypes.data), ctypes.c_void_p(device_ptr), host.nbytes, DEVICE_TO_HOST,
            ctypes.c_void_p(stream)))

    def pin(self, host: np.ndarray) -> None:
        """Page-lock `host`'s memory so copies from and to it are truly asynchronous (DMA)."""
        self._check("cudaHostRegister", self.lib.cudaHostRegister(
            ctypes.c_void_p(host.ctypes.data), host.nbytes, HOST_REGISTER_PORTABLE))

    def unpin(self, host: np.ndarray) -> None:
        self._check("cudaHostUnregister", self.lib.cudaHostUnregister(ctypes.c_void_p(host.ctypes.data)))
