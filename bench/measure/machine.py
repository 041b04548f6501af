"""What a saved run says about the GPU: name, driver and memory from NVML, and the CUDA options.

NVML comes from NVIDIA's own `nvidia-ml-py` package (module `pynvml`). Where there is no
NVIDIA driver, the record says why instead of guessing.
"""

from __future__ import annotations

import os
from typing import Any


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)  # nvidia-ml-py < 11.5 returns bytes


def gpu_machine_info(device_index: int = 0) -> dict[str, Any]:
    """{'gpu': {...}} for NVML device `device_index`, or {'gpu': None, 'gpu_unavailable': reason}.

    NVML numbers devices by PCI order, CUDA by `CUDA_VISIBLE_DEVICES`; the variable is recorded
    so a reader can match the two.
    """
    try:
        import pynvml
    except ImportError:
        return {"gpu": None, "gpu_unavailable": "pynvml is not installed (pip install nvidia-ml-py)"}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return {"gpu": None, "gpu_unavailable": f"NVML could not start: {error}"}
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        cuda_driver = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 13000 for 13.0
        return {"gpu": {
            "index": device_index,
            "name": _text(pynvml.nvmlDeviceGetName(handle)),
            "driver": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver": f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}",
            "memory_total_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }}
    except pynvml.NVMLError as error:
        return {"gpu": None, "gpu_unavailable": f"NVML device {device_index}: {error}"}
    finally:
        pynvml.nvmlShutdown()
