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


def check_hdf5(path: str | Path, what: str, max_bytes: int = MAX_HDF5_BYTES) -> None:
    """Check an HDF5 file's declared structure before a reader loads it.

    Opens ``path`` with h5py and walks it without reading data: every dataset's declared
    size (``prod(shape) * itemsize``, Python integers, so no product wraps) is summed and
    compared with ``max_bytes``; object dtypes (references, variable-length data other than
    strings) are refused.

    Args:
        path: the file. what: what it should be, for the message (``"netx file"``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5 file, more than :data:`MAX_HDF5_OBJECTS` objects, a dataset
            of a type a network file does not hold, or declared data over ``max_bytes``
            (the message names the file and the dataset).
    """
    import math

    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable HDF5 {what} ({str(exc)[:120]})") from None
    total, count, problem = 0, 0, []

    def visit(name, obj):
        nonlocal total, count
        count += 1
        if count > MAX_HDF5_OBJECTS:
            problem.append(f"holds more than {MAX_HDF5_OBJECTS:,} groups and datasets")
            return True
        if isinstance(obj, h5py.Dataset):
            dt = obj.dtype
            if dt.kind not in "biufcSUO" or (dt.kind == "O" and h5py.check_string_dtype(dt)
                                                is None):
                problem.append(f"dataset {name!r} has type {dt}, which a {what} does not hold")
                return True
            shape = obj.shape or ()
            total += math.prod(shape) * max(dt.itemsize, 1)
            if total > max_bytes:
                problem.append(f"declares {total:,} bytes of data by dataset {name!r} "
                               f"(shape {shape}), more than the {max_bytes:,} a {what} may hold")
                return True
        return None

    try:
        with f:
            f.visititems(visit)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: malformed HDF5 {what} ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if problem:
        raise ValueError(f"{path}: {problem[0]}; not a {what} rewire wrote?")


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
