"""Publish an export's files into ``--out`` as one set: a reader sees the old set or the new
one, never a mix (issue 17, items 6-8).

The new set is built in a fresh folder beside ``--out`` (``.<name>.rewire-<pid>-<random>``,
hidden, in the same parent so that a rename can move it); the files that are not rewire's
(anything the previous export's ``report.json`` does not list) are hard-linked into it, so
they survive untouched; then one ``renameat2(RENAME_EXCHANGE)`` swaps the two folders, and the
old one (now at the hidden name) is removed. Stale files of an earlier export (a Loihi 2
``model.net`` after a TrueNorth export) are gone because the new folder never had them;
what the user put there is kept.

Where the exchange cannot be made (not Linux, another file system, a parent folder that
cannot be written) the files are moved in one by one with ``os.replace``, ``report.json``
last, and the previous export's files that the new report does not list are removed: each
file is whole, but a reader that looks during those renames can see a mix.

A run killed while publishing leaves its hidden folder behind; the next run removes every
such folder whose process is gone (:func:`remove_stale`), and a SIGTERM removes it at once.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["Staging", "exchange", "remove_stale", "rewire_files"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_STAGING = re.compile(r"^\.(?P<name>.*)\.rewire-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_INNER = re.compile(r"^\.staging-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap the folders ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns:
        ``True`` when swapped; ``False`` when the system cannot (no ``renameat2``, a file
        system without the flag, two file systems): nothing changed then.

    Raises:
        OSError: any other failure (permissions, a missing folder).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def rewire_files(out: Path) -> set[str]:
    """Names of the files rewire's previous export wrote in ``out`` (from the ``files`` of
    its ``report.json``; empty when there is none or it is unreadable)."""
    try:
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
        files = report.get("files", {})
        names = {Path(str(v)).name for v in files.values()} if isinstance(files, dict) else set()
    except (OSError, ValueError, AttributeError):
        return set()
    return {n for n in names if n and n not in (".", "..")} | {"report.json"}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: str | Path) -> list[Path]:
    """Remove the staging folders that runs which no longer exist left beside ``out`` (or
    inside it, from the fallback path and from earlier versions' ``.staging-*``); returns
    what was removed. A live run's folder is never touched."""
    out = Path(os.path.realpath(out))
    removed = []
    candidates = []
    if out.parent.is_dir():
        candidates += [(p, _STAGING.match(p.name)) for p in out.parent.iterdir()
                       if p.name.startswith(f".{out.name}.rewire-")]
    if out.is_dir():
        candidates += [(p, _INNER.match(p.name)) for p in out.iterdir()
                       if p.name.startswith(".staging-")]
    for path, m in candidates:
        if m is None or (m.groupdict().get("name", out.name) != out.name) \
                or _alive(int(m.group("pid"))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _link_tree(src: Path, dst: Path) -> None:
    """Recreate ``src`` at ``dst`` with hard links (files), new folders and copied symlinks."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        for child in src.iterdir():
            _link_tree(child, dst / child.name)
    else:
        os.link(src, dst, follow_symlinks=False)


class Staging:
    """A folder to build an export in, then publish into ``out`` as one set.

    Use as a context manager; write the files into :attr:`path`, then call
    :meth:`publish`. Leaving the block without publishing (an error, Ctrl-C, SIGTERM)
    removes the folder and leaves ``out`` as it was.

    Args:
        out: the output folder (created by :meth:`publish` if missing).
        hook: called with the name of each publishing step (tests kill the process there).
    """

    def __init__(self, out: str | Path, hook: Callable[[str], None] | None = None):
        self.out = Path(os.path.realpath(out))
        self.hook = hook or (lambda step: None)
        self.path: Path | None = None
        self.swap = True

    def __enter__(self) -> "Staging":
        remove_stale(self.out)
        prefix = f".{self.out.name}.rewire-{os.getpid()}-"
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=self.out.parent))
            # mkdtemp makes the folder 0700; once swapped in it is --out, so give it the mode
            # --out has (or a plain mkdir would give)
            mode = self.out.stat().st_mode & 0o7777 if self.out.is_dir() else 0o777 & ~_umask()
            os.chmod(self.path, mode)
        except OSError:  # the parent cannot be written: stage inside out instead
            self.swap = False
            self.out.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=self.out))
        self.hook("staged")
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def publish(self) -> None:
        """Make the staged files the content of ``out`` (old set or new set, never a mix,
        where the exchange is available; see the module docstring)."""
        out, new = self.out, self.path
        if new is None:
            raise RuntimeError("Staging.publish() called outside its with block")
        self._own = {p.name for p in new.iterdir()}  # the export's files, before any link
        if self.swap:
            old_files = rewire_files(out) if out.is_dir() else set()
            if out.is_dir():
                for entry in out.iterdir():  # keep what is not rewire's
                    if entry.name in old_files or (new / entry.name).exists() \
                            or entry.name.startswith(".staging-"):
                        continue
                    _link_tree(entry, new / entry.name)
            self.hook("linked")
            if not out.exists():
                try:
                    os.rename(new, out)
                    self.hook("swapped")
                    self.path = None
                    return
                except OSError:
                    pass  # someone created it meanwhile: exchange below
            if exchange(new, out):
                self.hook("swapped")
                shutil.rmtree(new, ignore_errors=True)  # the old set, now at the hidden name
                self.hook("cleaned")
                self.path = None
                return
        self._replace_one_by_one()

    def _replace_one_by_one(self) -> None:
        out, new = self.out, self.path
        out.mkdir(parents=True, exist_ok=True)
        old_files = rewire_files(out)
        names = sorted(n for n in self._own if n != "report.json")
        for name in names + (["report.json"] if (new / "report.json").exists() else []):
            os.replace(new / name, out / name)
            self.hook(f"replaced {name}")
        for name in old_files - set(names) - {"report.json"}:
            try:
                (out / name).unlink()
            except OSError:
                pass
        self.hook("cleaned")
