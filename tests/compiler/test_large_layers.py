"""Large layers compile in time and memory linear in the synapses (docs/compiler.md, "Large
layers"): the row-block arithmetic gives the same sums bit for bit as a left-to-right pass over
the whole matrix, and the counted first fit places neurons exactly as first fit core by core."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewire.compiler import _rows
from rewire.compiler.mapping import LayerConnectivity, map_layers
from rewire.compiler.packing import Packer
from rewire.hw_profiles.profile import load_profile


def _left_to_right(full: np.ndarray, col_max: np.ndarray) -> float:
    """The reference: per-row sums over the connected synapses in column order (bincount)."""
    nz = np.flatnonzero(full)
    if not nz.size:
        return 0.0
    rows, cols = nz // full.shape[1], nz % full.shape[1]
    vals = full.reshape(-1)[nz]
    return float(np.bincount(rows, np.abs(vals) * col_max[cols], full.shape[0]).max())


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), n_out=st.integers(1, 40), n_in=st.integers(1, 300),
       rec=st.booleans(), density=st.sampled_from([0.0, 0.1, 1.0]),
       payload=st.sampled_from([1, 16, 255]), block=st.sampled_from([1, 7, 1 << 16]))
def test_max_row_sum_is_the_left_to_right_sum(seed, n_out, n_in, rec, density, payload, block):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n_out, n_in)) * (rng.random((n_out, n_in)) < density)
         ).astype(np.float32)
    w_rec = rng.standard_normal((n_out, n_out)).astype(np.float32) if rec else None
    div = 0.37
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_rows, "BLOCK", block)
        rows = _rows.RowBlocks(w, w_rec)
    full = w.astype(np.float64) if w_rec is None else \
        np.hstack([w.astype(np.float64), w_rec.astype(np.float64) / div])
    col_max = np.full(full.shape[1], float(payload))
    col_max[n_in:] = 1.0
    assert rows.max_row_sum(col_max, div) == _left_to_right(full, col_max)
    assert rows.wmax(div) == float(np.abs(full).max())


def test_integer_row_sums_are_exact():
    rng = np.random.default_rng(0)
    q = rng.integers(-254, 255, (5, 10_000)).astype(np.float64)
    col_max = np.full(10_000, 255.0)
    want = [sum(abs(int(v)) * 255 for v in row) for row in q]
    assert _rows.int_row_sums(q.copy(), col_max, 254).tolist() == want


def test_counted_first_fit_places_as_core_by_core(monkeypatch):
    """Sparse storage without an axon limit takes the counted path; forcing the core-by-core
    path gives the same placement and usage."""
    prof = load_profile("loihi2")
    prof = dataclasses.replace(prof, limits=dataclasses.replace(
        prof.limits, synapses_per_core=5_000, neurons_per_core=64))
    rng = np.random.default_rng(3)
    layers = [LayerConnectivity.from_mask("fc1", rng.random((300, 200)) < rng.random((300, 1))),
              LayerConnectivity.from_mask("fc2", rng.random((40, 300)) < 0.2)]
    fast = map_layers(layers, prof)
    monkeypatch.setattr(Packer, "_axons_count", lambda self: True)
    slow = map_layers(layers, prof)
    assert fast.cores == slow.cores > 2
    assert all(np.array_equal(a, b) for a, b in zip(fast.placement, slow.placement))
    assert fast.usage == slow.usage
