"""Every ```python block of every documentation page runs as written.

Each page runs in a fresh process and a fresh temporary folder through
``scripts/check_doc_examples.py`` (blocks in order, one namespace per page; a block whose
first line is ``# not run`` is skipped and counted). Pages whose examples train networks for
more than a few seconds are marked slow.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "```python" in p.read_text())
#: pages whose examples train for tens of seconds or more (measured on 2 cores)
SLOW = {"byon.md", "training.md", "gnn.md", "quickstart.md"}


def _param(page: Path):
    marks = [pytest.mark.slow] if page.name in SLOW else []
    return pytest.param(page, id=str(page.relative_to(ROOT / "docs")), marks=marks)


def test_the_docs_have_examples():
    assert len(PAGES) >= 5, PAGES


@pytest.mark.parametrize("page", [_param(p) for p in PAGES])
def test_page_examples_run(page):
    blocks = len(re.findall(r"^```python\n", page.read_text(), re.M))
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_doc_examples.py"),
                          str(page)], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    done = re.findall(r": block \d+ (ok|skipped)", res.stdout)
    assert len(done) == blocks, log[-4000:]
    assert done.count("ok") >= 1, f"{page.name}: every block is skipped"
