"""The main job answers "how many cameras": `pytest bench` with the capacity search, end to end."""

from __future__ import annotations

import json

import pytest

from fixtures.video import write_synthetic_video
from tests.helpers.run_bench import TINY_RUN, bench_subprocess


@pytest.mark.slow
def test_pytest_bench_searches_capacity_and_saves_it(tmp_path):
    out = tmp_path / "run.json"
    args = [arg for arg in TINY_RUN if arg not in ("--rounds", "1")]
    result = bench_subprocess(*args, "--rounds", "2", "--frames", "4", "--strategy", "serial",
                              "--strategy", "dynamic_batch", "--strategy", "batched", "--probe-seconds", "0.5",
                              "--gate", "serial cameras >= 1", "--benchmark-json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "capacity: cameras at 25 fps served with p99 <= 40.0 ms" in result.stdout
    assert "fanbench: this host serves" in result.stdout
    assert "PASS  serial cameras >= 1" in result.stdout
    assert "not streamed: batched-k4" in result.stdout  # skipped with its reason, never a failed probe
    saved = {bench["name"]: bench["extra_info"] for bench in json.loads(out.read_text())["benchmarks"]}
    streams = {name: info for name, info in saved.items() if name.endswith("stream25fps]")}
    assert sorted(name.split("[")[1].split("-")[0] for name in streams) == ["dynamic_batch", "serial"]
    for info in streams.values():
        capacity = info["capacity"]
        assert capacity["cameras"] >= 1
        assert capacity["fps"] == 25.0
        assert all(set(probe) >= {"cameras", "passed", "p99_s"} for probe in capacity["probes"])
    assert all("capacity" not in info for name, info in saved.items() if name.endswith("offline]"))


@pytest.mark.slow
def test_one_video_per_camera_streams_each_camera_its_own_video(tmp_path):
    videos = [write_synthetic_video(tmp_path / f"camera{c}.mp4", 3, height=48 + 24 * c, width=64 + 32 * c)
              for c in range(2)]
    out = tmp_path / "run.json"
    result = bench_subprocess(*TINY_RUN, "--frames", "3", "--video", str(videos[0]), "--video", str(videos[1]),
                              "--strategy", "serial", "--strategy", "threads", "--probe-seconds", "0.5",
                              "--benchmark-json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    saved = {bench["name"]: bench["extra_info"] for bench in json.loads(out.read_text())["benchmarks"]}
    offline = [info for name, info in saved.items() if name.endswith("offline]")]
    streams = [info for name, info in saved.items() if name.endswith("stream25fpsx2]")]
    assert offline, saved.keys()
    assert streams, saved.keys()
    assert all(info["settings"]["frames"] == 6 for info in offline)  # 3 frames of each video
    assert all(info["equivalence"]["equivalent"] for info in [*offline, *streams])
    assert all(info["capacity"]["cameras"] >= 1 for info in streams)
