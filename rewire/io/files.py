"""One file written atomically (:func:`atomic_path`, :func:`write_text`, :func:`write_csv`: a
temporary file beside the target, then a rename) and the bounds a reader checks before loading
an HDF5 file (:func:`check_hdf5`). Re-exported by :mod:`rewire.io`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; rename it onto ``target`` on success.

    The temporary file is removed if the body raises. The rename is atomic on POSIX
    (``os.replace``).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_path(d / "a.txt") as tmp:
        ...     _ = tmp.write_text("hello")
        >>> (d / "a.txt").read_text()
        'hello'
        >>> oct((d / "a.txt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())
        True
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 - umask).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically; return the path."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


#: Largest total a rewire reader loads from one HDF5 file (netx ``.net``, NIR ``.nir``):
#: 2 GiB, over 100x the largest network rewire exports (the 784-800-10 MNIST net's netx file
#: is under 2 MB). Declared sizes are summed before anything is read, so a 41 KB file that
#: declares a 7.3 TiB dataset is refused without allocating it.
MAX_HDF5_BYTES = 1 << 31
#: Most groups and datasets one such file may hold (a network has a few per layer).
MAX_HDF5_OBJECTS = 100_000
#: Deepest group nesting :func:`check_hdf5` accepts (a NIR subgraph nests 2 groups per level;
#: netx files nest 3).
MAX_HDF5_DEPTH = 64


def check_hdf5(path: str | Path, what: str, max_bytes: int = MAX_HDF5_BYTES) -> None:
    """Check an HDF5 file's declared structure before a reader loads it.

    Walks ``path`` with h5py without reading data, each group's members opened from the
    group itself (one step per object, so the walk is linear in the objects, however deep
    the nesting): every dataset's declared size (``prod(shape) * itemsize``, Python
    integers, so no product wraps) is summed and compared with ``max_bytes``; object dtypes
    (references, variable-length data other than strings), external links (data pulled from
    another file) and soft links are refused, and so are more than :data:`MAX_HDF5_OBJECTS`
    objects (hard links counted once per path: a cycle or a diamond cannot multiply the work
    past it) or groups nested deeper than :data:`MAX_HDF5_DEPTH`.

    Args:
        path: the file. what: what it should be, for the message (``"netx file"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, too many objects, too deep, a link, a dataset of a type
            a network file does not hold, or declared data over ``max_bytes`` (the message
            names the file and the object).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable HDF5 {what} ({str(exc)[:120]})") from None
    try:
        with f:
            problem = _walk_hdf5(f, what, max_bytes)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: malformed HDF5 {what} ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if problem:
        raise ValueError(f"{path}: {problem}; not a {what} rewire wrote?")


def _walk_hdf5(root, what: str, max_bytes: int) -> str | None:
    """The first problem of :func:`check_hdf5` in the open file ``root``, or None."""
    import math

    import h5py

    total, count = 0, 0
    stack = [(root, "", 0)]
    while stack:
        group, prefix, depth = stack.pop()
        for name in group:
            full = f"{prefix}{name}"
            count += 1
            if count > MAX_HDF5_OBJECTS:
                return f"holds more than {MAX_HDF5_OBJECTS:,} groups and datasets"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                return (f"{full!r} is an external link to {link.filename!r}:{link.path!r}; a "
                        f"{what} must hold its own data")
            if isinstance(link, h5py.SoftLink):
                return f"{full!r} is a soft link to {link.path!r}, which a {what} does not hold"
            obj = group[name]
            if isinstance(obj, h5py.Group):
                if depth + 1 > MAX_HDF5_DEPTH:
                    return (f"nests groups deeper than {MAX_HDF5_DEPTH} levels (at "
                            f"{full[:80]!r}...)")
                stack.append((obj, full + "/", depth + 1))
                continue
            if not isinstance(obj, h5py.Dataset):
                return f"{full!r} is a {type(obj).__name__}, which a {what} does not hold"
            dt = obj.dtype
            if dt.kind not in "biufcSUO" or (dt.kind == "O" and h5py.check_string_dtype(dt)
                                                is None):
                return f"dataset {full!r} has type {dt}, which a {what} does not hold"
            shape = obj.shape or ()
            total += math.prod(shape) * max(dt.itemsize, 1)
            if total > max_bytes:
                return (f"declares {total:,} bytes of data by dataset {full!r} (shape "
                        f"{shape}), more than the {max_bytes:,} a {what} may hold")
    return None


def write_csv(target: str | Path, rows: list[dict], fieldnames: list[str]) -> Path:
    """Write ``rows`` (dicts keyed by ``fieldnames``) as a CSV file with a header row,
    atomically (:func:`write_text`); return the path."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    return write_text(target, buf.getvalue())
