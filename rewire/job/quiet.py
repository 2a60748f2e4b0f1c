"""Keep third-party start-up noise out of the main job's output.

lava-dl prints on import, straight to the process's file descriptors ("No CUDA runtime is
found, using CUDA_HOME=..." from ``torch.utils.cpp_extension``, and "WARNING: Prophesee
Dataset Toolbox could not be found! ..."), into every run. :func:`captured` redirects file
descriptors 1 and 2 into a temporary file around such a call, so the job's output holds
rewire's own lines only; with the environment variable ``REWIRE_DEBUG`` set to a non-empty
value nothing is captured and the noise shows where it is printed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

DEBUG_VARIABLE = "REWIRE_DEBUG"


class Captured:
    """What a :func:`captured` block printed: ``text`` (``""`` until the block ends, and in
    debug mode)."""

    def __init__(self) -> None:
        self.text = ""


@contextlib.contextmanager
def captured():
    """Redirect file descriptors 1 and 2 (C-level writes included) into a temporary file for
    the block; Python's ``sys.stdout``/``sys.stderr`` are flushed on both sides.

    Yields:
        a :class:`Captured`, whose ``text`` holds the output once the block has ended.
    """
    out = Captured()
    if os.environ.get(DEBUG_VARIABLE):
        yield out
        return
    streams = [s for s in (sys.stdout, sys.stderr) if s is not None]
    for s in streams:
        s.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield out
        finally:
            for s in streams:
                with contextlib.suppress(Exception):
                    s.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            out.text = sink.read().decode("utf-8", "replace")


__all__ = ["Captured", "DEBUG_VARIABLE", "captured"]
