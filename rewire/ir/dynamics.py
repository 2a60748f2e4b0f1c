r"""Float semantics of the IR, written once: one step of every neuron and synapse node.

These are the equations of :mod:`rewire.ir.nodes` in torch float32, in the order of
operations of Norse 1.1's step functions (``lif_feed_forward_step``, ``lif_step``,
``lif_box_feed_forward_step``, ``iaf_feed_forward_step``, ``li_feed_forward_step``,
``li_box_feed_forward_step``), so that a lowered Norse model and its IR give the same spikes
bit for bit. The compiler's float-vs-integer comparison (:mod:`rewire.compiler.equivalence`),
the float ONNX exporter's tests and the frontends' tests all run :func:`run`.

Example:
    >>> import numpy as np, torch
    >>> from rewire.ir.network import Network
    >>> from rewire.ir.nodes import Dense, IF
    >>> net = Network((Dense(np.full((1, 1), 0.6)), IF()), input_shape=(1,), steps=4)
    >>> run(net, torch.ones(4, 1, 1))[-1].flatten().tolist()   # v: 0.6, 1.2 -> spike, 0.6, ...
    [0.0, 1.0, 0.0, 1.0]
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.nn import functional as F

from rewire.ir import nodes
from rewire.ir.network import Network

__all__ = ["NeuronState", "initial_state", "neuron_step", "weights", "synaptic_input", "encode",
           "run", "bitshift_subthreshold"]


class NeuronState(NamedTuple):
    """State of one layer: ``v`` and ``i`` (zeros where a model has no current), and the
    layer's last output ``z`` (for a recurrent layer's next step)."""

    v: torch.Tensor
    i: torch.Tensor
    z: torch.Tensor


def _f32(value: float) -> torch.Tensor:
    return torch.as_tensor(value, dtype=torch.float32)


def initial_state(neuron, shape: tuple[int, ...], batch: int) -> NeuronState:
    """Rest state: ``v = v_leak`` (0 for IF), ``i = 0``, ``z = 0``; tensors ``(B, *shape)``."""
    v = torch.full((batch, *shape), float(getattr(neuron, "v_leak", 0.0)))
    zeros = torch.zeros((batch, *shape))
    return NeuronState(v, zeros, zeros)


def _plain(neuron) -> bool:
    """Norse's (and Lava's) rule: one spike at ``v > v_th``, ``v <- v_reset`` at once."""
    return (neuron.reset == "set" and not neuron.reset_delay and neuron.max_spikes == 1
            and not neuron.spike_at_threshold and neuron.v_min is None)


def _reset(neuron, v: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    if neuron.reset == "subtract":
        return v - n * _f32(neuron.v_th)
    fired = (n > 0).to(v.dtype)
    return (1 - fired) * v + fired * _f32(neuron.v_reset)


def _spike(neuron, v: torch.Tensor, z_prev: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold and reset: ``(spikes, v)``, spikes a count (0/1 unless ``max_spikes > 1``).

    The order is: the delayed reset of the previous step's spikes (snnTorch 1.0
    ``reset_delay=True``, ``snntorch/_neurons/leaky.py`` and ``synaptic.py``: ``reset =
    H(mem_prev - threshold)`` subtracted after ``beta mem + input``; with ``reset="set"`` the
    new ``v`` is replaced, as ``Synaptic``'s ``reset_mechanism="zero"`` does), the threshold
    test (``v > v_th``; ``v >= v_th`` with ``spike_at_threshold``; ``n = min(floor(v / v_th),
    max_spikes)`` for several spikes per step, as sinabs 3 ``MultiSpike`` and rockpool 3.1
    ``LIFTorch``'s ``StepPWL`` count them), the reset of this step's spikes (``v - n v_th``:
    sinabs ``MembraneSubtract``, rockpool), then the floor ``v_min`` written as sinabs 3's
    ``lif_forward_single`` writes it, ``relu(v - v_min) + v_min`` (the same float32 bits).
    """
    if _plain(neuron):
        z = (v - _f32(neuron.v_th) > 0).to(v.dtype)
        return z, (1 - z) * v + z * _f32(neuron.v_reset)
    if neuron.reset_delay:
        v = _reset(neuron, v, z_prev)
    if neuron.max_spikes > 1:
        # rockpool's order: the count only where v >= v_th (v / v_th may round up to 1.0
        # just below the threshold), clamped at max_spikes
        count = torch.clamp(torch.floor(v / _f32(neuron.v_th)), 0, neuron.max_spikes)
        n = count * (v - _f32(neuron.v_th) >= 0).to(v.dtype)
    elif neuron.spike_at_threshold:
        n = (v - _f32(neuron.v_th) >= 0).to(v.dtype)
    else:
        n = (v - _f32(neuron.v_th) > 0).to(v.dtype)
    if not neuron.reset_delay:
        v = _reset(neuron, v, n)
    if neuron.v_min is not None:
        v = F.relu(v - _f32(neuron.v_min)) + _f32(neuron.v_min)
    return n, v


