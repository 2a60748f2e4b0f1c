"""The compiler's warnings in the main job (issue 23, item 4): printed in the table, written
into ``report.json`` and every exported file's metadata, and ``--strict`` fails the run
(exit code 3, the files written). The rules themselves are raised by networks built to break
them in tests/compiler/test_diagnostics.py; here one is forced (the class-agreement bound
set above 100 %, so the real agreement measured on the job's calibration data is reported)."""

from __future__ import annotations

import json
import re
import warnings

import h5py
import nir
import onnx
import pytest

from rewire.compiler import diagnostics
from rewire.errors import RewireWarning
from rewire.job.cli import main


@pytest.mark.slow
def test_compiler_warning_reaches_table_report_files_and_strict(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setattr(diagnostics, "AGREEMENT", 1.01)  # any agreement is too low
    out = tmp_path / "b"
    argv = ["--hidden", "16", "--epochs", "1", "--no-progress", "--lava-samples", "0",
            "--out", str(out), "--strict"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(argv) == 3
    # the job shows them in its table and report, not a second time as Python warning lines
    assert not [w for w in seen if issubclass(w.category, RewireWarning)]
    captured = capsys.readouterr()
    assert "--strict" in captured.err and "[class_agreement]" in captured.err
    r = json.loads((out / "report.json").read_text())
    typed = r["compiler_warnings"]
    assert [(w["code"], w["layer"]) for w in typed] == [("class_agreement", "")]
    assert typed[0]["figures"]["samples"] == min(1024, 1437)
    assert 0 <= typed[0]["figures"]["agreement"] <= 1
    assert r["warnings"][0].startswith("[class_agreement] the integer chip model")
    assert re.search(r"\ncompiler warnings +1: class_agreement \(", captured.out)
    assert f"WARNING: {r['warnings'][0]}" in captured.out
    with h5py.File(out / "model.net", "r") as f:
        assert json.loads(f.attrs["rewire_warnings"]) == typed
    for name in ("model_step.onnx", "model_unrolled.onnx", "model_int.onnx"):
        props = {p.key: p.value for p in onnx.load(out / name).metadata_props}
        assert json.loads(props["rewire_warnings"]) == typed, name
    assert json.loads(nir.read(str(out / "model.nir")).metadata["rewire_warnings"]) == typed
