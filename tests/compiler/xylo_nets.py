"""Small BitshiftLIF networks for the Xylo compiler's tests (tests/compiler/test_xylo*.py,
tests/hw_profiles/test_xylo*.py)."""

from __future__ import annotations

import numpy as np

from rewire.hw_profiles.profile import load_profile
from rewire.ir.network import Network
from rewire.ir.nodes import BitshiftLIF, Dense, RecurrentDense

XYLO = load_profile("xylo")


def hidden(dash_syn=2, dash_mem=3, v_th=1.0, max_spikes=31):
    """A hidden-layer BitshiftLIF (31 spikes per step, as the chip's)."""
    return BitshiftLIF(dash_syn=dash_syn, dash_mem=dash_mem, v_th=v_th, max_spikes=max_spikes)


def readout(dash_syn=2, dash_mem=3, v_th=1.0, max_spikes=1):
    """A readout BitshiftLIF (one spike per step)."""
    return BitshiftLIF(dash_syn=dash_syn, dash_mem=dash_mem, v_th=v_th, max_spikes=max_spikes)


def chain(sizes, seed=0, scale=0.3, steps=8, weights=None, recurrent=(), neurons=None,
          encoding="current"):
    """A chain ``sizes = (n_in, h1, ..., n_out)`` of dense BitshiftLIF layers.

    Args:
        weights: per layer the float ``(out, in)`` weights (default: normal * ``scale``).
        recurrent: indices of layers made ``RecurrentDense`` (their recurrent weights normal
            * ``scale``).
        neurons: per layer the neuron node (default: :func:`hidden`, then :func:`readout`).
    """
    rng = np.random.default_rng(seed)
    nodes = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = (rng.normal(size=(n_out, n_in)) * scale if weights is None else weights[k])
        w = np.asarray(w, np.float32)
        if k in recurrent:
            rec = (rng.normal(size=(n_out, n_out)) * scale).astype(np.float32)
            nodes.append(RecurrentDense(w, rec))
        else:
            nodes.append(Dense(w))
        last = k == len(sizes) - 2
        nodes.append(neurons[k] if neurons else (readout() if last else hidden()))
    return Network(tuple(nodes), input_shape=(sizes[0],), steps=steps, encoding=encoding,
                   input_gain=1.0)
