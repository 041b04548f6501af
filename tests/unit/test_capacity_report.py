"""Capacity in options, gates, the saved record, the comparison with the last run and the report."""

from __future__ import annotations

import pytest

from bench.compare.gates import CapacityGate, capacity_drops, evaluate, parse_gate
from bench.measure.capacity import Capacity, ProbeResult
from bench.measure.measurement import Measurement
from bench.measure.scenarios import SPREAD
from bench.report.capacity import answer_line, capacity_figure, capacity_lines, capacity_table
from fixtures.options import OptionError
from tests.helpers.measurements import changed
from tests.helpers.runs import parse_args
from tests.unit.test_performance_bar import measurement


def streamed(strategy: str, cameras: int, p99: float = 0.03, settings: str = "intra1-inter1-spin0") -> Measurement:
    probes = (ProbeResult(cameras, 300, True, 0.01, p99, 0), ProbeResult(cameras + 1, 300, False, None, None, None,
                                                                          stopped="late"))
    capacity = Capacity(cameras, 25.0, 0.04, SPREAD, cameras + 1, probes).as_dict()
    return changed(measurement(strategy, 1.0, settings=settings), scenario="streaming", target_fps=25.0,
                   deadline_s=0.04, capacity=capacity)


def test_capacity_is_saved_and_read_back_and_old_records_have_none():
    m = streamed("threads", 4)
    info = m.extra_info()
    assert info["capacity"]["cameras"] == 4
    assert Measurement.from_extra_info(info).capacity_cameras == 4
    assert "capacity" not in measurement("serial", 1.0).extra_info()  # not searched: not stored
    old = measurement("serial", 1.0).extra_info()
    assert Measurement.from_extra_info(old).capacity_cameras is None


def test_capacity_gate_parses_and_passes_or_fails():
    gate = parse_gate("threads cameras >= 6")
    assert gate == CapacityGate("threads", 6)
    labels = {"threads": "intra1-inter1-spin0", "serial": "intra1-inter1-spin0"}
    offline = measurement("threads", 1.0)
    results = evaluate([gate, parse_gate("threads cameras >= 4"), parse_gate("serial cameras >= 1")],
                       [offline, streamed("threads", 5)], labels)
    assert [r.passed for r in results] == [False, True, False]
    assert "serves 5 cameras at 25 fps, below 6" in results[0].line()
    assert "no capacity of 'serial'" in results[2].reason
    speed = evaluate([parse_gate("threads >= 0.5x serial")], [offline, measurement("serial", 1.0),
                                                             streamed("serial", 9)], labels)
    assert speed[0].passed  # speed gates read the offline benchmarks only


def test_capacity_drop_against_the_saved_run_is_a_regression():
    now = {"t[threads-stream]": streamed("threads", 3).extra_info(), "t[serial-offline]": {}}
    saved = {"t[threads-stream]": streamed("threads", 4).extra_info()}
    lines = capacity_drops(now, saved)
    assert lines == ["t[threads-stream] against the saved run: capacity 4 -> 3 cameras at 25 fps (a capacity drop)"]
    assert capacity_drops(saved, now) == []  # a rise is no regression


@pytest.mark.parametrize(("args", "message"), [
    (["--streams", "2", "--fps", "0"], "--streams: there is no stream"),
    (["--deadline-ms", "10", "--scenario", "offline"], "--deadline-ms: there is no stream"),
    (["--fps", "0", "--probe-seconds", "2"], "--probe-seconds: a capacity needs a frame rate"),
    (["--fps", "0", "--gate", "threads cameras >= 2"], "a capacity needs the streaming scenario"),
    (["--streams", "41"], "--streams 41: 41 cameras at 25 fps arrive every 0.976 ms"),
], ids=["streams-offline", "deadline-offline", "probe-fps0", "gate-fps0", "too-fast-for-timers"])
def test_contradicting_stream_options_are_refused(args, message):
    with pytest.raises(OptionError, match=message):
        parse_args(args)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two"])
def test_a_bad_stream_count_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--streams", value])
    assert "argument --streams" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "nan", "soon"])
def test_a_bad_deadline_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--deadline-ms", value])
    assert "argument --deadline-ms" in capsys.readouterr().err


def test_stream_options_reach_the_scenario_and_dynamic_batch():
    options = parse_args(["--streams", "8", "--stream-phase", "aligned", "--deadline-ms", "100", "--max-batch", "4"])
    stream = options.scenarios[-1]
    assert (stream.streams, stream.phase, stream.deadline_s, stream.id) == (8, "aligned", 0.1, "stream25fpsx8aligned")
    assert options.capacity
    assert options.strategy_arguments("dynamic_batch") == (("max_batch", 4),)
    assert not parse_args(["--no-capacity"]).capacity
    assert parse_args([]).scenarios[-1].id == "stream25fps"  # one camera: today's id


def test_the_report_answers_how_many_cameras():
    best = measurement("threads", 0.4)  # 25 fps offline... 10 frames / 0.4 s
    rows = [best, streamed("serial", 2, 0.035), streamed("threads", 5, 0.03), streamed("dynamic_batch", 5, 0.02)]
    assert answer_line(rows) == ("this host serves 5 cameras at 25 fps with dynamic_batch-intra1-inter1-spin0 "
                                 "(p99 20.0 ms); threads-intra1-inter1-spin0 serves 5")
    title, _, table = capacity_table(rows)
    assert "cameras at 25 fps" in title
    assert table[0][:4] == ["serial", "intra1-inter1-spin0", "2", "50"]
    assert table[1][5] == "above limit"  # 125 fps served over 25 fps offline: never shown as an efficiency
    assert table[0][6] == "2+, 3-"
    assert capacity_lines([best]) == []
    assert capacity_lines(rows)[-1].startswith("fanbench: this host serves 5 cameras")
    capacity_figure(rows, "chart")  # draws
