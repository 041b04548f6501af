"""onnxruntime's threading knobs (`ThreadSettings`) and how the usable cores are shared out; the
`--threads` text form is bench/thread_spec.py's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadSettings:
    """The knobs every session of a strategy is built with; `None`: onnxruntime's default (cores, spinning)."""

    intra_op: int | None = None
    inter_op: int | None = None
    parallel: bool = False  # ORT_PARALLEL execution mode instead of ORT_SEQUENTIAL
    spinning: bool | None = None

    def __post_init__(self) -> None:
        for name in ("intra_op", "inter_op"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"ThreadSettings.{name} must be at least 1 or None (onnxruntime's default), got {value}.")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ThreadSettings:
        """The inverse of `as_dict` (what stored results hold)."""
        return cls(intra_op=values["intra_op_num_threads"], inter_op=values["inter_op_num_threads"],
                   parallel=values["execution_mode"] == "parallel", spinning=values["allow_spinning"])

    @property
    def ort_defaults(self) -> bool:
        return self == ThreadSettings()

    @property
    def label(self) -> str:
        """'intra2-spin0' or 'ort-defaults'. Labels key saved histories and benchmark ids: the order of the
        knobs (intra, inter, mode, spin) must not change."""
        knobs = [None if self.intra_op is None else f"intra{self.intra_op}",
                 None if self.inter_op is None else f"inter{self.inter_op}",
                 "parallel" if self.parallel else None,
                 None if self.spinning is None else f"spin{int(self.spinning)}"]
        return "-".join(knob for knob in knobs if knob is not None) or "ort-defaults"

    def as_dict(self) -> dict[str, Any]:
        return {"intra_op_num_threads": self.intra_op, "inter_op_num_threads": self.inter_op,
                "execution_mode": "parallel" if self.parallel else "sequential",
                "allow_spinning": self.spinning, "ort_defaults": self.ort_defaults}


def split_cores(model_count: int, cores: int | None = None) -> ThreadSettings:
    """The cores shared out between models that run at once, spinning off (no idle pool spins on a busy core)."""
    return ThreadSettings(intra_op=max(1, (cores or usable_cores()) // model_count), inter_op=1, spinning=False)
