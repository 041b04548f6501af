"""The terminal and Markdown tables on fabricated measurements."""

from __future__ import annotations

from typing import Any

from bench.measure.measurement import Measurement
from bench.report.table import format_table, markdown_tables, tables
from tests.helpers.measurements import flat

MB = 1024 * 1024


def measurement(strategy: str, wall: float, **fields: Any) -> Measurement:
    base: dict[str, Any] = {"strategy": strategy, "settings": "ort-defaults", "ort_defaults": True, "models": ["a", "b"],
                            "frames": 4, "batch": 1, "provider": "cpu", "per_model_cumulative_s": [wall / 2, wall / 2],
                            "wall_s": wall, "fps": 4 / wall, "overlap": 1.0, "equivalent": True}
    return flat(**(base | fields))


def cells(measurements: list[Measurement]) -> dict[str, list[dict[str, str]]]:
    """Every table's rows as header -> cell, by table title."""
    return {title: [dict(zip(header, row, strict=True)) for row in rows] for title, header, rows in tables(measurements)}


SPEEDUP = "x serial-ort-defaults (95% CI)"
STREAMING = {"scenario": "streaming", "target_fps": 2.0, "deadline_s": 0.5, "latency_frames": 4}


def test_each_scenario_has_its_own_table_and_its_own_baseline():
    result = cells([
        measurement("serial", 2.0, latency_p50_s=0.25, latency_p90_s=0.5, latency_p99_s=0.75, latency_frames=4),
        measurement("threads", 1.0),
        measurement("serial", 4.0, latency_p50_s=0.125, latency_p90_s=0.25, latency_p99_s=0.625, deadline_misses=1,
                    **STREAMING),
        measurement("threads", 2.0, latency_p50_s=0.0625, latency_p90_s=0.125, latency_p99_s=0.25, deadline_misses=0,
                    **STREAMING),
    ])
    assert list(result) == ["offline", "streaming at 2 fps", "resources during the timed rounds (process tree)"]
    serial, threads = result["offline"]
    assert (serial[SPEEDUP], threads[SPEEDUP]) == ("1.00", "2.00")  # no rounds given: no interval
    assert serial["frame done p50/p90/p99 (ms)"] == "250.0 / 500.0 / 750.0"
    assert "deadline misses" not in serial  # offline has no deadline
    serial, threads = result["streaming at 2 fps"]
    assert threads[SPEEDUP] == "2.00"  # against streaming serial (4 s), not offline serial (2 s)
    assert (serial["deadline misses"], threads["deadline misses"]) == ("1/4", "0/4")
    assert threads["latency p50/p90/p99 (ms)"] == "62.5 / 125.0 / 250.0"


def test_every_speedup_carries_the_rounds_spread_and_one_the_spread_covers_is_marked_as_noise():
    result = cells([
        measurement("serial", 2.0, rounds_wall_s=[1.98, 2.0, 2.02]),
        measurement("threads", 1.0, rounds_wall_s=[0.99, 1.0, 1.01]),  # tight: a finding
        measurement("asyncio", 1.9, rounds_wall_s=[1.5, 1.9, 2.4]),  # 1.05x, rounds over 45%
    ])
    serial, threads, asyncio = result["offline"]
    assert serial[SPEEDUP] == "1.00"
    low, high = (float(value) for value in threads[SPEEDUP].split("(")[1].rstrip(")").split("-"))
    assert threads[SPEEDUP].startswith("2.00 (")
    assert 1.9 < low <= 2.0 <= high < 2.1
    assert asyncio[SPEEDUP].startswith("~1.05 (")
    text = format_table([measurement("serial", 2.0, rounds_wall_s=[1.98, 2.0, 2.02]),
                         measurement("asyncio", 1.9, rounds_wall_s=[1.5, 1.9, 2.4])])
    assert "note: ~ before a speedup: its 95% interval over the rounds includes 1.00" in text
    assert "within noise, not a finding" in text


def test_the_write_ups_columns_and_the_resources():
    result = cells([
        measurement("serial", 1.0, cpu_util_mean=0.5, cpu_util_max=0.75, peak_pss_bytes=300 * MB, peak_uss_bytes=250 * MB,
                    gpu_memory_peak_bytes=1280 * MB, gpu_device_memory_peak_bytes=2048 * MB, gpu_util_mean=60.0,
                    gpu_util_max=85.0, sampler_rate_hz=10.0, sampler_samples=12, sampler_cpu_s=0.021),
        measurement("threads", 1.0, gpu_absent="NVML could not start: Driver Not Loaded"),
    ])
    serial, threads = result["offline"]
    assert (serial["cumulative per model (s)"], serial["wall (s)"], serial["GPU MB"], serial["GPU util % mean/max"]) == \
        ("0.50 / 0.50", "1.000", "1280", "60 / 85")
    assert (threads["GPU MB"], threads["GPU util % mean/max"]) == ("-", "-")
    serial, threads = result["resources during the timed rounds (process tree)"]
    assert serial == {"strategy": "serial", "settings": "ort-defaults", "scenario": "offline", "CPU % mean/max": "50 / 75",
                      "peak PSS MB": "300", "peak USS MB": "250", "GPU MB (device)": "2048",
                      "samples (sampler CPU)": "12 (21 ms)"}
    assert (threads["CPU % mean/max"], threads["peak PSS MB"], threads["samples (sampler CPU)"]) == ("-", "-", "off")


def test_the_text_table_adds_each_reason_once():
    text = format_table([measurement("serial", 1.0, gpu_absent="NVML could not start: Driver Not Loaded"),
                         measurement("threads", 1.0, gpu_absent="NVML could not start: Driver Not Loaded")])
    assert text.count("note: GPU metrics absent: NVML could not start: Driver Not Loaded.") == 1
    assert "note: resource sampling was off (--no-sampler) for some rows." in text
    assert text.splitlines()[0] == ("fanbench: 2 models x 4 frames, batch 1, provider cpu (median of the timed rounds; "
                                    "latency over every timed round's frames)")


def test_markdown_has_the_same_cells():
    text = markdown_tables([measurement("serial", 1.0)])
    assert "### Offline" in text
    assert "| serial   | ort-defaults |" in text
    assert "| 1.000    |" in text


def test_nothing_measured():
    assert format_table([]) == "fanbench: no strategy was measured."
