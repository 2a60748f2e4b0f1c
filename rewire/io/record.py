"""The record of a published set and how a reader checks it (the reading side of
:mod:`rewire.io.publish`).

A record is a JSON object with ``"sha256": {file name: hex digest}`` listing every file of
the set; rewire writes it last, so it is the commit. :func:`verify_set` checks a folder
against it and :func:`read_set` reads a set whose bytes were checked after reading. What a
reader may assume is in docs/publishing.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from pathlib import Path

from rewire.errors import ExportError

__all__ = ["MANIFEST", "RECORDS", "SetError", "read_record", "read_set", "sha256", "verify_set"]

#: Records (commit files) rewire writes: the main job's ``report.json`` and
#: :func:`rewire.export.write`'s ``manifest.json``. Each holds ``"sha256": {file name: hex}``.
RECORDS = ("report.json", "manifest.json")
MANIFEST = "manifest.json"
STAGING_PREFIX = ".rewire-staging-"
MARKER = ".rewire-staging"
#: The name of a staging folder: .rewire-staging-<pid>-<token>.
STAGING_NAME = re.compile(r"^\.rewire-staging-(?P<pid>\d+)-(?P<token>[A-Za-z0-9_]+)$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
#: Largest record read (the main job's report.json is about 15 KB).
MAX_RECORD_BYTES = 1 << 26


class SetError(ExportError):
    """A folder does not hold the set its record lists (a file missing or with another
    SHA-256: a publish ran meanwhile, or someone changed the file); ``name``: that file."""

    def __init__(self, message: str, name: str = ""):
        super().__init__(message)
        self.name = name


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits (FIPS 180-4)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash_or_none(path: Path) -> str | None:
    with contextlib.suppress(OSError):
        return sha256(path) if path.is_file() and not path.is_symlink() else None
    return None


def _load(path: Path) -> tuple[str | None, dict[str, str] | None]:
    """One read of a record: ``(its SHA-256, its sha256 table)``; ``None`` for what is not
    there or not a record rewire writes (no table, a name with a folder, a bad digest)."""
    try:
        if path.is_symlink() or path.stat().st_size > MAX_RECORD_BYTES:
            return None, None
        raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError):
        return None, None
    table = data.get("sha256") if isinstance(data, dict) else None
    if not isinstance(table, dict) or not all(
            isinstance(n, str) and n not in ("", ".", "..") and "/" not in n and "\x00" not in n
            and isinstance(h, str) and _HEX.match(h) for n, h in table.items()):
        table = None
    return hashlib.sha256(raw).hexdigest(), table


def read_record(path: str | Path) -> dict[str, str] | None:
    """The ``sha256`` table (file name -> hex digest) of a record, or ``None`` when the
    file is missing or is not a record rewire writes (no such table, names with a folder)."""
    return _load(Path(path))[1]


def _candidates(out: Path, name: str):
    """``out / name``, then the copies of ``name`` kept in rewire's staging folders."""
    yield out / name
    with contextlib.suppress(OSError):
        for p in list(out.iterdir()):
            if STAGING_NAME.match(p.name) and (p / MARKER).is_file():
                yield p / "old" / name


def verify_set(out: str | Path, record: str = "report.json",
               tries: int = 50) -> dict[str, Path]:
    """Check that ``out`` holds one whole set: every file ``record`` lists, with its SHA-256.

    A publish (:class:`Staging`) replaces the files one by one and the record last, keeping
    each replaced file in its staging folder until the record is in place; so where a file in
    ``out`` already is the next set's (a publish running, or killed before its record), its
    committed version is found there. The record is read again after the check; if it
    changed meanwhile (a publish committed), the check starts over. The answer holds when it
    is given: to read a set while publishes may run, use :func:`read_set`.

    Args:
        out: the folder. record: the record's name (``"report.json"`` for the main job,
            ``"manifest.json"`` for :func:`rewire.export.write`). tries: checks before
            giving up (10 ms apart when nothing changed).

    Returns:
        ``{file name: path holding its committed bytes}`` (``out / name``, or a copy in a
        staging folder, which the publish removes when done).

    Raises:
        SetError: no record, or a listed file whose bytes are nowhere (named).
    """
    return {n: p for n, (p, _) in _settle(Path(out), record, tries, keep=False).items()}


def read_set(out: str | Path, record: str = "report.json",
             tries: int = 50) -> dict[str, bytes]:
    """Read one whole set from ``out``: ``{file name: bytes}``, each file's bytes checked
    against ``record``'s SHA-256 after they were read (so a publish that runs meanwhile
    cannot mix two sets into the answer). Arguments and errors as :func:`verify_set`."""
    return {n: b for n, (_, b) in _settle(Path(out), record, tries, keep=True).items()}


def _settle(out: Path, record: str, tries: int, keep: bool) -> dict[str, tuple]:
    problem = SetError(f"{out / record}: no record of a set (not a folder rewire published?)")
    for _ in range(max(tries, 1)):
        first, table = _load(out / record)
        if table is None:
            raise problem
        found = {}
        for name, digest in sorted(table.items()):
            for cand in _candidates(out, name):
                data = None
                if keep:
                    with contextlib.suppress(OSError):
                        data = cand.read_bytes() if not cand.is_symlink() else None
                got = _hash_or_none(cand) if not keep else \
                    hashlib.sha256(data).hexdigest() if data is not None else None
                if got == digest:
                    found[name] = (cand, data)
                    break
            else:
                problem = SetError(f"{out / name}: its SHA-256 is not the {digest[:12]}... "
                                   f"that {record} lists (changed, or a publish was cut)", name)
                break
        if _load(out / record)[0] == first:
            if len(found) == len(table):
                return found
            time.sleep(0.01)
    raise problem
