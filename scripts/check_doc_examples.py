"""Run every ```python block of a documentation page, in order, in one namespace.

The pages' examples must run as written (docs/byon.md, docs/ir.md). Each page runs in a fresh
temporary folder (so ``"build"`` lands there) with the repository's ``tests`` folder linked in
(the NIR fixtures under tests/data) and, beside it, ``../shared`` linked to the one beside the
repository (the data sets), so paths read as they do from the repository's root. Blocks whose first line is ``# not run`` are skipped.

    PYTHONPATH=$PWD .venv/bin/python scripts/check_doc_examples.py docs/byon.md docs/ir.md
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def run_page(page: Path) -> int:
    blocks = BLOCK.findall(page.read_text())
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as top:
        tmp = Path(top) / "work"
        tmp.mkdir()
        os.symlink(ROOT / "tests", tmp / "tests")
        if (ROOT.parent / "shared").exists():
            os.symlink(ROOT.parent / "shared", Path(top) / "shared")
        os.chdir(tmp)
        namespace: dict = {"__name__": "__doc_example__"}
        try:
            for k, code in enumerate(blocks, 1):
                if code.lstrip().startswith("# not run"):
                    print(f"{page}: block {k} skipped (# not run)")
                    continue
                start = time.perf_counter()
                exec(compile(code, f"{page}:block{k}", "exec"), namespace)
                print(f"{page}: block {k} ok ({time.perf_counter() - start:.1f} s)", flush=True)
        finally:
            os.chdir(here)
    return len(blocks)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        run_page(Path(arg))
