"""Checks of values that come from outside rewire: run options (``steps``, ``encoding``,
``input_gain``) and the arrays of a saved dict (``{"dtype", "shape", "data"}``).

Each check refuses, never coerces: ``steps=2.5`` is an error, not 2; ``True`` is not 1; a
value of ``10**9`` in an ``int16`` array is an error, not numpy's wrap to ``-13824``. The
error is a ``TypeError`` (wrong type) or ``ValueError`` (out of range) naming the field.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["MAX_STEPS", "ENCODINGS", "check_steps", "check_encoding", "check_gain",
           "check_int", "array_from_dict", "MALFORMED"]

#: Most time steps one sample may be presented for (10**6 steps = 1000 s at 1 ms).
MAX_STEPS = 1_000_000
#: The input encodings of :class:`rewire.ir.network.Network`.
ENCODINGS = ("current", "rate")
#: What a malformed dict raises inside the builders; readers turn these into ``ValueError``.
MALFORMED = (KeyError, TypeError, AttributeError, OverflowError, IndexError, ValueError)
_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
           "uint16", "uint32", "uint64")


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an ``int`` in ``[lo, hi]``.

    Raises:
        TypeError: not an integer (``bool``, ``float`` and strings included), named.
        ValueError: outside ``[lo, hi]``, named.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer in [{lo}, {hi}], got "
                        f"{type(value).__name__} {value!r}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def check_steps(value, name: str = "steps") -> int:
    """A run's time steps: an integer in ``[1, MAX_STEPS]`` (errors as :func:`check_int`)."""
    return check_int(name, value, 1, MAX_STEPS)


def check_encoding(value, name: str = "encoding") -> str:
    """One of :data:`ENCODINGS`.

    Raises:
        TypeError: not a string. ValueError: another string (``""`` included).
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {ENCODINGS}, got {type(value).__name__} "
                        f"{value!r}")
    if value not in ENCODINGS:
        raise ValueError(f"{name} must be one of {ENCODINGS}, got {value!r}")
    return value


def check_gain(value, name: str = "input_gain") -> float:
    """A finite real number > 0 (not a ``bool`` or a string).

    Raises:
        TypeError: not a real number. ValueError: not finite or <= 0.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number > 0, got {type(value).__name__} "
                        f"{value!r}")
    if not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def array_from_dict(value: dict, name: str) -> np.ndarray:
    """The array a dict ``{"dtype", "shape", "data"}`` stands for (``data`` flat, row-major),
    every entry checked to fit ``dtype`` before the conversion (numpy would wrap ``10**9`` to
    ``-13824`` in ``int16``).

    Raises:
        ValueError: an unknown ``dtype``, a ``shape`` that is not a list of integers >= 0 or
            does not match the number of entries, entries that are not numbers, not finite,
            not integers (integer dtypes) or outside the dtype's range; named by ``name``.
    """
    if set(value) - {"dtype", "shape", "data"} or not {"dtype", "shape", "data"} <= set(value):
        raise ValueError(f"{name}: an array must be a dict with exactly 'dtype', 'shape' and "
                         f"'data', got keys {sorted(map(str, value))}")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if dtype not in _DTYPES:
        raise ValueError(f"{name}.dtype must be one of {list(_DTYPES)}, got {dtype!r}")
    if not isinstance(shape, (list, tuple)) or any(
            isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 0 for s in shape):
        raise ValueError(f"{name}.shape must be a list of integers >= 0, got {shape!r}")
    if not isinstance(data, (list, tuple)):
        raise ValueError(f"{name}.data must be a flat list of numbers, got "
                         f"{type(data).__name__}")
    if math.prod(int(s) for s in shape) != len(data):
        raise ValueError(f"{name}: shape {list(shape)} holds {math.prod(shape)} entries, data "
                         f"has {len(data)}")
    if any(isinstance(x, bool) or not isinstance(x, numbers.Real) for x in data):
        raise ValueError(f"{name}.data must hold numbers only (no strings, lists, booleans or "
                         f"null)")
    exact = np.asarray(data, dtype=np.float64)
    if exact.size and not np.all(np.isfinite(exact)):
        raise ValueError(f"{name}: {int(np.count_nonzero(~np.isfinite(exact)))} entries are "
                         f"NaN or infinite (or too large for a float)")
    kind = np.dtype(dtype)
    if kind.kind in "iu" and exact.size:
        info = np.iinfo(kind)
        bad = (exact != np.round(exact)) | (exact < info.min) | (exact > info.max)
        if np.any(bad):
            first = data[int(np.flatnonzero(bad)[0])]
            raise ValueError(f"{name}: {int(np.count_nonzero(bad))} entries are not integers "
                             f"in [{info.min}, {info.max}] ({dtype}), e.g. {first!r}")
        out = np.asarray([int(x) for x in data], dtype=kind) if kind.itemsize == 8 else \
            exact.astype(kind)
    else:
        if kind.kind == "f" and exact.size and np.any(np.abs(exact) > np.finfo(kind).max):
            raise ValueError(f"{name}: entries beyond the largest {dtype}")
        out = exact.astype(kind)
    return out.reshape([int(s) for s in shape])
