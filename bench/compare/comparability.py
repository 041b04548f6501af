"""What makes two saved runs comparable, and how they differ when they are not.

Timings are only comparable when the same work was timed (frames, batch, models and their set hash,
provider really used, thread settings: per benchmark in `extra_info`); that is refused for gating, as
pyperf refuses runs whose metadata differ. A different machine (`machine_info`: versions, CPU, GPU) is
reported but allowed: comparing an onnxruntime upgrade is a legitimate question.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bench.measure.measurement import stored

#: The fields of extra_info's `settings` that define the work a benchmark timed (flat keys before schema 2).
WORKLOAD_KEYS = ("frames", "batch", "models", "model_set_hash", "provider", "thread_settings")
#: machine_info entries worth naming when two runs come from different machines or software; not the
#: requested workload (what each benchmark timed is compared per benchmark), nor entries that vary from
#: run to run on one machine (CPU clock, cache sizes).
MACHINE_KEYS = ("node", "cpu.brand_raw", "python_version", "fanbench.onnxruntime", "fanbench.onnxruntime_device",
                "fanbench.usable_cores", "fanbench.gpus", "fanbench.gpu.name", "fanbench.gpu.driver", "fanbench.numpy",
                "fanbench.ray.version")
#: machine_info entries that only a run which used them fills, None otherwise: `fanbench.ray` is None when no
#: `ray` benchmark ran, which says what the run chose (--strategy), not what the machine has, so a run with Ray
#: and one without differ in nothing under it; two runs with Ray are compared (a Ray upgrade is named).
USED_ONLY = ("fanbench.ray",)
_ABSENT = object()


def one_unmeasured(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether one of two benchmarks' extra_info lacks fanbench's measurements while the other has them:
    an older fanbench saved an interrupted benchmark with a few rounds and an empty extra_info, which is
    not compared (partial timings, unknown workload) rather than refused as different work."""
    return (stored(old, "timing", "rounds_wall_s") is None) != (stored(new, "timing", "rounds_wall_s") is None)


def workload_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """'frames: 40 -> 20' for every workload key whose stored values differ (missing counts)."""
    pairs = ((key, stored(old, "settings", key), stored(new, "settings", key)) for key in WORKLOAD_KEYS)
    return [f"{key}: {before!r} -> {after!r}" for key, before, after in pairs if before != after]


def _lookup(info: Mapping[str, Any], dotted: str) -> Any:
    value: Any = info
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if value is None and ".".join(parts[:depth]) in USED_ONLY:
            return _ABSENT  # not used by this run: nothing to compare
        if not isinstance(value, Mapping) or part not in value:
            return None if value is None else _ABSENT  # under a None ('gpu': None) every entry is None
        value = value[part]
    return value


def machine_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """'fanbench.onnxruntime: '1.31.0' -> '1.32.0'' for every MACHINE_KEYS entry that differs between two
    runs' machine_info. An entry one run did not record (saved by an older fanbench) is no difference."""
    pairs = ((key, _lookup(old, key), _lookup(new, key)) for key in MACHINE_KEYS)
    return [f"{key}: {before!r} -> {after!r}" for key, before, after in pairs
            if before is not _ABSENT and after is not _ABSENT and before != after]


def compared_workload_differences(current: Mapping[str, Mapping[str, Any]],
                                  compared: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Every benchmark of this run whose saved counterpart timed different work. `current`: full name ->
    extra_info; `compared`: saved run's path -> {full name: saved benchmark}, as --benchmark-compare loads them."""
    lines = []
    for path, saved in compared.items():
        for fullname, extra in current.items():
            if fullname in saved and not one_unmeasured(saved[fullname].get("extra_info", {}), extra):
                differences = workload_differences(saved[fullname].get("extra_info", {}), extra)
                if differences:
                    lines.append(f"{fullname} vs {path}: {'; '.join(differences)}")
    return lines
