"""Read Planetoid's ``raw/ind.<name>.*`` files without running code from them.

The Planetoid files (Yang et al., ICML 2016, as redistributed with Kipf & Welling's GCN code)
are Python pickles: ``x``, ``tx``, ``allx`` scipy CSR matrices, ``y``, ``ty``, ``ally`` numpy
arrays, ``graph`` a ``defaultdict(list)``; ``test.index`` is text, one node index a line.
``pickle.load`` (what PyG's reader calls) runs any callable a file names, so a planted file
can execute code. :func:`read_raw` loads them with :class:`RestrictedUnpickler`, which
resolves only the globals this format needs, each to a stand-in that builds plain data
(numeric arrays, a dict of lists) and refuses sizes the file cannot hold; the result is
then checked for the structure :func:`torch_geometric.io.read_planetoid_data` relies on
(row counts, node ids, test indices), so PyG never sees anything but validated arrays.

Trusted inputs: none of these files. What PyG reads afterwards is what :func:`write_clean`
wrote from the validated arrays into rewire's own private folder.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from rewire.errors import DataError

__all__ = ["MAX_FEATURE_ENTRIES", "MAX_RAW_BYTES", "PlanetoidFileError", "RestrictedUnpickler",
           "read_raw", "restricted_loads", "write_clean"]

PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
#: Largest raw file read (bytes): 256 MiB, over 400x CiteSeer's largest file (595 kB).
MAX_RAW_BYTES = 1 << 28
#: Largest ``rows x columns`` of a feature or label matrix: PyG turns them dense (float64),
#: so 2**26 entries cap that at 512 MiB; CiteSeer, the largest graph rewire reads, has
#: 3,327 x 3,703 = 12.3 M.
MAX_FEATURE_ENTRIES = 1 << 26
#: dtype kinds an array may have: booleans, signed and unsigned integers, floats.
NUMERIC_KINDS = "biuf"


class PlanetoidFileError(DataError):
    """A Planetoid raw file names a global outside the format, or its content is malformed."""


class _CSRState:
    """Stand-in for ``scipy.sparse.csr_matrix`` while unpickling: keeps the state it is given
    (``data``, ``indices``, ``indptr``, ``_shape``) so that a real matrix is built from it
    only after the arrays are checked."""

    def __init__(self, *args):
        if args:
            raise pickle.UnpicklingError("csr_matrix takes no constructor arguments in a "
                                         "Planetoid file")
        self.state: dict = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("csr_matrix state must be a dict")
        self.state = state


def _reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` for plain numeric arrays whose declared size
    stays within :data:`MAX_FEATURE_ENTRIES` (numpy's own pickles declare shape ``(0,)``)."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("only numpy.ndarray may be reconstructed")
    dims = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    if not all(isinstance(d, int) and 0 <= d for d in dims) or len(dims) > 2 \
            or int(np.prod(dims, dtype=object)) > MAX_FEATURE_ENTRIES:
        raise pickle.UnpicklingError(f"array shape {str(dims)[:80]} is not allowed")
    return np.ndarray.__new__(np.ndarray, dims, _dtype(dtype))


def _dtype(spec, align=False, copy=True):
    """``numpy.dtype`` restricted to numeric kinds of at most 16 bytes (always a fresh copy,
    so a ``__setstate__`` in the file cannot change numpy's shared dtype objects)."""
    if isinstance(spec, bytes) and len(spec) <= 8:
        spec = spec.decode("latin1")
    if not isinstance(spec, (str, np.dtype)):
        raise pickle.UnpicklingError(f"dtype spec {type(spec).__name__} is not allowed")
    try:
        dt = np.dtype(spec, align=bool(align), copy=True)
    except (TypeError, ValueError) as exc:
        raise pickle.UnpicklingError(f"bad dtype {spec!r}: {exc}") from None
    if dt.kind not in NUMERIC_KINDS or dt.itemsize > 16 or dt.fields or dt.subdtype:
        raise pickle.UnpicklingError(f"dtype {dt} is not a plain numeric type")
    return dt


def _defaultdict(factory=None):
    """``collections.defaultdict(list)`` as a plain dict (the ``graph`` file)."""
    if factory is not list:
        raise pickle.UnpicklingError("graph must be a defaultdict(list)")
    return {}


def _latin1(text, encoding="latin1"):
    """``_codecs.encode(text, "latin1")``: how Python 3's protocol-2 pickles store bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed for latin-1 text only")
    return text.encode("latin1")


#: ``numpy.ndarray`` as the file names it: only an argument of :func:`_reconstruct` (calling
#: it directly would allocate any shape the file declares).
_NDARRAY = object()

#: (module, name) -> what it resolves to: only what the Planetoid format uses.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _dtype,
    ("scipy.sparse.csr", "csr_matrix"): _CSRState,
    ("scipy.sparse._csr", "csr_matrix"): _CSRState,
    ("scipy.sparse", "csr_matrix"): _CSRState,
    ("collections", "defaultdict"): _defaultdict,
    ("builtins", "list"): list,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "list"): list,  # Python 2 pickles (the original files)
}


class RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - see the docstring
    """A :class:`pickle.Unpickler` that resolves only the globals in :data:`ALLOWED`
    (numeric numpy arrays, scipy CSR state, ``defaultdict(list)``); any other global, a
    persistent id or an extension code raises :class:`pickle.UnpicklingError` before
    anything is called.

    It extends the pure-Python unpickler (``pickle._Unpickler``), not the C one: the C
    unpickler grows its memo table to whatever index a ``LONG_BINPUT`` names and zeroes it,
    so a damaged 4-byte index costs tens of GB; the Python one keeps the memo in a dict
    and reads declared lengths only as far as the data goes."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a "
                                         f"Planetoid file") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a Planetoid file")


