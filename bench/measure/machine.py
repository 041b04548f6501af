"""The machine a run ran on, and the one reader of the GPU: NVML, from NVIDIA's `nvidia-ml-py`
(module `pynvml`), started only by `start_nvml`. Without a driver, a record says why instead of guessing."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy

from strategies.runtime import device_id, onnxruntime, usable_cores

# Reasons stored in saved runs (machine_info "gpu_unavailable", extra_info "gpu_absent"): kept word for word.
NOT_INSTALLED = "pynvml is not installed (pip install nvidia-ml-py)"
NOT_IMPORTABLE = "pynvml is not importable (install nvidia-ml-py)"
# The `fanbench.workload` entries of machine_info: what was asked for (effective values after --workload).
WORKLOAD_KEYS = ("frames", "batch", "frame_size", "models", "model_size", "provider")


class NvmlUnavailable(RuntimeError):
    """Why NVML cannot be used here (the message is the reason a saved run shows)."""


def start_nvml(missing: str = NOT_INSTALLED) -> Any:
    """pynvml, initialised; `missing` is the reason given when it is not installed."""
    try:
        # Lazy, the one import of pynvml: CPU hosts may lack it or the driver library, and the
        # tests put a fake in sys.modules["pynvml"].
        import pynvml
    except ImportError:
        raise NvmlUnavailable(missing) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        raise NvmlUnavailable(f"NVML could not start: {error}") from None
    return pynvml


@contextmanager
def nvml(failed: str = "{}") -> Iterator[Any]:
    """NVML for the block; an NVML error in it becomes NvmlUnavailable(failed.format(error))."""
    pynvml = start_nvml()
    try:
        yield pynvml
    except pynvml.NVMLError as error:
        raise NvmlUnavailable(failed.format(error)) from None
    finally:
        pynvml.nvmlShutdown()


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)  # nvidia-ml-py < 11.5 returns bytes


@dataclass(frozen=True)
class GpuReading:
    memory_bytes: int | None  # used on the device by processes of this tree; None when NVML cannot tell
    device_memory_bytes: int | None  # used on the device(s) by every process
    util_percent: float | None


class GpuReader(Protocol):
    def __call__(self, pids: Collection[int]) -> GpuReading: ...


class NvmlReader:
    """GPU memory used by the tree's processes, and NVML's utilisation (percent of its last sample period a
    kernel ran) of the devices holding one of them (of every device where NVML lists none: a PID namespace)."""

    def __init__(self, nvml: Any, handles: Sequence[Any]) -> None:
        self.nvml = nvml
        self.handles = list(handles)

    def __call__(self, pids: Collection[int]) -> GpuReading:
        nvml = self.nvml
        mine: int | None = None
        ours = []
        for handle in self.handles:
            processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            used = [process.usedGpuMemory for process in processes if process.pid in pids]
            if used:
                ours.append(handle)
                if all(value is not None for value in used):  # None: NVML may not see per-process memory
                    mine = (mine or 0) + sum(used)
        devices = ours or self.handles
        device_memory = sum(nvml.nvmlDeviceGetMemoryInfo(handle).used for handle in self.handles)
        util = max(float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu) for handle in devices)
        return GpuReading(memory_bytes=mine, device_memory_bytes=device_memory, util_percent=util)


@dataclass
class GpuProbe:
    """NVML opened once per benchmark session, or the reason GPU metrics are absent."""

    reader: GpuReader | None
    reason: str | None = None
    shutdown: Callable[[], None] = field(default=lambda: None)


def open_gpu(provider: str) -> GpuProbe:
    """NVML for a CUDA workload. Absent, with a reason, on the CPU provider or without NVML."""
    if provider != "cuda":
        return GpuProbe(None, f"the workload runs on the {provider!r} provider, not on a GPU")
    try:
        pynvml = start_nvml(NOT_IMPORTABLE)
    except NvmlUnavailable as reason:
        return GpuProbe(None, str(reason))
    try:
        handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())]
    except pynvml.NVMLError as error:
        pynvml.nvmlShutdown()
        return GpuProbe(None, f"NVML could not list the GPUs: {error}")
    if not handles:
        pynvml.nvmlShutdown()
        return GpuProbe(None, "NVML finds no GPU")
    return GpuProbe(NvmlReader(pynvml, handles), None, pynvml.nvmlShutdown)


def gpu_list() -> list[dict[str, str]]:
    """Name and driver of every NVIDIA GPU NVML sees; empty without a GPU or driver."""
    try:
        with nvml() as pynvml:
            driver = text(pynvml.nvmlSystemGetDriverVersion())
            handles = [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(pynvml.nvmlDeviceGetCount())]
            return [{"name": text(pynvml.nvmlDeviceGetName(handle)), "driver": driver} for handle in handles]
    except NvmlUnavailable:
        return []


def gpu_machine_info(device_index: int = 0) -> dict[str, Any]:
    """{'gpu': {...}} for NVML device `device_index`, or {'gpu': None, 'gpu_unavailable': reason}. NVML numbers
    devices by PCI order, CUDA by `CUDA_VISIBLE_DEVICES`: the variable is recorded to match the two."""
    try:
        with nvml(f"NVML device {device_index}: {{}}") as pynvml:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            cuda_driver = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 13000 for 13.0
            return {"gpu": {
                "index": device_index,
                "name": text(pynvml.nvmlDeviceGetName(handle)),
                "driver": text(pynvml.nvmlSystemGetDriverVersion()),
                "cuda_driver": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
                "memory_total_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            }}
    except NvmlUnavailable as reason:
        return {"gpu": None, "gpu_unavailable": str(reason)}


def ray_machine_info(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The Ray a run's `ray` benchmarks (their `info()`, in run order) ran on; None when none ran. Its version,
    address and start-up are the first's (one Ray per run); each starts its own actors, so nodes and each
    model's placements (node, GPU ids) are gathered over all of them."""
    if not infos:
        return None
    first = infos[0]
    nodes: dict[str, str] = {}
    placement: dict[str, list[dict[str, Any]]] = {}
    for info in infos:
        for each in info["ray_placement"]:
            nodes[each["node_id"]] = each["node_ip"]
            where = {"node_ip": each["node_ip"], "node_id": each["node_id"], "gpus": list(each["gpus"])}
            if where not in placement.setdefault(each["model"], []):
                placement[each["model"]].append(where)
    return {"version": first["ray_version"], "address": first["ray_gcs_address"],
            "joined": first["ray_address"] != "local", "requested_address": first["ray_address"],
            "startup_s": first["ray_startup_s"], "gpus_per_actor": first["ray_gpus_per_actor"],
            "nodes": [{"node_ip": ip, "node_id": node} for node, ip in sorted(nodes.items(), key=lambda n: (n[1], n[0]))],
            "placement": placement}


def machine_info(workload: Mapping[str, Any], cuda_options: Mapping[str, str],
                 ray: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The "fanbench" entry of a saved run's machine_info. `workload`: the WORKLOAD_KEYS' effective values
    (after --workload, --require-gpu); `cuda_options`: the normalised --cuda-option pairs; `ray`:
    ray_machine_info, None (the key always there, so every saved run has the same keys) when none ran."""
    ort = onnxruntime()
    return {
        "onnxruntime": ort.__version__,
        "onnxruntime_device": ort.get_device(),
        "available_providers": ort.get_available_providers(),
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
        "usable_cores": usable_cores(),
        "gpus": gpu_list(),
        "workload": {key: workload[key] for key in WORKLOAD_KEYS},
        **gpu_machine_info(device_id(cuda_options)),
        "cuda_options": dict(cuda_options),
        "ray": dict(ray) if ray is not None else None,
    }
