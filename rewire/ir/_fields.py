"""Field checks shared by the IR's node dataclasses (:mod:`rewire.ir.nodes`,
:mod:`rewire.ir.neurons`): each raises ``ValueError`` naming the field."""

from __future__ import annotations

import math

import numpy as np


def _finite(name: str, value: float, positive: bool = False, nonneg: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonneg and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _weights(name: str, value, ndim: int) -> np.ndarray:
    w = np.asarray(value)
    if w.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {w.shape}")
    if w.size and not np.all(np.isfinite(w)):
        raise ValueError(f"{name}: {int(np.count_nonzero(~np.isfinite(w)))} entries are NaN "
                         f"or infinite")
    w = np.array(w, dtype=np.float32)
    w.setflags(write=False)
    return w


def _pair(name: str, value) -> tuple[int, int]:
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(p) != p for p in pair):
        raise ValueError(f"{name} must be an integer or a pair of integers, got {value!r}")
    return int(pair[0]), int(pair[1])


def _array_field(value) -> list:
    return np.asarray(value).tolist()
