"""Small Xylo networks built directly as compiled networks (no training, no compiler): the
test nets of tests/export/test_xylo*.py. Each layer is a ``CompiledDense`` with Xylo's chip
neuron (:class:`rewire.ir.chip_bitshift.CompiledBitshiftLIF`), integer weights ``m << shift``
with ``m`` int8 and one shift per Xylo matrix (input, hidden-to-hidden, readout)."""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.compiler.mapping import layer_connectivity, map_layers
from rewire.hw_profiles.profile import load_profile
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledDense, CompiledRecurrentDense
from rewire.ir.neurons import BitshiftLIF

XYLO = load_profile("xylo")


def layer(name: str, w_int: np.ndarray, dash_syn: int, dash_mem: int, threshold: int,
          max_spikes: int, w_rec: np.ndarray | None = None) -> CompiledDense:
    """One dense layer of ``w_int`` ``(out, in)`` with Xylo neurons (recurrent with
    ``w_rec`` ``(out, out)``)."""
    neuron = BitshiftLIF(dash_syn=dash_syn, dash_mem=dash_mem, v_th=float(threshold),
                         max_spikes=max_spikes)
    chip = CompiledBitshiftLIF(neuron, dash_syn, dash_mem, int(threshold))
    w_int = np.asarray(w_int, dtype=np.int32)
    fields = dict(name=name, weight=w_int.astype(np.float32), weight_int=w_int, scale=1.0,
                  input_scale=1.0, scale_limited_by="weight bits", chip=chip)
    if w_rec is None:
        return CompiledDense(**fields)
    w_rec = np.asarray(w_rec, dtype=np.int32)
    return CompiledRecurrentDense(**fields, weight_rec=w_rec.astype(np.float32),
                                  weight_rec_int=w_rec)


def network(layers, steps: int = 8, input_max_value: int = 15) -> CompiledNetwork:
    """A compiled network of ``layers`` on the xylo profile (current encoding)."""
    layers = tuple(layers)
    conns = [layer_connectivity(l) for l in layers]  # the first layer's inputs are the
    conns[0] = dataclasses.replace(conns[0], n_in=layers[0].shape[1])  # channels only
    return CompiledNetwork(layers=layers, steps=steps, encoding="current", input_gain=1.0,
                           input_max_value=input_max_value, profile=XYLO,
                           mapping=map_layers(conns, XYLO), source="test")


def random_network(rng: np.random.Generator, sizes, shifts, density: float = 0.5,
                   steps: int = 8, recurrent: bool = False) -> CompiledNetwork:
    """A random chain ``sizes`` (input first): int8 weights times ``2**shift`` (``shifts``:
    input, hidden-to-hidden, readout), random dashes 0..15 and thresholds; hidden layers emit
    up to 31 spikes per step, the readout 1; ``recurrent``: every hidden layer has random
    recurrent weights too (on the hidden-to-hidden shift)."""
    layers = []
    last = len(sizes) - 2
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shift = shifts[0] if k == 0 else shifts[2] if k == last else shifts[1]
        m = rng.integers(-128, 128, (n_out, n_in)) * (rng.random((n_out, n_in)) < density)
        if not m.any():  # every layer passes something on
            m[0, 0] = int(rng.integers(1, 128))
        threshold = int(np.exp(rng.uniform(0, np.log(32767))))  # 1..32767, log-uniform
        rec = None
        if recurrent and k < last:
            rec = (rng.integers(-128, 128, (n_out, n_out))
                   * (rng.random((n_out, n_out)) < density)) << shifts[1]
        layers.append(layer(f"fc{k + 1}", m << shift, int(rng.integers(0, 16)),
                            int(rng.integers(0, 16)), threshold, 1 if k == last else 31, rec))
    return network(layers, steps)
