"""Publishing a set of files into an output folder as one commit, touching nothing else.

:class:`Staging` builds the set in a hidden folder inside the output folder and publishes it
file by file (each by ``rename(2)``), the record (``report.json`` or ``manifest.json``, with
every file's SHA-256) last; :func:`verify_set` checks a folder against its record;
:func:`recover` finishes or undoes the publish of a run that was killed. What a reader may
assume is written in docs/publishing.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
from pathlib import Path
from typing import Callable

from rewire.errors import ExportError
from rewire.io.files import write_text
from rewire.io.record import (MANIFEST, MARKER, RECORDS, STAGING_NAME, STAGING_PREFIX,
                              _hash_or_none, read_record, sha256)

__all__ = ["Staging", "recover"]


def _flock(fd: int, blocking: bool) -> bool | None:
    """Lock ``fd``: True locked, False held by another, None where locks do not work."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        pass
    return True


def _dead_staging(path: Path):
    """An open, locked descriptor of ``path``'s marker when ``path`` is rewire's staging
    folder of a process that is gone; ``None`` otherwise (not ours, or alive)."""
    m = STAGING_NAME.match(path.name)
    if m is None or path.is_symlink() or not path.is_dir():
        return None
    try:
        fd = os.open(path / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        mark = json.loads(os.pread(fd, 4096, 0) or b"null")
        ok = (isinstance(mark, dict) and str(mark.get("pid")) == m["pid"]
              and mark.get("token") == m["token"])
        lock = _flock(fd, blocking=False) if ok else False
        if lock is None:  # no file locks here: the process id decides (same host only)
            lock = mark.get("host") == socket.gethostname() and not _pid_alive(int(m["pid"]))
        if lock:
            return fd
    except (OSError, ValueError):
        pass
    os.close(fd)
    return None


def _roll(out: Path, staging: Path, plan: dict | None) -> None:
    """Finish or undo an interrupted publish from its ``plan``: committed (``out``'s record
    is the plan's) -> remove the superseded files; else put back every file it replaced."""
    if plan is None:
        return
    if _hash_or_none(out / plan["record"]) == plan["record_sha256"]:
        for name, digest in plan["stale"].items():
            if _hash_or_none(out / name) == digest:
                (out / name).unlink()
        return
    for name, digest in plan["files"].items():  # undo: only files it put there
        kept = staging / "old" / name
        if _hash_or_none(out / name) != digest:
            continue
        if os.path.lexists(kept):
            os.replace(kept, out / name)
        elif name not in plan["existed"]:
            (out / name).unlink()


def _read_plan(path: Path) -> dict | None:
    """A dead run's plan, or ``None`` when there is none or it is not one rewire wrote (a
    name that is not a plain file name is never acted on)."""
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
        names = [plan["record"], *plan["files"], *plan["stale"], *plan["existed"]]
        digests = [plan["record_sha256"], *plan["files"].values(), *plan["stale"].values()]
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return None
    ok = all(isinstance(n, str) and n not in ("", ".", "..") and "/" not in n
             and "\x00" not in n for n in names) and all(isinstance(d, str) for d in digests)
    return plan if ok else None


def _keep(src: Path, dst: Path) -> None:
    """Keep ``src``'s current file at ``dst``: a hard link (the same inode, so a rollback
    gives back the very file), or a copy where links are refused (fs.protected_hardlinks)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _remove_staging(path: Path) -> None:
    """Remove a staging folder, its marker last (a kill midway leaves it recognizable)."""
    for name in sorted(os.listdir(path), key=lambda n: n == MARKER):
        p = path / name  # a symbolic link is unlinked, never followed
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    path.rmdir()


def _recover_locked(out: Path) -> list[Path]:
    removed = []
    for path in sorted(out.iterdir()) if out.is_dir() else []:
        fd = _dead_staging(path)
        if fd is None:
            continue
        try:
            _roll(out, path, _read_plan(path / "plan.json"))
            _remove_staging(path)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _out_lock(out: Path):
    """Hold an exclusive ``flock`` on the folder ``out`` (one publish at a time)."""
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _flock(fd, blocking=True)
        yield
    finally:
        os.close(fd)


def recover(out: str | Path) -> list[Path]:
    """Finish or undo the publishes of runs that died in ``out`` and remove their staging
    folders; return those removed. Only folders named ``.rewire-staging-<pid>-<token>``
    whose marker file names that pid and token, and whose owner is gone (its marker's
    ``flock`` is free), are touched; a live run's folder and anything else never are."""
    out = Path(out)
    if not out.is_dir():
        return []
    with _out_lock(out):
        return _recover_locked(out)


@contextlib.contextmanager
def _signals_held():
    """Hold back SIGINT and SIGTERM (delivered on leaving) in this thread."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _fsync(path: Path, folder: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    with contextlib.suppress(OSError):  # some file systems cannot sync a folder
        os.fsync(fd)
    os.close(fd)


class Staging:
    """Build a set of files, then publish it into ``out`` without touching anything else.

    Usage::

        with Staging(out) as st:
            (st.path / "model.net").write_bytes(...)      # write every file into st.path
            st.publish({"tag": 1}, "report.json")         # or st.publish() -> manifest.json

    Entering creates ``out`` (and its parents) if missing, finishes or undoes the publishes
    of dead runs there (:func:`recover`), and makes ``out/.rewire-staging-<pid>-<token>/``
    (hidden, on ``out``'s file system) with a marker file naming the pid and token, locked
    (``flock``) while the process lives. :meth:`publish`, under an ``flock`` on ``out``:

    1. hashes every staged file (SHA-256) and writes the record (``record`` plus
       ``"sha256": {name: hex}``) and a plan (what is replaced and removed);
    2. for each file, keeps the file it replaces (a hard link in the staging folder) and
       renames the new one over it (``rename(2)``: each file is whole at every moment);
    3. renames the record into place last: the commit;
    4. removes the files of the previous set that the new one lacks (those the previous
       record lists, still with the listed SHA-256) and a superseded record of the other name.

    Nothing else in ``out`` is deleted, moved, re-created or changed (mode, owner, xattrs);
    ``out`` itself is never renamed, so it may be a mount point. SIGINT and SIGTERM are held
    back during steps 2-4 (milliseconds); an error there undoes step 2. Leaving the block
    (normally, by an exception, Ctrl-C or SIGTERM) removes the staging folder; after a
    SIGKILL the next :class:`Staging` or :func:`recover` on ``out`` finishes (killed after
    step 3) or undoes (before) the publish. :func:`verify_set` checks a set.

    Args:
        out: the output folder. hook: called with each step's name (tests kill there).

    Raises:
        OSError: ``out`` cannot be created or written.
        ExportError: a staged entry is not a plain file, or a name to publish is a folder.
    """

    def __init__(self, out: str | Path, hook: Callable[[str], None] | None = None):
        self.out = Path(out).absolute()
        self.hook = hook or (lambda step: None)
        self.root: Path | None = None
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The folder to write the new set into."""
        if self.root is None:
            raise RuntimeError("Staging.path is only there inside its with block")
        return self.root / "new"

    def __enter__(self) -> "Staging":
        self.out.mkdir(parents=True, exist_ok=True)
        recover(self.out)
        while self.root is None:  # a plain mkdir: mode from the umask, setgid inherited
            token = secrets.token_hex(6)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.out / f"{STAGING_PREFIX}{os.getpid()}-{token}")
                self.root = self.out / f"{STAGING_PREFIX}{os.getpid()}-{token}"
        try:
            self._fd = os.open(self.root / MARKER, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            _flock(self._fd, blocking=False)
            os.write(self._fd, json.dumps({"pid": os.getpid(), "token": token, "host":
                                           socket.gethostname(), "by": "rewire"}).encode())
            (self.root / "new").mkdir()
            (self.root / "old").mkdir()
        except BaseException:
            self.__exit__()
            raise
        self.hook("staged")
        return self

    def __exit__(self, *exc) -> None:
        if self.root is not None and self.root.exists():
            _remove_staging(self.root)
        self.root = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.hook("removed")

    def publish(self, record: dict | None = None, name: str = MANIFEST) -> dict[str, Path]:
        """Publish the staged files with ``record`` (default ``{"rewire_set": 1}``) as ``name``
        (one of :data:`RECORDS`); adds ``record["sha256"]``. Returns ``{name: final path}``
        (the record included). See the class docstring for the steps."""
        if name not in RECORDS:
            raise ValueError(f"record name {name!r}: use one of {RECORDS}")
        out, new = self.out, self.path
        files = {}
        for entry in sorted(new.iterdir()):
            if entry.is_symlink() or not entry.is_file() or entry.name in RECORDS:
                raise ExportError(f"{entry.name}: a staged entry must be a plain file with "
                                  f"a name other than {RECORDS} (publish writes the record)")
            _fsync(entry)
            files[entry.name] = sha256(entry)
        record = record if record is not None else {"rewire_set": 1}
        record["sha256"] = files
        write_text(new / name, json.dumps(record, indent=2) + "\n")
        with _out_lock(out):
            _recover_locked(out)
            clash = [n for n in [*files, name] if (out / n).is_dir() and
                     not (out / n).is_symlink()]
            if clash:
                raise ExportError(f"{out / clash[0]} is a folder; rewire publishes a file of "
                                  f"that name there: move or rename the folder")
            stale = {}
            for old in RECORDS:
                table = read_record(out / old) or {}
                stale.update({n: h for n, h in table.items() if n not in files})
                if old != name and table:
                    stale[old] = sha256(out / old)
            plan = {"record": name, "record_sha256": sha256(new / name), "files": files,
                    "stale": stale, "existed": [n for n in files if os.path.lexists(out / n)]}
            write_text(self.root / "plan.json", json.dumps(plan))
            self.hook("planned")
            with _signals_held():
                try:
                    for n in files:
                        if os.path.lexists(out / n):
                            _keep(out / n, self.root / "old" / n)
                        os.replace(new / n, out / n)
                        self.hook(f"renamed {n}")
                    _fsync(out, folder=True)
                    os.replace(new / name, out / name)
                except BaseException:
                    _roll(out, self.root, plan)
                    raise
                _fsync(out, folder=True)
                self.hook("committed")
                _roll(out, self.root, plan)
                self.hook("cleaned")
        return {n: out / n for n in [*files, name]}
