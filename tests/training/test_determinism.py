"""Determinism: the main job run twice with the same seed writes bit-identical files on CPU."""

from __future__ import annotations

import json

import pytest

from rewire.export.__main__ import main

TINY = ["--dataset", "digits", "--hidden", "16", "--steps", "4", "--epochs", "1",
        "--connectivity", "0.5", "--lava-samples", "0", "--no-progress", "--device", "cpu"]
VOLATILE = ("timings", "files")  # wall-clock seconds and the output folder's own path


def _run(folder, seed):
    assert main(TINY + ["--seed", str(seed), "--out", str(folder)]) == 0
    files = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    report = json.loads(files.pop("report.json"))
    for key in VOLATILE:
        report.pop(key)
    report.get("lava_check", {}).pop("seconds", None)
    return files, report


@pytest.mark.slow
def test_same_seed_gives_bit_identical_exports(tmp_path):
    """Two runs of the main job with the same seed (in one process, one after the other)
    write byte-identical netx, ONNX and every other file, and the same report apart from
    timings and paths; another seed gives different weights."""
    files_a, report_a = _run(tmp_path / "a", seed=3)
    files_b, report_b = _run(tmp_path / "b", seed=3)
    assert {"model.net", "model_step.onnx"} <= set(files_a)
    assert files_a.keys() == files_b.keys()
    for name in files_a:
        assert files_a[name] == files_b[name], f"{name} differs between identical runs"
    assert report_a == report_b
    files_c, _ = _run(tmp_path / "c", seed=4)
    assert files_c["model.net"] != files_a["model.net"]