def neuron_step(neuron, inputs: list[torch.Tensor], state: NeuronState
                ) -> tuple[torch.Tensor, NeuronState]:
    """One step of ``neuron`` for the synaptic input terms ``inputs`` (added left to right:
    ``[W x]``, or ``[W x, W_rec z]`` for a recurrent layer, as Norse's ``lif_step`` does).

    Returns:
        ``(out, state)``: spikes (0/1 float) for spiking neurons, ``v`` for leaky integrators.
    """
    v, i = _SUBTHRESHOLD[type(neuron)](neuron, inputs, state)
    if not neuron.spiking:
        return v, NeuronState(v, i, state.z)
    z, v = _spike(neuron, v, state.z)
    return z, NeuronState(v, i, z)


def _sum(inputs: list[torch.Tensor]) -> torch.Tensor:
    out = inputs[0]
    for a in inputs[1:]:
        out = out + a
    return out


def _cuba(neuron, inputs, state):
    """``CubaLIF``/``CubaLI`` (Norse 1.1 ``lif.py`` ``lif_feed_forward_step`` order)."""
    dt = neuron.dt
    j = _sum([state.i, *inputs])  # i + W x (+ W_rec z), left to right as Norse
    v = state.v + dt * _f32(neuron.tau_mem_inv) * ((_f32(neuron.v_leak) - state.v) + j)
    return v, j + (-dt * _f32(neuron.tau_syn_inv) * j)


def _lif(neuron, inputs, state):
    """``LIF`` (Norse 1.1 ``lif_box.py``)."""
    a = _sum(inputs)
    return state.v + neuron.dt * _f32(neuron.tau_mem_inv) * (a + _f32(neuron.v_leak)
                                                              - state.v), state.i


def _li(neuron, inputs, state):
    """``LI`` (Norse 1.1 ``leaky_integrator_box.py``)."""
    a = _sum(inputs)
    return state.v + neuron.dt * _f32(neuron.tau_mem_inv) * ((_f32(neuron.v_leak) - state.v)
                                                              + a), state.i


