"""The end-of-run summary fits the terminal (issue 21): no line wider than pytest's width except a
single unbreakable token, columns no row fills left out on a CPU, every column kept in Markdown, and
the README's table in the terminal's shape."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.measure.measurement import Measurement
from bench.report.summary import write_summary
from bench.report.table import drop_empty_columns, format_table, markdown_tables, tables
from tests.helpers.measurements import flat

README = Path(__file__).resolve().parents[2] / "README.md"
STRATEGIES = ["serial", "threads", "processes", "asyncio", "asyncio_threads", "processes_shm", "fanout", "merged",
              "run_async", "batched", "iobinding"]


def measurement(strategy: str, wall: float, **fields: Any) -> Measurement:
    """A CPU measurement as a default run makes it: no GPU readings, three rounds, latency per frame."""
    base: dict[str, Any] = {
        "strategy": strategy, "settings": "intra1-inter1-spin0", "ort_defaults": False, "frames": 40, "batch": 4,
        "models": [f"cnn_w16_s3_b1_seed{i}_256x256_c10" for i in range(4)], "provider": "cpu",
        "per_model_cumulative_s": [wall / 4] * 4, "wall_s": wall, "fps": 40 / wall, "overlap": 3.5, "equivalent": True,
        "rounds_wall_s": [wall * 0.97, wall, wall * 1.2], "latency_p50_s": 0.0736, "latency_p90_s": 0.2468,
        "latency_p99_s": 0.2521, "latency_frames": 120, "limit_s": 0.862, "efficiency": 0.862 / wall,
        "cpu_util_mean": 0.9, "cpu_util_max": 1.0, "peak_pss_bytes": 500 * 2**20, "peak_uss_bytes": 400 * 2**20,
        "sampler_rate_hz": 2.0, "sampler_samples": 7, "sampler_cpu_s": 0.05,
        "gpu_absent": "no GPU: onnxruntime runs on the CPU provider",
        "thread_settings": {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "sequential",
                            "allow_spinning": False, "ort_defaults": False}}
    return flat(**(base | fields))


def default_run() -> list[Measurement]:
    runs = [measurement("serial", 2.094, settings="ort-defaults", ort_defaults=True)]
    runs += [measurement(name, 0.85 + 0.02 * index) for index, name in enumerate(STRATEGIES)]
    runs += [measurement(name, 0.9 + 0.01 * index, scenario="streaming", target_fps=25.0, deadline_s=0.04,
                         deadline_misses=0) for index, name in enumerate(STRATEGIES)]
    return runs


class Reporter:
    """What write_summary uses of pytest's TerminalReporter, writing into a list of lines."""

    def __init__(self, width: int) -> None:
        self._tw = SimpleNamespace(fullwidth=width)
        self.lines: list[str] = []

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines += line.splitlines()

    def write_sep(self, sep: str, title: str, **markup: bool) -> None:
        self.lines.append(f" {title} ".center(self._tw.fullwidth, sep))


@pytest.mark.parametrize("width", [80, 200])
def test_every_summary_line_fits_the_terminal(width: int) -> None:
    reporter = Reporter(width)
    write_summary(reporter, default_run(), overhead_lines=["serial-intra2-inter1-spin0: harness overhead " + "x " * 60],
                  saved=23, regressions=["threads-intra1-inter1-spin0-offline against 0001_baseline: " + "word " * 50])
    too_wide = [line for line in reporter.lines if len(line) > width and len(line.split()) > 1]
    assert too_wide == []
    text = "\n".join(reporter.lines)
    assert "fanbench recommends" in text
    assert "offline:" in text
    assert "streaming at 25 fps:" in text
    if width == 80:  # the offline table is too wide for 80 columns: it comes in blocks, each with its strategies
        assert "offline (continued):" in text
        blocks = re.findall(r"^offline(?: \(continued\))?:\n((?:.+\n?)+?)(?:\n\n|\Z)", "\n".join(reporter.lines) + "\n\n",
                            re.MULTILINE)
        assert len(blocks) >= 2
    else:
        assert "offline (continued):" not in text


def test_the_text_table_leaves_out_the_columns_no_row_fills_and_markdown_keeps_them() -> None:
    runs = default_run()
    text = format_table(runs, 200)
    header_lines = "\n".join(text.splitlines()[:40])
    assert "GPU MB" not in header_lines
    assert "GPU util" not in header_lines
    assert "note: no value in this run, so not shown (the report keeps them): GPU MB, GPU util % mean/max, GPU MB " \
           "(device)." in text.replace("\n  ", " ")
    # Markdown: every table with every column, empty or not.
    markdown = markdown_tables(runs).splitlines()
    for _, header, _ in tables(runs):
        assert any([cell.strip() for cell in line.strip("|").split("|")] == header for line in markdown), header
    # With GPU readings the columns come back.
    gpu = [measurement("serial", 1.0, gpu_memory_peak_bytes=1280 * 2**20, gpu_util_mean=60.0, gpu_util_max=85.0,
                       gpu_absent=None)]
    assert "GPU util" in format_table(gpu, 200)


def test_a_column_left_out_is_one_that_no_row_fills() -> None:
    table = ("t", ["strategy", "settings", "a", "b"], [["s", "x", "-", "1"], ["t", "y", "-", "-"]])
    assert drop_empty_columns(table) == (("t", ["strategy", "settings", "b"], [["s", "x", "1"], ["t", "y", "-"]]), ["a"])


def test_the_readme_table_has_the_terminals_shape() -> None:
    """The README's CPU table has the columns a CPU run prints, in the terminal's order, and no stray row."""
    text = README.read_text()
    section = text[text.index("## Measured on this machine"):]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = lines[start:start + next(i for i, line in enumerate(lines[start:]) if not line.startswith("|"))]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    [offline] = [table for table in tables(default_run()) if table[0] == "offline"]
    assert header == drop_empty_columns(offline)[0][1]
    assert re.fullmatch(r"\|(-+\|)+", rows[1])
    assert not any(re.fullmatch(r"\|( -+ \|)+", line) for line in rows[2:])  # the stray row of dashes
    assert all(len(line.strip("|").split("|")) == len(header) for line in rows)
