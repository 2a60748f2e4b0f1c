"""The main job end to end, as `make demo` runs it (slow: about a minute of CPU)."""

from __future__ import annotations

import json

import pytest

from rewire.job.cli import main

from conftest import SHARED, lava_missing


@pytest.mark.slow
def test_default_main_job_meets_the_targets(tmp_path):
    """Digits, loihi2, default budget (10 % connectivity): >= 95 % float test accuracy at
    <= 10 % connectivity, quantized (integer chip model) within 2 points, Lava spike-exact."""
    assert main(["--out", str(tmp_path), "--no-progress"]) == 0
    r = json.loads((tmp_path / "report.json").read_text())
    res = r["result"]
    assert res["connectivity"] <= 0.10
    assert res["float_accuracy"] >= 0.95
    assert abs(res["quantization_drop"]) <= 0.02
    assert res["within_budget"] and res["cores"] <= 128
    assert r["warnings"] == []  # a healthy run has none (tests/test_health.py: the bad ones)
    # nor compiler warnings (tests/compiler/test_diagnostics.py, tests/job/test_job_warnings.py)
    assert r["compiler_warnings"] == []
    from rewire.job.table import format_report

    table = format_report(r)
    if lava_missing() is None:
        assert r["lava_check"]["output_spikes"] > 0 and r["lava_check"]["compared"]
        assert "samples spike-exact" in table
        silent = {**r, "lava_check": {**r["lava_check"], "output_spikes": 0}}
        assert "FAILED: compared no output spikes" in format_report(silent)
        assert r["lava_check"]["spike_exact"] == r["lava_check"]["samples"] == 10


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "mnist").exists(), reason="../shared/datasets/mnist absent")
def test_mnist_pipeline_runs(tmp_path):
    """MNIST from IDX files through the whole pipeline (tiny net, one epoch of the 8k/2k
    split of the test file: a smoke test; the standard split's loading is tested in
    tests/training/test_mnist_standard.py)."""
    code = main(["--dataset", "mnist-t10k", "--data-dir", str(SHARED / "mnist"), "--hidden", "32",
                 "--steps", "8", "--epochs", "1", "--connectivity", "0.5", "--out",
                 str(tmp_path), "--no-progress", "--lava-samples", "1"])
    assert code == 0
    r = json.loads((tmp_path / "report.json").read_text())
    assert r["network"]["sizes"] == [784, 32, 10]
    assert r["result"]["synapses"] <= r["budget"]["max_synapses"]
