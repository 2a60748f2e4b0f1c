"""One BLAS thread pool size for a benchmark script, set before numpy/scipy load.

``python benchmarks/<script>.py --threads N`` (default 1) sets ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` unless the environment already sets them;
the script's own ``--threads`` option then sets torch's threads.
"""

from __future__ import annotations

import os


def limit_blas_threads(argv: list[str]) -> None:
    """Set the BLAS thread variables from ``--threads N`` in ``argv`` (default 1)."""
    threads = argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else "1"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads)
