"""SIGTERM to the whole process group (`timeout`, a CI cancel, systemd), in every phase of `pytest bench`.

Each test starts `pytest bench` in its own session, pauses it at a phase for certain
(tests/helpers/faults.py: FANBENCH_TEST_PAUSE), signals the whole group with `os.killpg`, and
checks that the run ends as a signal to the main process would end it: exit status 2, one line
saying so, the summary printed, the complete benchmarks saved, nothing left behind, and the
next run compares. The waits are bounds for a hang, never timing assertions.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.report.charts import chart_names
from tests.helpers.input_models import write_image_model
from tests.helpers.run_bench import PausedBench, assert_nothing_left, bench_subprocess, compare_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="uses /dev/shm and Linux signals")]

TINY = ("--model-size", "tiny", "--models", "2", "--frame-size", "32x32", "--batch", "1", "--threads", "default",
        "--scenario", "offline", "--provider", "cpu", "--warmup", "1")


@pytest.fixture
def paused(tmp_path: Path) -> Iterator[callable]:
    runs: list[PausedBench] = []

    def start(phase: str, *args: str) -> PausedBench:
        runs.append(PausedBench(tmp_path, phase, *args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()  # only when a test failed midway


def saved_runs(history: Path) -> list[Path]:
    return sorted(history.rglob("*.json"))


@pytest.mark.parametrize("strategy", ["processes_shm", "processes"])
def test_group_sigterm_mid_round_ends_as_interrupted_with_the_summary_and_the_complete_runs_saved(
        paused, tmp_path: Path, strategy: str) -> None:
    history = tmp_path / "history"
    storage = f"--benchmark-storage=file://{history}"
    # serial completes; the strategy's first timed round (its runs: the warm-up, then the rounds) is cut.
    run = paused("round:2", *TINY, "--strategy", "serial", "--strategy", strategy, "--frames", "400",
                 "--rounds", "3", storage, "--report-dir", str(tmp_path / "report"))
    run.wait_paused()
    names = {process.name() for process in run.descendants} | {" ".join(process.cmdline()) for process in run.descendants}
    assert any("spawn_main" in name for name in names), f"no worker or sampler was running: {names}"

    status, output = run.signal_group()

    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "received SIGTERM" in output, output
    for symptom in ("BrokenPipe", "Traceback", " died (", "resource sampler"):  # the children's death, reported
        assert symptom not in output, output
    assert "= fanbench =" in output, output  # the summary: the table of what completed
    assert (f"fanbench: not saved to the history, as they did not complete (interrupted or failed): "
            f"test_strategy[{strategy}-") in output, output
    assert "the 1 complete benchmark(s) are saved." in output, output
    assert_nothing_left(run, output)
    [saved] = saved_runs(history)
    [benchmark] = json.loads(saved.read_text())["benchmarks"]
    assert benchmark["name"].startswith("test_strategy[serial-")

    # The next run compares with it, and gates on it, as with any complete run.
    again = bench_subprocess(*TINY, "--strategy", "serial", "--frames", "400", "--rounds", "3", storage,
                             "--no-report", "--benchmark-compare-fail=median:100000%")
    assert again.returncode == pytest.ExitCode.OK, again.stdout + again.stderr
    assert "timed different work" not in again.stdout
    compared = compare_subprocess(*map(str, saved_runs(history)))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert benchmark["fullname"] in compared.stdout


def test_group_sigterm_at_start_up_leaves_no_synthetic_video(paused, tmp_path: Path) -> None:
    # --model without --video: the synthetic video is written to $TMPDIR/fanbench-video-* and decoded.
    model = write_image_model(tmp_path / "det.onnx", ["N", 3, "H", "W"])
    run = paused("video", "--model", str(model), "--frames", "3", "--frame-size", "16x16", "--strategy", "serial",
                 "--scenario", "offline", "--provider", "cpu", "--no-history", "--no-report")
    run.wait_paused()
    assert list(run.tmpdir.glob("fanbench-video-*")), "paused before the video was written"

    status, output = run.signal_group()

    assert status == pytest.ExitCode.INTERRUPTED, output
    assert not list(run.tmpdir.glob("fanbench-video-*")), output
    assert "Traceback" not in output, output
    said = [line for line in output.splitlines() if "received SIGTERM" in line]
    assert len(said) == 1, output
    assert_nothing_left(run, output)


def test_group_sigterm_while_the_report_is_written_keeps_the_previous_report(paused, tmp_path: Path) -> None:
    report, history = tmp_path / "report", tmp_path / "history"
    args = (*TINY, "--strategy", "serial", "--strategy", "threads", "--frames", "3", "--rounds", "1",
            f"--benchmark-storage=file://{history}", "--report-dir", str(report))
    first = bench_subprocess(*args)
    assert first.returncode == pytest.ExitCode.OK, first.stdout + first.stderr
    before = {path.relative_to(report): path.read_bytes() for path in report.rglob("*") if path.is_file()}
    assert Path("report.md") in before
    assert len(before) >= 3

    run = paused("report", *args)
    run.wait_paused()  # one timeline drawn, the others not
    status, output = run.signal_group()

    assert status == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output, output
    assert (f"fanbench: received SIGTERM while the report was written: none written, {report} keeps what it held; "
            "python -m bench.report on the saved run writes it.") in output, output
    after = {path.relative_to(report): path.read_bytes() for path in report.rglob("*") if path.is_file()}
    assert after == before  # the previous report, whole: nothing of the new one, no staging folder
    assert [path.name for path in report.iterdir() if path.name.startswith(".")] == []
    assert len(saved_runs(history)) == 2  # the run itself was complete and is saved
    assert_nothing_left(run, output)


def test_a_model_named_in_cjk_gets_the_full_report_with_charts(tmp_path: Path) -> None:
    model = tmp_path / "模型.onnx"
    shutil.copy(write_image_model(tmp_path / "source.onnx", ["N", 3, "H", "W"]), model)
    report = tmp_path / "report"

    result = bench_subprocess("--model", str(model), "--frames", "2", "--frame-size", "16x16", "--strategy", "serial",
                              "--strategy", "threads", "--threads", "default", "--scenario", "offline", "--provider", "cpu",
                              "--rounds", "1", "--warmup", "0", "--no-history", "--report-dir", str(report))

    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert f"fanbench: report written to {report / 'report.md'}" in result.stdout
    assert "fanbench recommends" in result.stdout
    text = (report / "report.md").read_text(encoding="utf-8")
    assert "模型" in text
    assert "fanbench recommends" in text
    charts = sorted(path.relative_to(report).as_posix() for path in report.rglob("*.png"))
    assert "wall-speedup-offline.png" in charts
    assert len([c for c in charts if c.startswith("timelines/")]) == 2
    # In the charts by its name where an installed font draws it, else as "model 1", which the report explains.
    if chart_names(["模型"]):
        assert "- the charts call model 1 `模型`: no installed font draws that name" in text
