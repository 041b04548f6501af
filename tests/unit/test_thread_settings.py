"""`--threads`: the text form of thread settings, and how it turns into benchmark cases."""

from __future__ import annotations

import subprocess

import pytest

from bench.cases import cases
from bench.options import OptionError
from bench.thread_spec import STRATEGY_DEFAULT, ThreadSpecError, parse_threads, thread_spec
from strategies import STRATEGIES, ThreadSettings
from tests.helpers.run_bench import bench_subprocess
from tests.helpers.runs import parse_args


@pytest.mark.parametrize(("text", "expected"), [
    ("intra=1,inter=1,spin=0", ThreadSettings(intra_op=1, inter_op=1, spinning=False)),
    ("intra=2", ThreadSettings(intra_op=2)),
    (" Intra = 4 , mode=parallel, spin=1 ", ThreadSettings(intra_op=4, parallel=True, spinning=True)),
    ("mode=sequential", ThreadSettings()),
    ("ort", ThreadSettings()),
    ("default", STRATEGY_DEFAULT),
])
def test_parses(text, expected):
    assert parse_threads(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty thread settings"),
    ("intra", r"'intra' in 'intra' is not KEY=VALUE"),
    ("intr=1", r"unknown key 'intr' in 'intr=1'; allowed keys: intra, inter, spin, mode"),
    ("intra=0", r"intra='0' in 'intra=0': intra must be a whole number of at least 1"),
    ("inter=two", r"inter must be a whole number of at least 1"),
    ("spin=yes", r"spin must be 0 \(off\) or 1 \(on\)"),
    ("mode=fast", r"mode must be sequential or parallel"),
    ("intra=1,intra=2", r"key 'intra' is given twice"),
    ("intra=1,", r"'' in 'intra=1,' is not KEY=VALUE"),
])
def test_rejects_with_what_is_allowed(text, message):
    with pytest.raises(ThreadSpecError, match=message):
        parse_threads(text)


@pytest.mark.parametrize("settings", [ThreadSettings(), ThreadSettings(intra_op=3), ThreadSettings(inter_op=2, parallel=True),
                                      ThreadSettings(intra_op=1, inter_op=1, spinning=False, parallel=True)])
def test_spec_text_round_trips(settings):
    assert parse_threads(thread_spec(settings)) == settings
    assert ThreadSettings.from_dict(settings.as_dict()) == settings


@pytest.mark.parametrize(("settings", "label", "spec"), [
    (ThreadSettings(), "ort-defaults", "ort"),
    (ThreadSettings(intra_op=2, spinning=False), "intra2-spin0", "intra=2,spin=0"),
    (ThreadSettings(intra_op=1, inter_op=3, parallel=True, spinning=True), "intra1-inter3-parallel-spin1",
     "intra=1,inter=3,spin=1,mode=parallel"),
    (ThreadSettings(parallel=True), "parallel", "mode=parallel"),
])
def test_label_and_spec_keep_their_own_order(settings, label, spec):
    # Labels key saved histories and benchmark ids; the spec is what a user types: neither may change.
    assert (settings.label, thread_spec(settings)) == (label, spec)


def test_without_threads_each_strategy_runs_its_default_and_the_classics_also_ort_defaults():
    ids = [case.id for case in cases(parse_args([]))]
    assert len(ids) == len(STRATEGIES) + 4
    classic = ("serial", "threads", "processes", "asyncio")
    assert [i for i in ids if i.endswith("ort-defaults")] == [f"{name}-ort-defaults" for name in classic]
    assert any(i.startswith("batched-k4-") for i in ids)


def test_a_sweep_runs_exactly_the_given_settings_for_every_selected_strategy():
    selected = cases(parse_args(["--strategy", "serial", "--strategy", "batched", "--threads", "intra=1,spin=0",
                                 "--threads", "default", "--threads", "ort", "--threads", "intra=1,spin=0",
                                 "--batch-k", "8"]))
    assert [case.id for case in selected] == [
        "serial-intra1-spin0", f"serial-{STRATEGIES['serial'].default_settings(4).label}", "serial-ort-defaults",
        "batched-k8-intra1-spin0", f"batched-k8-{STRATEGIES['batched'].default_settings(4).label}",
        "batched-k8-ort-defaults"]
    assert selected[3].options == (("k", 8),)


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return bench_subprocess("--no-history", *args, timeout=120)


@pytest.mark.slow
def test_bad_threads_is_a_usage_error():
    result = run_bench("--threads", "intra=0", "--collect-only")
    assert result.returncode == 4
    assert "argument --threads: intra='0' in 'intra=0': intra must be a whole number of at least 1" in result.stderr


@pytest.mark.slow
def test_ids_show_the_swept_settings():
    result = run_bench("--collect-only", "-q", "--strategy", "run_async", "--threads", "intra=2,spin=0",
                       "--threads", "intra=3,inter=2,mode=parallel")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_strategy[run_async-intra2-spin0-offline]" in result.stdout
    assert "test_strategy[run_async-intra3-inter2-parallel-offline]" in result.stdout


@pytest.mark.parametrize("spec", ["intra=999", "inter=999", "intra=1,inter=999"])
def test_thread_counts_far_beyond_the_usable_cores_are_refused(spec, monkeypatch):
    """intra=999 on 2 cores spawned thousands of threads (load average above 2,000; 166 s for 2 frames)."""
    import bench.options
    monkeypatch.setattr(bench.options, "usable_cores", lambda: 2)
    with pytest.raises(OptionError, match=r"^--threads .*999 .* is more than 4 x the 2 usable cores; give at most 8\.$"):
        parse_args(["--threads", spec])
    assert parse_args(["--threads", "intra=8,inter=8"]).threads == (ThreadSettings(intra_op=8, inter_op=8),)


@pytest.mark.slow
def test_too_many_threads_is_a_usage_error_in_one_line():
    result = run_bench("--threads", "intra=999", "--collect-only")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "--threads intra=999: 999 intra-op threads per session is more than 4 x the" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
