"""`--threads SPEC`, repeated to sweep: 'default' (each strategy's own `default_settings`), 'ort'
(onnxruntime's defaults) or KEY=VALUE pairs (USAGE), a key left out keeping onnxruntime's default.
`parse_threads` reads the text, `thread_spec` writes it back, `resolve` turns 'default' into a strategy's
settings; `ThreadSettings` itself is strategies/settings.py's."""

from __future__ import annotations

from typing import Literal

from strategies import Strategy, ThreadSettings

STRATEGY_DEFAULT = "default"
KEYS = ("intra", "inter", "spin", "mode")
USAGE = ("expected 'default', 'ort', or KEY=VALUE pairs separated by commas with keys intra, inter (whole numbers "
         ">= 1), spin (0 or 1), mode (sequential or parallel), e.g. 'intra=1,inter=1,spin=0'")

ThreadChoice = ThreadSettings | Literal["default"]

#: A session may have at most this many threads (intra-op, inter-op) per usable core: more only
#: oversubscribes the cores (intra=999 on 2 cores started thousands of threads across the strategies'
#: sessions, drove the load average above 2,000 and took 166 s for a 2-frame serial run).
MAX_THREADS_PER_CORE = 4


class ThreadSpecError(ValueError):
    """A thread-settings text off the grammar; the message says what is allowed."""


def _threads(key: str, values: dict[str, str], text: str) -> int | None:
    """The thread count given for `key` (intra or inter), None when left out."""
    if (value := values.get(key)) is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ThreadSpecError(f"{key}={value!r} in {text!r}: {key} must be a whole number of at least 1.")
    return int(value)


def parse_threads(text: str) -> ThreadChoice:
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
    return ThreadSettings(intra_op=_threads("intra", values, text), inter_op=_threads("inter", values, text),
                          parallel=mode == "parallel", spinning=None if spin is None else spin == "1")


def thread_spec(settings: ThreadSettings) -> str:
    """The `--threads` text of `settings` (parse_threads(thread_spec(s)) == s), keys in KEYS order."""
    spin, mode = None if settings.spinning is None else int(settings.spinning), "parallel" if settings.parallel else None
    knobs = {"intra": settings.intra_op, "inter": settings.inter_op, "spin": spin, "mode": mode}  # in KEYS order
    return ",".join(f"{key}={value}" for key, value in knobs.items() if value is not None) or "ort"


def too_many_threads(choice: ThreadChoice, cores: int) -> str | None:
    """Why `choice` asks for more than MAX_THREADS_PER_CORE x `cores` threads in a knob, or None."""
    bound = MAX_THREADS_PER_CORE * cores
    for key in ("intra_op", "inter_op"):
        value = getattr(choice, key, None)
        if value is not None and value > bound:
            return (f"--threads {thread_spec(choice)}: {value} {key.replace('_op', '-op')} threads per session is more than "
                    f"{MAX_THREADS_PER_CORE} x the {cores} usable cores; give at most {bound}.")
    return None


def resolve(choice: ThreadChoice, strategy: type[Strategy], model_count: int, cores: int) -> ThreadSettings:
    """The settings `strategy` runs with for `choice` on `cores` usable cores."""
    if choice == STRATEGY_DEFAULT:
        return strategy.default_settings(model_count, cores)
    if not isinstance(choice, ThreadSettings):
        raise TypeError(f"expected ThreadSettings or {STRATEGY_DEFAULT!r}, got {choice!r}.")
    return choice
