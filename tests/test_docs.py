"""The documentation site (mkdocs + mkdocstrings API reference) builds with no warning."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None
                    or importlib.util.find_spec("mkdocstrings") is None,
                    reason="mkdocs / mkdocstrings not installed (pip install 'rewire[docs]')")
def test_site_builds_strict_without_warnings(tmp_path):
    """``mkdocs build --strict`` succeeds, prints no warning, and renders the API reference
    from the docstrings (a known docstring appears in the generated page)."""
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                          "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log
    assert "WARNING" not in log, log
    api = (tmp_path / "site" / "api" / "training" / "index.html").read_text(encoding="utf-8")
    assert "Gradient Rewiring optimizer" in api  # GradR's docstring, rendered
    assert (tmp_path / "site" / "quickstart" / "index.html").exists()
