r"""Integer reference simulator: the chip's CUBA arithmetic bit for bit, batched in numpy.

Per layer and time step (lava-nc 0.10 ``lava/proc/lif/models.py``, ``PyLifModelBitAcc``):

.. math::
    a &= W_\mathrm{int}\, s + b_\mathrm{int} \\
    u &= \mathrm{wrap}_{24}\big(\mathrm{trunc_0}(u (4096 - \mathrm{iDecay}) / 4096) + (a \ll 6)\big) \\
    v &= \mathrm{clip}_{24}\big(\mathrm{trunc_0}(v (4096 - \mathrm{vDecay}) / 4096) + u\big) \\
    z &= v > (\mathrm{vThMant} \ll 6), \qquad v \leftarrow 0 \text{ where } z

``trunc0`` rounds toward zero; ``u`` wraps around at 24 bits as Lava's model does (a value
of exactly :math:`+2^{23}` is kept, values above it lose :math:`2^{24}`, values at or below
:math:`-2^{23}` gain it) and ``v`` saturates at :math:`\pm(2^{23}-1)`. ``a`` is *not* cut to
16 bits: Lava's bit-accurate ``Dense``/``Sparse`` send ``a_out`` as int32 and the LIF's int16
``a_in`` port only adds it to int16 zeros, which numpy widens to int32 (checked spike for spike
by ``tests/export/test_conformance.py`` with activations far above :math:`2^{15}`); the compiler keeps
``a`` within 16 bits on calibration data anyway. ``W_int`` must be the weights Lava applies,
which :func:`rewire.compiler.quantize.compile_network` guarantees (see
:func:`rewire.compiler.netx_legal.netx_effective_weights`). The neuron step itself is
:meth:`rewire.ir.chip_neurons.ChipNeuron.int_step` on the numpy backend :class:`NumpyOps`
(the integer ONNX writer runs the same method on its ONNX backend). A dense :math:`W_\mathrm{int} s` is
computed with float64 BLAS when every sum stays below :math:`2^{53}` (exact), else in int64.
For a ``conv`` layer :math:`W_\mathrm{int} s` is the 2-D cross-correlation of the
``(C, H, W)`` input map with the integer kernel (torch ``conv2d`` semantics: stride, zero
padding, groups), computed in float64, which is exact for integers below :math:`2^{53}`.
With ``lava_delay=True`` every dense or conv layer delivers its input one step later, as
each ``Dense`` and ``Conv`` process in Lava does (the sink and source add none): that is what
a netx file run in Lava's Loihi 2 simulator produces. Running ``T + L`` steps (input zero-padded) and
dropping the first ``L`` outputs of the delayed model gives the undelayed one exactly
(:func:`align`).

A layer fed by skip connections (:class:`~rewire.ir.compiled_layers.CompiledSkip`) adds
:math:`W_\mathrm{skip,int}\, s_\mathrm{source}`, the source's spikes of the same step.

A layer with a bias adds ``bias_int`` to ``a`` every step (``a = W_int s + b_int``, the
bias on the weights' grid and scale). In the delayed model layer ``k`` adds it from delayed
step ``k + 1`` on, when its first input arrives: that is how a bias reaches the chip on netx
(an always-on input line and relay neurons that fire every step,
:mod:`rewire.compiler.bias_lines`, delayed as the spikes are), so :func:`align` stays exact.

A recurrent layer (netx ``dense_rec``) adds :math:`W_\mathrm{rec,int}\, z_{t-1}`, its own
spikes of the step before, to ``a``; in Lava the recurrent ``Dense`` delays by one step as
well, which is exactly that ``t - 1``, so the delayed model shifts a recurrent layer like any
other. A leaky-integrator readout (``LI``/``CubaLI``, ``v_th_mant = 0``) never spikes and
never resets: its output is ``v`` (int64) instead of spikes.

Xylo (profile ``neuron.model = "cuba_bitshift"``, :class:`rewire.ir.chip_bitshift.CompiledBitshiftLIF`)
follows its chip's own rules (:data:`rewire.compiler.chip_rules.CHIP_RULES`; docs/xylo.md): input
events are clipped at 15 per channel and step, the current accumulates synapse by synapse with
16-bit saturation after each (:func:`rewire.compiler.chip_rules.ordered_input`), and with
``chip_delay=True`` every layer but the first receives its input one step late, as XyloSim
0.1.3 runs a specification (hidden-to-hidden and hidden-to-readout spikes arrive a step late,
the input in the same step). :func:`simulate_states` records ``u`` (Xylo's ``Isyn``) and
``v`` (``Vmem``) of every layer and step besides the spikes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rewire.compiler.chip_rules import chip_rules, ordered_input
from rewire.compiler.netx_legal import lava_delay_steps, pad_for_lava, pad_silent
from rewire.errors import CompileError
from rewire.hw_profiles.profile import NeuronFormat
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledDense, CompiledLayer, lookup
from rewire.ir.input_layout import flatten_samples

__all__ = ["NumpyOps", "synaptic_input", "encode_input", "simulate", "simulate_states",
           "LayerStates", "pad_for_lava", "pad_for_chip", "chip_delay_steps", "align",
           "class_scores", "accuracy"]


class NumpyOps:
    """The numpy backend of :meth:`rewire.ir.chip_neurons.ChipNeuron.int_step`: int64 arrays
    ``(B, n)``, the profile's neuron format (``decay_bits``, ``activation_shift``,
    ``state_bits``, ``threshold_shift``)."""

    def __init__(self, nfmt: NeuronFormat):
        self.nfmt, self.half = nfmt, 1 << (nfmt.state_bits - 1)

    def decay(self, x, decay, tag):
        """``trunc0(x (2**bits - decay) / 2**bits)``."""
        prod = x * ((1 << self.nfmt.decay_bits) - decay)
        return np.sign(prod) * (np.abs(prod) >> self.nfmt.decay_bits)

    def shift(self, a):
        """``a << activation_shift``."""
        return a << self.nfmt.activation_shift

    def add(self, x, y, tag):
        """``x + y``."""
        return x + y

    def wrap(self, u):
        """Lava's 24-bit wrap of the current (``+2**23`` kept)."""
        half = self.half
        wrapped = np.where(u > half, u - 2 * half, u)
        return np.where(wrapped <= -half, u + 2 * half, wrapped)

    def clip(self, v):
        """Saturate ``v`` at ``+-(2**23 - 1)``."""
        return np.clip(v, -self.half + 1, self.half - 1)

    def fire(self, v, v_th_mant):
        """``v > vThMant << threshold_shift``."""
        return v > (v_th_mant << self.nfmt.threshold_shift)

    def reset(self, fire, v):
        """``v`` with the fired neurons reset to 0."""
        v[fire] = 0
        return v

    def spikes(self, fire):
        """The spike output: the boolean mask (counts with several spikes per step)."""
        return fire

    # the spike fields (rewire.ir.chip_spikes)
    def _th(self, v_th_mant):
        return v_th_mant << self.nfmt.threshold_shift

    def fire_at(self, v, v_th_mant):
        """``v >= vThMant << threshold_shift``."""
        return v >= self._th(v_th_mant)

    def count(self, v, v_th_mant, most):
        """``[v >= th] min(v // th, most)`` spikes (int64; floor division of ``v >= th > 0``
        only)."""
        th = self._th(v_th_mant)
        return np.where(v >= th, np.minimum(np.maximum(v, 0) // th, most), 0).astype(np.int64)

    def mask(self, n, tag):
        """Where ``n`` (a mask or counts) holds a spike."""
        return n > 0

    def subtract(self, v, n, v_th_mant, tag):
        """``v - n th`` (``n`` a mask or counts)."""
        return v - n.astype(np.int64) * self._th(v_th_mant)

    def floor(self, v, v_min_mant):
        """``max(v, v_min_mant << threshold_shift)``."""
        return np.maximum(v, v_min_mant << self.nfmt.threshold_shift)

    def readout(self, v):
        """A leaky integrator's new ``v`` and output (both ``v``)."""
        return v, v

    # Xylo's bit-shift neuron (rewire.ir.chip_bitshift)
    def bitshift_decay(self, x, dash, tag):
        """``x - dec(x, dash)``: ``dec = x >> dash``, ``1`` where that is 0 and ``x > 0``."""
        dec = x >> dash
        return x - np.where((dec == 0) & (x > 0), 1, dec)

    def bitshift_leak(self, x, dash, tag):
        """``-dec(x, dash)``: the change a bit-shift decay makes (``x - dec`` is
        :meth:`bitshift_decay`)."""
        return self.bitshift_decay(x, dash, tag) - x

    def saturate(self, x):
        """Saturate at the ``state_bits`` two's-complement range (int16 on Xylo)."""
        return np.clip(x, -self.half, self.half - 1)


def _dense_input(layer: CompiledDense, s: np.ndarray) -> np.ndarray:
    w = layer.weight_int
    if s.size and w.size and float(np.abs(s).max()) * 256 * w.shape[1] < 2.0 ** 53:
        # float64 BLAS is exact for integer sums below 2**53 (and ~50x faster than int64)
        return (s.astype(np.float64) @ w.astype(np.float64).T).astype(np.int64)
    return s @ w.astype(np.int64).T


def synaptic_input(layer: CompiledLayer, s: np.ndarray) -> np.ndarray:
    """Integer synaptic input ``a = W_int s`` of one layer, ``(B, n_in) -> (B, n_out)`` int64.

    Dense: a matrix product. Conv: torch's ``conv2d`` (cross-correlation, stride, zero
    padding, groups) of the ``(B, *in_shape)`` input with the integer kernel, in float64
    (exact below 2**53), flattened back in ``(C, H, W)`` order.
    """
    return lookup(SYNAPTIC_INPUT, layer, "synaptic_input")(layer, s)


def _conv_input(layer: CompiledConv, s: np.ndarray) -> np.ndarray:
    """``conv2d`` of ``s`` ``(B, C*H*W)`` with the integer kernel, as im2col + float64 matmul
    per group (exact below 2**53; numpy, not torch, whose thread pool stalls on a busy CPU)."""
    (c, h, w), (co, ho, wo) = layer.in_shape, layer.out_shape
    (ph, pw), (sh, sw), g = layer.padding, layer.stride, layer.groups
    kh, kw = layer.weight_int.shape[2:]
    x = np.pad(s.reshape(-1, c, h, w).astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    win = win[:, :, ::sh, ::sw][:, :, :ho, :wo]            # (B, C, Ho, Wo, kH, kW)
    kernel = layer.weight_int.astype(np.float64)
    ci, oi = c // g, co // g
    out = np.empty((len(x), co, ho, wo))
    for k in range(g):
        part = np.tensordot(win[:, k * ci:(k + 1) * ci], kernel[k * oi:(k + 1) * oi],
                            axes=([1, 4, 5], [1, 2, 3]))  # (B, Ho, Wo, oi)
        out[:, k * oi:(k + 1) * oi] = part.transpose(0, 3, 1, 2)
    return out.reshape(len(x), -1).astype(np.int64)


#: compiled layer type -> its integer synaptic input (a sum pool is a conv).
SYNAPTIC_INPUT = {CompiledDense: _dense_input, CompiledConv: _conv_input}


def encode_input(net: CompiledNetwork, x: np.ndarray) -> np.ndarray:
    """Integer input payloads ``(T, B, n_in)`` int64 for input ``x`` in either layout of the
    model (:mod:`rewire.ir.input_layout`).

    For ``current`` encoding ``x`` is ``(B, *net.input_shape)`` or the flat ``(B, n_in)``,
    float in [0, 1]; every step carries ``round(x * input_max_value)`` as a graded spike. For
    ``rate`` encoding ``x`` is already the binary spike train ``(T, B, *net.input_shape)`` or
    ``(T, B, n_in)``. The payload is always flat (``x.flatten()`` order per sample), as the
    integer model, the ONNX files and Lava take it. On a chip that clips its input events
    (Xylo: at 15 per channel and step) the payload is clipped as the chip does.

    Raises:
        ValueError: ``x`` in neither layout for the encoding (named, with both layouts).
    """
    x = np.asarray(x)
    n_in = net.sizes[0]
    if net.encoding == "rate":
        return (flatten_samples(x, n_in, net.input_shape, 2, "rate encoding needs spikes") > 0
                ).astype(np.int64)
    x = flatten_samples(x, n_in, net.input_shape, 1, "current encoding needs x")
    payload = chip_rules(net).clip_input(np.rint(x * net.input_max_value).astype(np.int64))
    return np.broadcast_to(payload, (net.steps,) + payload.shape)


def simulate(net: CompiledNetwork, payload: np.ndarray, lava_delay: bool = False,
             record_all: bool = False, chip_delay: bool = False) -> list[np.ndarray]:
    """Run the integer model.

    Args:
        net: the compiled network.
        payload: integer input ``(T, B, n_in)`` (graded payloads or 0/1 spikes), or
            ``(T, B, *net.input_shape)``.
        lava_delay: add Lava's one-step delay per dense layer.
        record_all: return the spikes of every layer, not only the last.
        chip_delay: add the chip's own delays (:meth:`rewire.compiler.chip_rules.ChipRules.delayed`:
            Xylo delays every layer but the first); not with ``lava_delay``.

    Returns:
        Spike trains ``(T, B, n)`` as uint8, one per layer (or only the output layer's); a
        leaky-integrator layer's voltages ``v`` as int64 instead, and the spike counts of a
        layer with several spikes per step (``max_spikes > 1``) as int64.

    Raises:
        ValueError: both delays asked for; negative input events on a chip that counts them.
        rewire.errors.CompileError: a delayed network with skip connections; on Xylo, a
            layer the chip's ordered accumulation does not cover (conv, skip, bias).

    Shapes:
        payload ``(T, B, n_in)`` -> ``[(T, B, n_1), ..., (T, B, n_L)]``.
    """
    out = [r.out for r in _run(net, payload, _delays(net, lava_delay, chip_delay), False)]
    return out if record_all else [out[-1]]


class LayerStates(NamedTuple):
    """One layer's record of :func:`simulate_states`, each ``(T, B, n)``.

    Attributes:
        u: the current after the step (int64; Xylo's ``Isyn``).
        v: the voltage after the step's reset (int64; Xylo's ``Vmem``).
        out: the output as :func:`simulate` returns it.
    """

    u: np.ndarray
    v: np.ndarray
    out: np.ndarray


def simulate_states(net: CompiledNetwork, payload: np.ndarray,
                    chip_delay: bool = True) -> list[LayerStates]:
    """Run the integer model (:func:`simulate`) recording every layer's ``u`` and ``v`` at
    every step besides its output: what a comparison with the chip's simulator reads
    state for state (:mod:`rewire.export.xylo_run`).

    Args:
        net, payload: as :func:`simulate`.
        chip_delay: with the chip's own delays (default; see :func:`simulate`).

    Returns:
        One :class:`LayerStates` per layer, input side first.
    """
    return _run(net, payload, _delays(net, False, chip_delay), True)


def _delays(net: CompiledNetwork, lava_delay: bool, chip_delay: bool) -> tuple[bool, ...]:
    """Per layer: whether its input arrives one step late."""
    if lava_delay and chip_delay:
        raise ValueError("lava_delay and chip_delay: give one delay model, not both")
    if chip_delay:
        return chip_rules(net).delayed(len(net.layers))
    return (lava_delay,) * len(net.layers)


def _run(net: CompiledNetwork, payload: np.ndarray, delayed: tuple[bool, ...],
         states: bool) -> list[LayerStates]:
    """The integer model with layer ``k`` delayed by one step where ``delayed[k]``."""
    payload = flatten_samples(np.asarray(payload, dtype=np.int64), net.sizes[0],
                              net.input_shape, 2, "the integer model needs a payload")
    rules = chip_rules(net)
    payload = rules.clip_input(payload)
    steps, batch = payload.shape[:2]
    ops = NumpyOps(net.profile.neuron)
    u = [np.zeros((batch, l.shape[0]), np.int64) for l in net.layers]
    v = [np.zeros((batch, l.shape[0]), np.int64) for l in net.layers]
    # input that reached each layer one step earlier (Lava's Dense delivers it a step late)
    pending = [np.zeros((batch, l.shape[1]), np.int64) for l in net.layers]
    out = [np.zeros((steps, batch, l.shape[0]), np.uint8 if _binary(l) else np.int64)
           for l in net.layers]
    rec = [tuple(np.zeros((steps, batch, l.shape[0]), np.int64) for _ in "uv") if states
           else (None, None) for l in net.layers]
    z_prev = [np.zeros((batch, l.shape[0]), np.int64) for l in net.layers]
    if any(delayed) and any(l.skips for l in net.layers):
        raise CompileError("a network with skip connections has no Lava-delayed (or "
                           "chip-delayed) model: each path to a layer would arrive with its own "
                           "delay (netx refuses it)")
    bias = [l.bias_per_neuron() for l in net.layers]
    arrives = np.cumsum(delayed)  # the delayed step at which layer k's first input arrives
    for t in range(steps):
        s = payload[t]
        seen = [s]  # seen[j]: the spikes of layer j this step (0: the input payload)
        for k, layer in enumerate(net.layers):
            if delayed[k]:
                s, pending[k] = pending[k], s
            if rules.ordered:  # Xylo: the a whose u + a (int_step's first sum) is the sum
                a = ordered_input(layer, u[k], s, z_prev[k], ops.saturate) - u[k]  # in order
            else:
                a = synaptic_input(layer, s)
                for skip in layer.skips:  # integer sums: the order does not matter
                    a = a + seen[skip.source] @ skip.weight_int.astype(np.int64).T
                if bias[k] is not None and t >= arrives[k]:
                    a = a + bias[k]  # delayed: from the step the layer's first input arrives
                if layer.recurrent:
                    a = a + z_prev[k] @ layer.weight_rec_int.astype(np.int64).T
            u[k], v[k], out[k][t], fire = layer.chip.int_step(ops, u[k], v[k], a, z_prev[k])
            if states:
                rec[k][0][t], rec[k][1][t] = u[k], v[k]
            if fire is not None:
                s = z_prev[k] = fire.astype(np.int64)
            seen.append(s)
    return [LayerStates(ru, rv, o) for (ru, rv), o in zip(rec, out)]


def _binary(layer: CompiledLayer) -> bool:
    """Whether the layer's output is 0/1 spikes (uint8): spiking, one spike per step."""
    return layer.spiking and layer.neuron.max_spikes == 1


def align(net: CompiledNetwork, payload: np.ndarray) -> np.ndarray:
    """Output spikes of the Lava-delayed model, shifted back so they line up with the input.

    Runs :func:`rewire.compiler.netx_legal.pad_for_lava` input with ``lava_delay=True`` and drops the first ``L`` steps:
    the result equals ``simulate(net, payload)[-1]`` exactly.
    """
    delayed = simulate(net, pad_for_lava(net, payload), lava_delay=True)[-1]
    return delayed[lava_delay_steps(net):]


def chip_delay_steps(net: CompiledNetwork) -> int:
    """Steps the chip's own delays (``chip_delay=True``) put between the input and the
    output: ``L - 1`` on Xylo (every layer but the first), ``L`` for Lava's CUBA chips."""
    return sum(chip_rules(net).delayed(len(net.layers)))


def pad_for_chip(net: CompiledNetwork, payload: np.ndarray) -> np.ndarray:
    """Append :func:`chip_delay_steps` silent steps to ``payload`` ``(T, B, n_in)`` (int64),
    so the chip's delayed run holds the whole response of the last input step; dropping the
    first :func:`chip_delay_steps` outputs of ``simulate(net, pad_for_chip(net, payload),
    chip_delay=True)`` gives ``simulate(net, payload)`` exactly (states start at 0 and a
    layer without input stays at 0)."""
    return pad_silent(np.asarray(payload, dtype=np.int64), chip_delay_steps(net))


def class_scores(net: CompiledNetwork, out: np.ndarray) -> np.ndarray:
    """Per-class scores ``(B, C)`` of the last layer's output ``(T, B, C)``: spike counts, or
    for a leaky-integrator readout the largest ``v`` over time; the argmax is the class (ties
    to the lowest index)."""
    return out.sum(0) if net.readout == "spikes" else out.max(0)


def accuracy(net: CompiledNetwork, batches) -> float:
    """Integer-model accuracy (fraction) by :func:`class_scores`, ties to the lowest index.

    Args:
        net: the compiled network.
        batches: iterable of ``(payload (T, B, n_in) int, labels (B,))`` pairs (see
            :func:`encode_input`).
    """
    correct = total = 0
    for payload, labels in batches:
        counts = class_scores(net, simulate(net, payload)[-1])
        correct += int((counts.argmax(-1) == np.asarray(labels)).sum())
        total += len(labels)
    return correct / max(total, 1)
