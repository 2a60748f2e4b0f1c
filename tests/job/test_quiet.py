"""The main job's output holds rewire's own lines only (issue 27, item 6): what third-party
libraries print on import (lava-dl: "No CUDA runtime is found ...", "WARNING: Prophesee
Dataset Toolbox could not be found!") is captured, and shown with ``REWIRE_DEBUG=1``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rewire.job.quiet import DEBUG_VARIABLE, captured

from conftest import requires_lava

ROOT = Path(__file__).resolve().parents[2]


def test_captured_takes_c_level_writes_and_gives_them_back(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    print("before", flush=True)
    with captured() as noise:
        os.write(1, b"fd one\n")
        os.write(2, b"fd two\n")
    print("after", flush=True)
    assert "fd one" in noise.text and "fd two" in noise.text
    out, err = capfd.readouterr()
    assert out == "before\nafter\n" and err == ""


def test_captured_lets_everything_through_in_debug_mode(capfd, monkeypatch):
    monkeypatch.setenv(DEBUG_VARIABLE, "1")
    with captured() as noise:
        os.write(2, b"shown\n")
    assert noise.text == "" and capfd.readouterr().err == "shown\n"


def test_captured_restores_the_streams_after_an_error(capfd, monkeypatch):
    monkeypatch.delenv(DEBUG_VARIABLE, raising=False)
    with pytest.raises(RuntimeError):
        with captured():
            os.write(1, b"lost\n")
            raise RuntimeError("boom")
    os.write(1, b"back\n")
    assert capfd.readouterr().out == "back\n"


@pytest.mark.lava
@requires_lava
@pytest.mark.parametrize("debug", ["", "1"])
def test_lava_import_prints_nothing_into_the_job(debug):
    """The Lava check's import, as the job makes it: silent; with REWIRE_DEBUG=1 Lava's own
    lines are there to see."""
    code = ("from rewire.job.quiet import captured\n"
            "from rewire.export.lava_run import lava_missing\n"
            "with captured():\n"
            "    assert lava_missing() is None\n"
            "print('done')\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), DEBUG_VARIABLE: debug}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr
    noise = [line for line in (res.stdout + res.stderr).splitlines() if line != "done"]
    if debug:
        assert any("Prophesee" in line or "CUDA" in line for line in noise), noise
    else:
        assert noise == [], noise
