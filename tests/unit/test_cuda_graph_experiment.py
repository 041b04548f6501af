"""`python -m bench.cuda_graph_experiment`: its dry run on the CPU (the CUDA variants named, not run)."""

from __future__ import annotations

import json

from bench.cuda_graph_experiment import VARIANTS, main


def test_the_cpu_dry_run_times_the_host_variants_and_names_the_cuda_ones(tmp_path):
    out = tmp_path / "experiment"
    assert main(["--provider", "cpu", "--frames", "2", "--rounds", "1", "--models", "2", "--model-size", "tiny",
                 "--out", str(out)]) == 0
    record = json.loads((out / "cuda_graph_experiment.json").read_text())
    assert [row["variant"] for row in record["rows"]] == ["serial", "threads", "iobinding_nosync"]
    assert all(row["max_abs_diff_vs_serial"] == 0.0 for row in record["rows"])  # the same sessions' arithmetic
    assert all(len(row["walls_s"]) == 1 for row in record["rows"])  # the warm-up pass is not kept
    assert record["not_run"] == {variant: "needs CUDA" for variant in VARIANTS
                                 if variant.startswith("graph") or variant == "iobinding_sync"}
    assert "| serial | " in (out / "cuda_graph_experiment.md").read_text()