def restricted_loads(raw: bytes) -> Any:
    """Unpickle ``raw`` with :class:`RestrictedUnpickler` (Python 2 strings as latin-1).

    Raises:
        pickle.UnpicklingError: a global outside the format, or a malformed pickle.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except pickle.UnpicklingError:
        raise
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - any malformed pickle
        raise pickle.UnpicklingError(f"{type(exc).__name__}: {exc}") from None


def _array(obj: Any, path: Path, ndim: int) -> np.ndarray:
    if type(obj) is not np.ndarray or obj.dtype.kind not in NUMERIC_KINDS or obj.ndim != ndim:
        raise PlanetoidFileError(f"{path}: expected a {ndim}-D numeric numpy array, got "
                                 f"{type(obj).__name__} {getattr(obj, 'shape', '')}")
    if obj.dtype.kind == "f" and not np.all(np.isfinite(obj)):
        raise PlanetoidFileError(f"{path}: holds NaN or infinite values")
    return obj


def _matrix(obj: Any, path: Path) -> sp.csr_matrix:
    """A checked CSR matrix (or a 2-D array, which some copies of the files hold)."""
    if type(obj) is np.ndarray:
        arr = _array(obj, path, 2)
        return sp.csr_matrix(arr.astype(np.float32))
    if not isinstance(obj, _CSRState):
        raise PlanetoidFileError(f"{path}: expected a scipy CSR matrix, got {type(obj).__name__}")
    st = obj.state
    shape = st.get("_shape")
    if not (isinstance(shape, tuple) and len(shape) == 2
            and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise PlanetoidFileError(f"{path}: CSR matrix has no valid shape ({str(shape)[:80]})")
    if shape[0] * shape[1] > MAX_FEATURE_ENTRIES:
        raise PlanetoidFileError(f"{path}: a {shape[0]} x {shape[1]} matrix exceeds "
                                 f"{MAX_FEATURE_ENTRIES:,} entries (PyG stores it dense)")
    arrays = []
    for key in ("data", "indices", "indptr"):
        arrays.append(_array(st.get(key), path, 1))
    data, indices, indptr = arrays
    if indices.dtype.kind not in "iu" or indptr.dtype.kind not in "iu":
        raise PlanetoidFileError(f"{path}: CSR index arrays must be integers")
    try:
        mat = sp.csr_matrix((data.astype(np.float32), indices, indptr), shape=shape)
        mat.check_format(full_check=True)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise PlanetoidFileError(f"{path}: malformed CSR matrix ({exc})") from None
    return mat


def _graph(obj: Any, path: Path, nodes: int, size: int) -> dict[int, list[int]]:
    """The checked adjacency lists. A pickle can name one list for every node (its memo), so
    a small file could stand for billions of entries; every entry a file really holds costs
    it at least 2 bytes (an opcode and its operand), so more than ``size`` (the file's bytes)
    entries in all are refused before any list is read or copied."""
    if not isinstance(obj, dict):
        raise PlanetoidFileError(f"{path}: expected a dict of adjacency lists, got "
                                 f"{type(obj).__name__}")
    if len(obj) > nodes or any(not isinstance(v, list) for v in obj.values()):
        raise PlanetoidFileError(f"{path}: expected at most {nodes} adjacency lists")
    total = sum(len(v) for v in obj.values())
    if total > size:
        raise PlanetoidFileError(f"{path}: its lists hold {total:,} entries in all, more than "
                                 f"its {size:,} bytes can hold (one list shared between "
                                 f"nodes?); use the original Planetoid file")
    out = {}
    for key, value in obj.items():
        if type(key) is not int or not 0 <= key < nodes or not isinstance(value, list) \
                or any(type(v) is not int or not 0 <= v < nodes for v in value):
            raise PlanetoidFileError(f"{path}: node {str(key)[:40]} or one of its neighbours "
                                     f"is not a node index in [0, {nodes})")
        out[key] = list(value)
    return out


def _test_index(raw: bytes, path: Path) -> np.ndarray:
    try:
        values = [int(line) for line in raw.decode("ascii").split()]
    except (UnicodeDecodeError, ValueError):
        raise PlanetoidFileError(f"{path}: must hold one non-negative integer a line") from None
    if not values or min(values) < 0 or max(values) >= 2**31 or len(set(values)) != len(values):
        raise PlanetoidFileError(f"{path}: must list distinct node indices in [0, 2**31)")
    return np.array(values, dtype=np.int64)


def read_raw(raw_dir: str | Path, key: str) -> dict[str, Any]:
    """Load and check ``raw_dir/ind.<key>.*`` without running code from them.

    Returns:
        ``{"x", "tx", "allx": csr_matrix (rows, F) float32; "y", "ty", "ally": ndarray
        (rows, C); "graph": dict[int, list[int]]; "test.index": ndarray int64}``.

    Raises:
        PlanetoidFileError: a file larger than :data:`MAX_RAW_BYTES`, a global outside the
            format (the message names it and the file), adjacency lists with more entries
            than the graph file's bytes, or content that does not fit together (row counts,
            feature widths, node ids, test indices).
    """
    raw_dir = Path(raw_dir)
    out: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    for part in PARTS:
        path = raw_dir / f"ind.{key}.{part}"
        try:
            size = path.stat().st_size
            if size > MAX_RAW_BYTES:
                raise PlanetoidFileError(f"{path}: {size:,} bytes, more than the "
                                         f"{MAX_RAW_BYTES:,} a Planetoid file may have")
            raw = path.read_bytes()
            sizes[part] = len(raw)
        except OSError as exc:
            raise PlanetoidFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if part == "test.index":
            out[part] = _test_index(raw, path)
            continue
        try:
            obj = restricted_loads(raw)
        except pickle.UnpicklingError as exc:
            raise PlanetoidFileError(f"{path}: refused ({exc}); Planetoid files may hold only "
                                     f"numpy arrays, scipy CSR matrices and a dict of lists"
                                     ) from None
        if part in ("x", "tx", "allx"):
            out[part] = _matrix(obj, path)
        elif part == "graph":
            out[part] = obj
        else:
            out[part] = _array(obj, path, 2)
    _check_together(raw_dir, key, out, sizes["graph"])
    return out


def _check_together(raw_dir: Path, key: str, d: dict[str, Any], graph_bytes: int) -> None:
    """The relations PyG's ``read_planetoid_data`` indexes by (see its source)."""
    where = f"{raw_dir}/ind.{key}.*"
    width = {d[p].shape[1] for p in ("x", "tx", "allx")}
    classes = {d[p].shape[1] for p in ("y", "ty", "ally")}
    if len(width) != 1 or len(classes) != 1 or 0 in width or 0 in classes:
        raise PlanetoidFileError(f"{where}: x, tx, allx must have one feature width and y, ty, "
                                 f"ally one class count (got {sorted(width)}, {sorted(classes)})")
    for a, b in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        if d[a].shape[0] != d[b].shape[0]:
            raise PlanetoidFileError(f"{where}: {a} has {d[a].shape[0]} rows but {b} has "
                                     f"{d[b].shape[0]}")
    n_all, n_test, n_train = d["allx"].shape[0], d["tx"].shape[0], d["x"].shape[0]
    index = d["test.index"]
    if len(index) != n_test:
        raise PlanetoidFileError(f"{where}: test.index lists {len(index)} nodes, tx has "
                                 f"{n_test} rows")
    span = int(index.max() - index.min()) + 1
    # Cora: the test nodes follow allx; CiteSeer: with gaps (isolated nodes), at most 2x
    if key == "citeseer":
        ok = int(index.min()) == n_all and span <= 2 * n_test
        nodes = n_all + span
    else:
        ok = int(index.min()) >= n_all and int(index.max()) < n_all + n_test
        nodes = n_all + n_test
    if not ok:
        raise PlanetoidFileError(f"{where}: test.index values {int(index.min())}..."
                                 f"{int(index.max())} do not follow the {n_all} rows of allx")
    if nodes * d["tx"].shape[1] > MAX_FEATURE_ENTRIES:
        raise PlanetoidFileError(f"{where}: {nodes} nodes x {d['tx'].shape[1]} features exceed "
                                 f"{MAX_FEATURE_ENTRIES:,} entries")
    if n_train + 500 > nodes:
        raise PlanetoidFileError(f"{where}: {n_train} training and 500 validation nodes need "
                                 f"more than the {nodes} nodes")
    d["graph"] = _graph(d["graph"], raw_dir / f"ind.{key}.graph", nodes, graph_bytes)


def write_clean(data: dict[str, Any], raw_dir: str | Path, key: str) -> None:
    """Write validated arrays from :func:`read_raw` as ``raw_dir/ind.<key>.*`` for PyG."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for part in PARTS:
        path = raw_dir / f"ind.{key}.{part}"
        if part == "test.index":
            path.write_text("".join(f"{int(i)}\n" for i in data[part]), encoding="ascii")
        else:
            with open(path, "wb") as f:
                pickle.dump(data[part], f, protocol=4)