def bitshift_subthreshold(neuron, inputs: list[torch.Tensor], i: torch.Tensor,
                          v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``BitshiftLIF`` (Xylo; :class:`rewire.ir.neurons.BitshiftLIF`): ``(v, i)`` after
    :math:`j = i + a`, :math:`i = j - 2^{-d_s} j`, :math:`v = v - 2^{-d_m} v + i`, in this
    order (the chip's: ``xylosim.v2``), float32; the products by :math:`2^{-d}` are exact.
    The training cell (:class:`rewire.frontends.bitshift.LIFBitshiftCell`) calls this
    function, so a trained model and its IR give the same bits. Autograd flows through it."""
    j = _sum([i, *inputs])
    i = j - j * _f32(2.0 ** -neuron.dash_syn)
    return v - v * _f32(2.0 ** -neuron.dash_mem) + i, i


def _bitshift(neuron, inputs, state):
    return bitshift_subthreshold(neuron, inputs, state.i, state.v)


def _if(neuron, inputs, state):
    """``IF`` (Norse 1.1 ``iaf.py``): ``v += a``."""
    return state.v + _sum(inputs), state.i


#: IR neuron type -> its sub-threshold step ``(v, i)``.
_SUBTHRESHOLD = {nodes.CubaLIF: _cuba, nodes.CubaLI: _cuba, nodes.LIF: _lif, nodes.LI: _li,
                 nodes.IF: _if, nodes.BitshiftLIF: _bitshift}


def weights(synapse, in_shape: tuple[int, ...]) -> torch.Tensor:
    """The synapse node's float32 weight as a torch tensor (a sum pool's constant kernel)."""
    if isinstance(synapse, nodes.SumPool2d):
        return torch.from_numpy(synapse.kernel_weights(in_shape[0]))
    return torch.tensor(synapse.weight)


def synaptic_input(synapse, x: torch.Tensor, in_shape: tuple[int, ...],
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """``a = W x + b`` of a feed-forward synapse node for a batch ``x`` ``(B, *in_shape)``
    (``(B, *out_shape)`` out; torch's ``F.linear``/``F.conv2d`` with the node's bias, so a
    ``torch.nn.Linear`` gives the same float32 bits); a recurrent node's input part. ``weight``: :func:`weights` of
    the node, if already at hand."""
    w = weights(synapse, in_shape) if weight is None else weight
    return _SYNAPSE[type(synapse)](synapse, x, in_shape, w)


def _bias(synapse) -> torch.Tensor | None:
    return None if synapse.bias is None else torch.tensor(synapse.bias)


def _dense(synapse, x, in_shape, w):
    return F.linear(x.reshape(len(x), -1), w, _bias(synapse))


def _conv(synapse, x, in_shape, w):
    return F.conv2d(x.reshape(len(x), *in_shape), w, _bias(synapse), stride=synapse.stride,
                    padding=synapse.padding, groups=synapse.groups)


def _pool(synapse, x, in_shape, w):
    return F.conv2d(x.reshape(len(x), *in_shape), w, stride=synapse.stride,
                    padding=synapse.padding, groups=in_shape[0])


#: IR synapse type -> its feed-forward input ``W x``.
_SYNAPSE = {nodes.Dense: _dense, nodes.RecurrentDense: _dense, nodes.Conv2d: _conv,
            nodes.SumPool2d: _pool}


def encode(net: Network, x: torch.Tensor) -> torch.Tensor:
    """The per-step input ``(T, B, *input_shape)``: for ``current`` encoding ``x * input_gain``
    ``(B, ...)`` repeated ``steps`` times; for ``rate`` ``x`` must already be ``(T, B, ...)``.

    Raises:
        ValueError: ``x`` of the wrong rank for the encoding.
    """
    if net.encoding == "current":
        if x.dim() != 1 + len(net.input_shape):
            raise ValueError(f"current encoding takes x of shape (B, *{net.input_shape}), got "
                             f"{tuple(x.shape)}")
        first = x * net.input_gain
        return first.unsqueeze(0).expand(net.steps, *first.shape)
    if x.dim() != 2 + len(net.input_shape):
        raise ValueError(f"rate encoding takes spikes of shape (T, B, *{net.input_shape}), got "
                         f"{tuple(x.shape)}")
    return x


@torch.no_grad()
def run(net: Network, inputs: torch.Tensor, record_all: bool = False) -> list[torch.Tensor]:
    """Run the float IR on per-step input ``inputs`` ``(T, B, *input_shape)`` from rest.

    A layer fed by :class:`~rewire.ir.network.Skip` connections adds ``W_skip out_source``
    (the source's output of this step) to its feed-forward input, in the order of
    ``net.skips``, before the recurrent term.

    Returns:
        ``[(T, B, *out_shape), ...]``: every layer's output (spikes, or ``v`` of a leaky
        integrator), or only the last layer's (``record_all=False``).
    """
    inputs = torch.as_tensor(inputs, dtype=torch.float32)
    batch = inputs.shape[1]
    states = [initial_state(l.neuron, l.out_shape, batch) for l in net.layers]
    outs = [[] for _ in net.layers]
    ws = [weights(l.synapse, l.in_shape) for l in net.layers]
    w_rec = [torch.tensor(l.synapse.weight_rec) if isinstance(l.synapse, nodes.RecurrentDense) else None
             for l in net.layers]
    skips = [[(skip.source, torch.tensor(skip.weight)) for skip in net.skips_into(k + 1)]
             for k in range(len(net.layers))]
    for x_t in inputs:
        s, seen = x_t, [x_t]  # seen[j]: the output of layer j this step (0: the input)
        for k, layer in enumerate(net.layers):
            a = synaptic_input(layer.synapse, s, layer.in_shape, ws[k])
            for source, w in skips[k]:  # residual terms join the feed-forward input first
                a = a + F.linear(seen[source].reshape(len(a), -1), w).reshape(a.shape)
            terms = [a]
            if w_rec[k] is not None:
                terms.append(F.linear(states[k].z, w_rec[k]))
            s, states[k] = neuron_step(layer.neuron, terms, states[k])
            seen.append(s)
            outs[k].append(s)
    stacked = [torch.stack(o) for o in outs]
    return stacked if record_all else stacked[-1:]
