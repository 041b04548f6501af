"""onnxruntime's threading knobs (`ThreadSettings`) and every form they are written in.

As text, for the command line (`--threads intra=1,inter=1,spin=0,mode=parallel`; one setting per
`--threads`, repeat the option to sweep):
    default                      each strategy's own default settings (`Strategy.default_settings`)
    ort                          onnxruntime's defaults for every knob
    KEY=VALUE[,KEY=VALUE...]     keys: intra, inter (whole numbers >= 1), spin (0 or 1),
                                 mode (sequential or parallel); a key left out keeps
                                 onnxruntime's default for that knob.
As a label in benchmark ids ('intra2-spin0'), and as a dict in stored results (`as_dict`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # base.py imports this module to build a strategy's default settings
    from strategies.base import Strategy

STRATEGY_DEFAULT = "default"
KEYS = ("intra", "inter", "spin", "mode")
USAGE = ("expected 'default', 'ort', or KEY=VALUE pairs separated by commas with keys intra, inter (whole numbers "
         ">= 1), spin (0 or 1), mode (sequential or parallel), e.g. 'intra=1,inter=1,spin=0'")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: A session may have at most this many threads (intra-op, inter-op) per usable core: more only
#: oversubscribes the cores (intra=999 on 2 cores started thousands of threads across the strategies'
#: sessions, drove the load average above 2,000 and took 166 s for a 2-frame serial run).
MAX_THREADS_PER_CORE = 4


def too_many_threads(text: str, choice: object, cores: int) -> str | None:
    """Why the thread settings `choice` (parsed from `text`) ask for too many threads on `cores` usable
    cores (more than MAX_THREADS_PER_CORE x cores per knob), or None."""
    bound = MAX_THREADS_PER_CORE * cores
    for key in ("intra_op", "inter_op"):
        value = getattr(choice, key, None)
        if value is not None and value > bound:
            return (f"--threads {text}: {value} {key.replace('_op', '-op')} threads per session is more than "
                    f"{MAX_THREADS_PER_CORE} x the {cores} usable cores; give at most {bound}.")
    return None


class ThreadSpecError(ValueError):
    """A thread-settings text that does not follow the grammar; the message says what is allowed."""


def _threads(key: str, value: str, text: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ThreadSpecError(f"{key}={value!r} in {text!r}: {key} must be a whole number of at least 1.")
    return int(value)


@dataclass(frozen=True)
class ThreadSettings:
    """onnxruntime's threading knobs for every session a strategy builds.

    `None` leaves a knob at onnxruntime's default (intra-op threads = cores, spinning on).
    """

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
    def parse(cls, text: str) -> ThreadChoice:
        """'intra=2,spin=0' -> ThreadSettings(intra_op=2, spinning=False); 'default' -> STRATEGY_DEFAULT."""
        cleaned = text.strip().lower()
        if cleaned == STRATEGY_DEFAULT:
            return STRATEGY_DEFAULT
        if cleaned == "ort":
            return cls()
        if not cleaned:
            raise ThreadSpecError(f"empty thread settings; {USAGE}.")
        values: dict[str, str] = {}
        for pair in cleaned.split(","):
            key, sep, value = (part.strip() for part in pair.partition("="))
            if not sep or not key or not value:
                raise ThreadSpecError(f"{pair.strip()!r} in {text!r} is not KEY=VALUE; {USAGE}.")
            if key not in KEYS:
                raise ThreadSpecError(f"unknown key {key!r} in {text!r}; allowed keys: {', '.join(KEYS)}.")
            if key in values:
                raise ThreadSpecError(f"key {key!r} is given twice in {text!r}.")
            values[key] = value
        spin = values.get("spin")
        if spin not in (None, "0", "1"):
            raise ThreadSpecError(f"spin={spin!r} in {text!r}: spin must be 0 (off) or 1 (on).")
        mode = values.get("mode", "sequential")
        if mode not in ("sequential", "parallel"):
            raise ThreadSpecError(f"mode={mode!r} in {text!r}: mode must be sequential or parallel.")
        return cls(
            intra_op=_threads("intra", values["intra"], text) if "intra" in values else None,
            inter_op=_threads("inter", values["inter"], text) if "inter" in values else None,
            parallel=mode == "parallel",
            spinning=None if spin is None else spin == "1",
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ThreadSettings:
        """The inverse of `as_dict` (what stored results hold)."""
        return cls(intra_op=values["intra_op_num_threads"], inter_op=values["inter_op_num_threads"],
                   parallel=values["execution_mode"] == "parallel", spinning=values["allow_spinning"])

    @property
    def ort_defaults(self) -> bool:
        return self == ThreadSettings()

    def _knobs(self) -> dict[str, tuple[str, str]]:
        """The knobs set away from onnxruntime's defaults, each as (label text, spec text)."""
        knobs = {"intra": (f"intra{self.intra_op}", f"intra={self.intra_op}") if self.intra_op is not None else None,
                 "inter": (f"inter{self.inter_op}", f"inter={self.inter_op}") if self.inter_op is not None else None,
                 "spin": (f"spin{int(self.spinning)}", f"spin={int(self.spinning)}") if self.spinning is not None else None,
                 "mode": ("parallel", "mode=parallel") if self.parallel else None}
        return {key: texts for key, texts in knobs.items() if texts is not None}

    @property
    def label(self) -> str:
        """Short id used in benchmark names, e.g. 'intra2-spin0' or 'ort-defaults'."""
        knobs = self._knobs()
        return "-".join(knobs[key][0] for key in ("intra", "inter", "mode", "spin") if key in knobs) or "ort-defaults"

    @property
    def spec(self) -> str:
        """The `--threads` text that gives back these settings: ThreadSettings.parse(s.spec) == s."""
        knobs = self._knobs()
        return ",".join(knobs[key][1] for key in KEYS if key in knobs) or "ort"

    def as_dict(self) -> dict[str, Any]:
        return {"intra_op_num_threads": self.intra_op, "inter_op_num_threads": self.inter_op,
                "execution_mode": "parallel" if self.parallel else "sequential",
                "allow_spinning": self.spinning, "ort_defaults": self.ort_defaults}


ThreadChoice = ThreadSettings | Literal["default"]


def split_cores(model_count: int, cores: int | None = None) -> ThreadSettings:
    """The cores shared out between models that run at the same time (at least one intra-op
    thread each), spinning off: models x intra-op threads stays near the core count instead
    of models x cores, and no idle pool spins on a core another model needs."""
    return ThreadSettings(intra_op=max(1, (cores or usable_cores()) // model_count), inter_op=1, spinning=False)


def resolve(choice: ThreadChoice, strategy: type[Strategy], model_count: int, cores: int | None = None) -> ThreadSettings:
    """The settings `strategy` runs with for `choice`."""
    if choice == STRATEGY_DEFAULT:
        return strategy.default_settings(model_count, cores or usable_cores())
    if not isinstance(choice, ThreadSettings):
        raise TypeError(f"expected ThreadSettings or {STRATEGY_DEFAULT!r}, got {choice!r}.")
    return choice
