"""Fabricated measurements for the tests of what reads them (tables, answers, gates, reports), written with
schema 1's flat names: `flat(strategy="serial", wall_s=2.0, latency_p50_s=0.25, ...)` is the Measurement a
run saved with those keys reads back as, and `changed(m, wall_s=1.0)` is `m` with those values. An unknown
name is a TypeError, as a misspelt field of the dataclass itself would be."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from bench.measure.measurement import PARTS, V1_PLACES, Measurement

TOP_LEVEL = {each.name for each in fields(Measurement)} - set(PARTS)


def flat(**values: Any) -> Measurement:
    unknown = set(values) - set(V1_PLACES) - TOP_LEVEL
    if unknown:
        raise TypeError(f"not a field of schema 1: {', '.join(sorted(unknown))}")
    return Measurement.from_extra_info({**values, "schema_version": 1})


def changed(m: Measurement, **values: Any) -> Measurement:
    parts: dict[str, dict[str, Any]] = {}
    for key in set(values) & set(V1_PLACES):
        part, name = V1_PLACES[key]
        parts.setdefault(part, {})[name] = values.pop(key)
    return replace(m, **values, **{part: replace(getattr(m, part), **held) for part, held in parts.items()})
