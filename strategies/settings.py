"""Thread settings written as text, for the command line: `--threads intra=1,inter=1,spin=0,mode=parallel`.

Grammar (one setting per `--threads`; repeat the option to sweep):
    default                      each strategy's own default settings (`Strategy.default_settings`)
    ort                          onnxruntime's defaults for every knob
    KEY=VALUE[,KEY=VALUE...]     keys: intra, inter (whole numbers >= 1), spin (0 or 1),
                                 mode (sequential or parallel); a key left out keeps
                                 onnxruntime's default for that knob.
"""

from __future__ import annotations

from typing import Literal

from strategies.base import Strategy, ThreadSettings, usable_cores

STRATEGY_DEFAULT = "default"
ThreadChoice = ThreadSettings | Literal["default"]

KEYS = ("intra", "inter", "spin", "mode")
USAGE = ("expected 'default', 'ort', or KEY=VALUE pairs separated by commas with keys intra, inter (whole numbers "
         ">= 1), spin (0 or 1), mode (sequential or parallel), e.g. 'intra=1,inter=1,spin=0'")


class ThreadSpecError(ValueError):
    """A thread-settings text that does not follow the grammar; the message says what is allowed."""


def _threads(key: str, value: str, text: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ThreadSpecError(f"{key}={value!r} in {text!r}: {key} must be a whole number of at least 1.")
    return int(value)


def parse_thread_spec(text: str) -> ThreadChoice:
    """'intra=2,spin=0' -> ThreadSettings(intra_op=2, spinning=False); 'default' -> STRATEGY_DEFAULT."""
    cleaned = text.strip().lower()
    if cleaned == STRATEGY_DEFAULT:
        return STRATEGY_DEFAULT
    if cleaned == "ort":
        return ThreadSettings()
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
    return ThreadSettings(
        intra_op=_threads("intra", values["intra"], text) if "intra" in values else None,
        inter_op=_threads("inter", values["inter"], text) if "inter" in values else None,
        parallel=mode == "parallel",
        spinning=None if spin is None else spin == "1",
    )


def resolve(choice: ThreadChoice, strategy: type[Strategy], model_count: int, cores: int | None = None) -> ThreadSettings:
    """The settings `strategy` runs with for `choice`."""
    if choice == STRATEGY_DEFAULT:
        return strategy.default_settings(model_count, cores or usable_cores())
    if not isinstance(choice, ThreadSettings):
        raise TypeError(f"expected ThreadSettings or {STRATEGY_DEFAULT!r}, got {choice!r}.")
    return choice


def spec_text(settings: ThreadSettings) -> str:
    """The `--threads` text that gives back `settings`: parse_thread_spec(spec_text(s)) == s."""
    if settings.ort_defaults:
        return "ort"
    parts = []
    if settings.intra_op is not None:
        parts.append(f"intra={settings.intra_op}")
    if settings.inter_op is not None:
        parts.append(f"inter={settings.inter_op}")
    if settings.spinning is not None:
        parts.append(f"spin={int(settings.spinning)}")
    if settings.parallel:
        parts.append("mode=parallel")
    return ",".join(parts)


def settings_from_dict(values: dict) -> ThreadSettings:
    """The inverse of `ThreadSettings.as_dict` (what stored results hold)."""
    return ThreadSettings(intra_op=values["intra_op_num_threads"], inter_op=values["inter_op_num_threads"],
                          parallel=values["execution_mode"] == "parallel", spinning=values["allow_spinning"])
