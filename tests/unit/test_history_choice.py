"""Which saved run a run is compared with (bench/compare/choice.py): the latest that timed the same
work, from small saved histories built from tests/data/history_main.json."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pytest_benchmark.logger import Logger
from pytest_benchmark.storage.file import FileStorage

from bench.compare.choice import Work, differences, latest_comparable, named
from fixtures.options import WorkloadOptions

DATA = Path(__file__).resolve().parents[1] / "data"
MAIN = json.loads((DATA / "history_main.json").read_text())  # 2 tiny models, 2 frames, batch 1, cpu
NAMES = frozenset(bench["name"] for bench in MAIN["benchmarks"])
MODELS = tuple(MAIN["benchmarks"][0]["extra_info"]["models"])
WORK = Work(frames=2, batch=1, models=MODELS, provider="cpu", names=NAMES)


def run(**changes: object) -> dict:
    """history_main.json with every benchmark's extra_info changed as given."""
    saved = copy.deepcopy(MAIN)
    for bench in saved["benchmarks"]:
        bench["extra_info"].update(changes)
    return saved


def own_models_run() -> dict:
    return run(models=["det", "cls", "ori"], model_set_hash="0" * 16)


def test_the_models_the_history_will_name_are_known_before_the_run() -> None:
    workload = WorkloadOptions(frames=2, batch=1, frame_size=(32, 32), models=2, model_size="tiny", provider="cpu")
    assert tuple(workload.model_names()) == MODELS


def test_differences_name_what_the_saved_run_timed_otherwise() -> None:
    assert differences(MAIN, WORK) == []
    assert differences(run(frames=40, batch=4), WORK) == ["frames: 40 -> 2", "batch: 4 -> 1"]
    [line] = differences(own_models_run(), WORK)
    assert line.startswith("models: 3 (det, cls, ori) -> 2 (cnn_w4_s2_b0_seed0_32x32_c10")
    assert differences(MAIN, Work(2, 1, MODELS, "cpu", frozenset({"test_strategy[merged-x-offline]"}))) == [
        "no benchmark in common"]
    asked_cuda = copy.deepcopy(MAIN)
    asked_cuda["machine_info"]["fanbench"]["workload"]["provider"] = "cuda"
    assert differences(asked_cuda, WORK) == ["provider: cuda -> cpu"]
    # Saved without fanbench's measurements (an interrupted run of an older fanbench): only the names count.
    assert differences(run(rounds_wall_s=None) | {"benchmarks": [{"name": next(iter(NAMES)), "extra_info": {}}]},
                       WORK) == []


def test_a_stream_of_several_cameras_is_compared_on_the_frames_it_runs() -> None:
    """2 cameras stream the 2 workload frames each: their benchmark runs 4 frames (found 'frames: 4 -> 2')."""
    stream = run(frames=4)
    name = stream["benchmarks"][0]["name"]
    assert differences(stream, Work(2, 1, MODELS, "cpu", frozenset({name}), run_frames={name: 4})) == []
    assert differences(stream, Work(2, 1, MODELS, "cpu", frozenset({name}))) == ["frames: 4 -> 2"]


def test_the_latest_comparable_run_is_chosen_and_named_in_one_line() -> None:
    runs = [(Path("0001_a.json"), MAIN), (Path("0002_b.json"), run(frames=40)),
            (Path("0003_c.json"), own_models_run())]
    choice = latest_comparable(runs, WORK)
    assert choice.path == Path("0001_a.json")
    assert choice.header == ("fanbench: comparing with 0001_a.json (saved 2026-11-26 20:25:56), the latest saved run "
                             "of this machine that timed this work; 2 later run(s) timed other work (the latest, "
                             "0003_c.json: models: 3 (det, cls, ori) -> 2 (cnn_w4_s2_b0_seed0_32x32_c10, ...))")
    assert "\n" not in choice.header
    # The latest run, when it is comparable, needs no more words.
    assert latest_comparable(runs[:1], WORK).header.endswith("the latest saved run of this machine that timed this work")


def test_no_comparable_run_means_no_comparison_and_says_why() -> None:
    choice = latest_comparable([(Path("0001_a.json"), run(frames=40)), (Path("0002_b.json"), own_models_run())], WORK)
    assert choice.path is None
    assert choice.header.startswith("fanbench: not compared: none of the 2 saved run(s) of this machine timed this work "
                                    "(the latest, 0002_b.json: models: 3 (det, cls, ori) -> ")
    assert latest_comparable([], WORK).header == "fanbench: not compared: no saved run of this machine yet"


@pytest.fixture
def storage(tmp_path: Path) -> FileStorage:
    """A pytest-benchmark file storage holding 0001_baseline, 0002_x, 0003_baseline, 0004_y."""
    machine = tmp_path / "Linux-CPython-3.11-64bit"
    machine.mkdir()
    for number, name in enumerate(["baseline", "x", "baseline", "y"], 1):
        saved = copy.deepcopy(MAIN)
        saved["datetime"] = f"2026-11-2{number}T10:00:00"
        (machine / f"{number:04}_{name}.json").write_text(json.dumps(saved))
    return FileStorage(tmp_path, Logger(Logger.QUIET), default_machine_id=machine.name)


def test_a_named_baseline_is_the_latest_run_saved_under_that_name(storage: FileStorage) -> None:
    choice = named("baseline", storage.load)
    assert choice.path.name == "0003_baseline.json"
    assert choice.header == ("fanbench: comparing with 0003_baseline.json (saved 2026-11-23 10:00:00), as "
                             "--benchmark-compare=baseline asks, the latest of 2 matching runs")
    # pytest-benchmark's own reading first: a number, or a glob.
    assert named("0002", storage.load).path.name == "0002_x.json"
    assert named("*_y", storage.load).path.name == "0004_y.json"
    missing = named("nightly", storage.load)
    assert missing.path is None
    assert missing.header == ("fanbench: not compared: no saved run of this machine matches --benchmark-compare=nightly; "
                              "save one with --benchmark-save=nightly, or name a number (0001) or a file")
