"""Tiny fake export sets and a snapshot of everything in a folder that is not rewire's, for
the publishing tests (issue 27, item 1): an "old" Loihi-2-like set and a "new"
TrueNorth-like one, published through :class:`rewire.io.Staging` with ``report.json`` as
the record."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rewire.io import Staging, verify_set
from rewire.io.publish import MARKER

OLD = {"model.net": b"old net", "model.nir": b"old nir", "cores.json": b"old cores"}
NEW = {"model_step.onnx": b"new onnx", "cores.json": b"new cores"}
SETS = {"old": OLD, "new": NEW}
OURS = {"report.json", "manifest.json", *OLD, *NEW, "model_unrolled.onnx", "model_int.onnx",
        "cores.png"}  # with the rest of what the main job writes


def publish(out: Path, tag: str, hook=None, files: dict | None = None) -> None:
    """Publish ``SETS[tag]`` (or ``files``) into ``out`` with ``{"tag": tag}`` as record."""
    with Staging(out, hook) as st:
        for name, raw in (files or SETS[tag]).items():
            (st.path / name).write_bytes(raw)
            if hook:
                hook(f"wrote {name}")
        st.publish({"tag": tag}, "report.json")


def seen(out: Path) -> str:
    """What a reader sees through :func:`rewire.io.verify_set`: 'old', 'new' or a mix."""
    paths = verify_set(out)
    files = {n: p.read_bytes() for n, p in paths.items()}
    tag = json.loads((out / "report.json").read_text())["tag"]
    return tag if files == SETS[tag] else f"mix: report {tag}, files {sorted(files)}"


def raw(out: Path) -> str:
    """What the folder itself holds (no journal): 'old', 'new' or a description."""
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.name in OURS and p.is_file()}
    tag = json.loads(files.pop("report.json"))["tag"]
    return tag if files == SETS[tag] else f"mix: report {tag}, files {sorted(files)}"


def ours(path: Path) -> bool:
    """A top-level entry rewire made: a set file or a staging folder whose marker names it."""
    if path.name in OURS:
        return True
    parts = path.name.split("-")
    try:
        mark = json.loads((path / MARKER).read_text())
        return path.name.startswith(".rewire-staging-") and mark["pid"] == int(parts[2]) \
            and mark["token"] == parts[3]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False


def _xattrs(path: Path) -> dict:
    try:
        return {k: os.getxattr(path, k, follow_symlinks=False)
                for k in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}


def snapshot(out: Path) -> dict:
    """Mode, owner, inode, mtime, xattrs and bytes of everything in ``out`` rewire did not
    make (``out`` itself: all but its mtime, which new entries change)."""
    st = os.stat(out)
    snap = {".": (st.st_mode, st.st_uid, st.st_gid, st.st_ino, _xattrs(out))}
    for root, dirs, files in os.walk(out):
        here = Path(root)
        for name in sorted(dirs + files):
            p = here / name
            if here == out and ours(p):
                if name in dirs:
                    dirs.remove(name)
                continue
            s = os.lstat(p)
            body = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            snap[str(p.relative_to(out))] = (s.st_mode, s.st_uid, s.st_gid, s.st_ino,
                                             s.st_mtime_ns, _xattrs(p), body)
    return snap


def user_things(out: Path) -> str:
    """Fill ``out`` with what users keep there: notes, a 0700 + setgid folder owned by
    another user with an xattr, a folder named like an old staging folder, one named like
    rewire's but without its marker, and one with a marker that does not match its name.
    Returns '' or why the xattr part could not be made."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "notes.txt").write_bytes(b"mine")
    (out / ".gitignore").write_bytes(b"*")
    secret = out / "secret"
    secret.mkdir()
    (secret / "keep.txt").write_bytes(b"deep")
    os.chmod(secret, 0o2700)
    if os.geteuid() == 0:
        os.chown(secret, 1234, 1234)
    for name in (".staging-123-abc", f".rewire-staging-{2**22 + 7}-abc",
                 f".rewire-staging-{2**22 + 8}-abc"):
        (out / name).mkdir()
        (out / name / "x").write_bytes(b"user data")
    (out / f".rewire-staging-{2**22 + 8}-abc" / MARKER).write_text('{"pid": 1, "token": "q"}')
    try:
        os.setxattr(secret, "user.rewire_test", b"kept")
        os.setxattr(out / "notes.txt", "user.rewire_test", b"kept too")
    except OSError as exc:
        return f"user xattrs not supported here ({exc.strerror})"
    return ""
