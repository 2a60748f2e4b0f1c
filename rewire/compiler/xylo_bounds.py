"""State bounds of the Xylo compiler (:mod:`rewire.compiler.xylo`): how far one step's
synaptic input, ``I`` and ``V`` go in the float model and in the integer model on calibration
inputs, and the worst case of one step without them.

Every partial sum of one step's synaptic input, in any order of accumulation, lies between
``min(I, 0) + negative`` and ``max(I, 0) + positive`` (the input events and spikes are
``>= 0``; :func:`split`): keeping both within int16 makes the result independent of the
order in which the chip adds the synapses (issue 24: "saturation inside one step depends on
the order of accumulation").
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from rewire.compiler.simulate import NumpyOps
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir import dynamics
from rewire.ir import nodes as ir_nodes
from rewire.ir.network import Network

__all__ = ["split", "activation_peaks", "float_peaks", "state_peaks", "payload_max"]


def payload_max(k: int, layer, layers, first: int) -> np.ndarray:
    """The most events one input column of layer ``k`` carries per step (its recurrent
    columns after its input ones)."""
    width = layer.synapse.weight.shape[1]
    p = np.full(width, float(first if k == 0 else layers[k - 1].neuron.max_spikes))
    if isinstance(layer.synapse, ir_nodes.RecurrentDense):
        p = np.concatenate([p, np.full(layer.synapse.weight_rec.shape[1],
                                       float(layer.neuron.max_spikes))])
    return p


def activation_peaks(network: Network, layers, first: int) -> list[int]:
    """Per layer the worst-case integer synaptic input of one step, ``sum_j |w_int| p_j``."""
    peaks = []
    for k, (ir_layer, layer) in enumerate(zip(network.layers, layers)):
        w = np.abs(layer.weight_int).astype(np.int64)
        if layer.recurrent:
            w = np.hstack([w, np.abs(layer.weight_rec_int).astype(np.int64)])
        p = payload_max(k, ir_layer, network.layers, first).astype(np.int64)
        peaks.append(int((w @ p).max(initial=0)))
    return peaks


def split(s, w, rec_z=None, w_rec=None):
    """``(positive, negative)`` parts of the synaptic input ``W s (+ W_rec z)`` (torch or
    numpy): every partial sum of one step, in any order of accumulation, lies between
    ``min(I, 0) + negative`` and ``max(I, 0) + positive`` (the spikes and events are >= 0)."""
    parts = []
    for sign in (1, -1):
        a = s @ (w * (sign * w > 0)).T
        if w_rec is not None:
            a = a + rec_z @ (w_rec * (sign * w_rec > 0)).T
        parts.append(a)
    return parts


def float_peaks(network: Network, x: np.ndarray) -> list[float]:
    """Per layer the largest ``|I + a|`` over every order of summing ``a`` (:func:`split`)
    and ``|v|`` (before its spikes) of the float model on inputs ``x`` ``(B, n_in)``."""
    inputs = dynamics.encode(network, torch.as_tensor(x, dtype=torch.float32))
    states = [dynamics.initial_state(l.neuron, l.out_shape, len(x)) for l in network.layers]
    peaks = [0.0] * len(network.layers)
    w = [torch.tensor(l.synapse.weight) for l in network.layers]
    w_rec = [torch.tensor(l.synapse.weight_rec)
             if isinstance(l.synapse, ir_nodes.RecurrentDense) else None
             for l in network.layers]
    with torch.no_grad():
        for x_t in inputs:
            s = x_t
            for k, layer in enumerate(network.layers):
                terms = [dynamics.synaptic_input(layer.synapse, s, layer.in_shape)]
                if w_rec[k] is not None:
                    terms.append(F.linear(states[k].z, w_rec[k]))
                pos, neg = split(s.reshape(len(s), -1), w[k], states[k].z, w_rec[k])
                i = states[k].i
                v, _ = dynamics.bitshift_subthreshold(layer.neuron, terms, i, states[k].v)
                peaks[k] = max(peaks[k], float((i.clamp(min=0) + pos).max()),
                               float(-(i.clamp(max=0) + neg).min()), float(v.abs().max()))
                s, states[k] = dynamics.neuron_step(layer.neuron, terms, states[k])
    return peaks


class _PeakOps(NumpyOps):
    """:class:`NumpyOps` that records how far a saturated value went (``|x|``, ``-x - 1``
    for negative ``x``, so that ``-32768`` counts as in range)."""

    def __init__(self, nfmt):
        super().__init__(nfmt)
        self.peak = 0

    def saturate(self, x):
        if x.size:
            self.peak = max(self.peak, int(x.max()), int(-x.min() - 1))
        return super().saturate(x)


def state_peaks(layers, profile: HardwareProfile, payload: np.ndarray, steps: int) -> list[int]:
    """Per layer the largest ``|I + a|`` (every order of summing ``a``: :func:`split`) and
    ``|V|`` before saturation of the integer model on
    ``payload`` ``(B, n_in)`` held for ``steps`` steps, over the chip's timing (a later layer
    gets the spikes of the step before) and the undelayed one."""
    peaks = [0] * len(layers)
    for late in (False, True):
        ops = [_PeakOps(profile.neuron) for _ in layers]
        u = [np.zeros((len(payload), l.shape[0]), np.int64) for l in layers]
        v = [np.zeros_like(x) for x in u]
        z = [np.zeros_like(x) for x in u]
        p = payload.astype(np.int64)
        for _ in range(steps):
            prev = list(z)
            for k, layer in enumerate(layers):
                s = p if k == 0 else (prev[k - 1] if late else z[k - 1])
                a = s @ layer.weight_int.astype(np.int64).T
                w_rec = layer.weight_rec_int.astype(np.int64) if layer.recurrent else None
                if layer.recurrent:
                    a = a + prev[k] @ w_rec.T
                pos, neg = split(s, layer.weight_int.astype(np.int64), prev[k], w_rec)
                ops[k].peak = max(ops[k].peak, int((np.maximum(u[k], 0) + pos).max()),
                                  int(-(np.minimum(u[k], 0) + neg).min()) - 1)
                u[k], v[k], _, n = layer.chip.int_step(ops[k], u[k], v[k], a)
                z[k] = n.astype(np.int64)
        peaks = [max(a, o.peak) for a, o in zip(peaks, ops)]
    return peaks
