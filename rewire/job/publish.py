"""How the main job publishes ``--out``: one set, the run's ``report.json`` its record.

The job builds every file in a :class:`rewire.io.Staging` folder (hidden, inside ``--out``)
and publishes them with the report as the commit record (``report.json`` lists every file
with its SHA-256 under ``"sha256"``)::

    with Staging(out) as stage:
        netx.write(net, stage.path / "model.net")
        ...
        stage.publish(report, "report.json")

Nothing in ``--out`` that rewire did not write is deleted, moved or changed; a reader checks
a set with :func:`rewire.io.verify_set` (``verify_set("build")``); a run killed with SIGKILL
is finished or undone by the next run's :func:`remove_stale`. The contract is in
docs/publishing.md.
"""

from __future__ import annotations

from pathlib import Path

from rewire.io import Staging, recover, verify_set

__all__ = ["Staging", "remove_stale", "verify_set"]


def remove_stale(out: str | Path) -> list[Path]:
    """Finish or undo the publishes of dead runs in ``out`` and remove their staging folders
    (:func:`rewire.io.recover`); returns those removed. Live runs' folders and everything
    rewire did not make are left alone."""
    return recover(out)
