r"""Compile a trained Norse SNN to the chip's fixed-point CUBA arithmetic (REFERENCE §3).

Norse's LIF step and Loihi's CUBA step are the same recurrence once

.. math::
    \mathrm{iDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{syn}^{-1}), \quad
    \mathrm{vDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{mem}^{-1}), \\
    w_\mathrm{int} = \mathrm{round}(w\,\Delta t\,\tau_\mathrm{mem}^{-1} S\,c_\mathrm{in}), \quad
    \mathrm{vThMant} = \mathrm{round}(v_\mathrm{th} S),

with one scale :math:`S` per layer and :math:`c_\mathrm{in}` the float value of one unit of
input payload. Only the rounding differs. That is the IR's ``CubaLIF``; its other neuron nodes
(:mod:`rewire.ir.nodes`) are CUBA neurons too (:func:`cuba_rates`): ``LIF`` and ``LI`` with
``iDecay = 4096`` (the current lasts one step, so the input enters ``v`` directly), ``IF``
with ``iDecay = 4096`` and ``vDecay = 0`` and weights ``w S`` (no ``dt/tau_mem`` factor); the
leaky integrators ``LI``/``CubaLI`` never spike (no threshold; their output is ``v``). A
recurrent layer's weights ``[W | W_rec]`` share one scale (netx's ``dense_rec`` optimizes
their bits jointly), the recurrent inputs carrying binary spikes. :math:`S` is the largest value such that

* the largest :math:`|w_\mathrm{int}|` fits the profile's weight format (weight bits),
* ``vThMant`` fits its unsigned ``threshold_bits`` (threshold bits),
* the worst-case synaptic input :math:`\sum_j |w_\mathrm{int}|\,p_j` fits 16 bits
  (Lava's ``a_in`` port, activation bits), where :math:`p_j` is the largest payload input
  :math:`j` can carry, or, given calibration inputs, the largest that input carries in them
  (graded 8-bit MNIST pixels into 784 inputs would otherwise leave almost no weight bits), and
* the steady-state current :math:`a_\mathrm{max} 2^6 / \delta_i` fits the signed
  ``state_bits`` (current bits), so the chip's current never wraps.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.nn import functional as F

from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.compiled import CompiledLayer, CompiledNetwork
from rewire.ir.network import Network

ACTIVATION_BITS = 16  # Lava's LIF a_in port: LavaPyType(np.int16, precision=16)
ACTIVATION_MAX = 2 ** (ACTIVATION_BITS - 1) - 1




def decay_constant(rate_inv: float, dt: float, profile: HardwareProfile, what: str,
                   allow_zero: bool = False) -> int:
    """``round(2**decay_bits * dt * rate_inv)``: a Norse time constant as a chip decay.

    Raises:
        CompileError: the decay rounds to 0 (no leak on chip; allowed for ``IF`` only) or
            exceeds ``2**decay_bits``.
    """
    if allow_zero and rate_inv == 0:
        return 0
    unit = profile.neuron.decay_unit
    if not np.isfinite(unit * dt * rate_inv):
        raise CompileError(f"{what}: dt * tau_inv = {dt * rate_inv:g} is not a finite number; "
                           f"give finite, positive dt and time constants")
    value = round(unit * dt * rate_inv)
    if value < 1 or value > unit:
        raise CompileError(f"{what}: dt * tau_inv = {dt * rate_inv:g} gives a decay of {value} "
                           f"/ {unit}; the chip needs 1..{unit} (change dt or the time constant)")
    return int(value)


def check_neuron(neuron, layer: str = "neuron") -> None:
    """Refuse neuron constants the chip's CUBA model cannot express.

    Args:
        neuron: an IR neuron node (:mod:`rewire.ir.nodes`).
        layer: the layer's name, for the message.

    Raises:
        CompileError: ``v_leak`` or ``v_reset`` non-zero, or ``v_th <= 0``.
    """
    v_leak, v_reset = getattr(neuron, "v_leak", 0.0), getattr(neuron, "v_reset", 0.0)
    if v_leak != 0 or v_reset != 0:
        raise CompileError(f"{layer}: {neuron.kind} v_leak = {v_leak} and v_reset = {v_reset} "
                           f"must both be 0 for the chip's CUBA neuron (it leaks to 0 and "
                           f"resets to 0); retrain with v_leak = v_reset = 0")
    if neuron.spiking and not neuron.v_th > 0:
        raise CompileError(f"{layer}: v_th must be > 0, got {neuron.v_th}")


def neuron_decays(neuron, profile: HardwareProfile, name: str) -> tuple[int, int, float]:
    """``(iDecay, vDecay, gain)`` of an IR neuron on ``profile`` (:func:`cuba_rates` as chip
    constants), after :func:`check_neuron`.

    Raises:
        CompileError: as :func:`check_neuron` and :func:`decay_constant`, naming ``name``.
    """
    check_neuron(neuron, f"layer {name}")
    i_rate, v_rate, gain = cuba_rates(neuron)
    i_decay = decay_constant(i_rate / neuron.dt, neuron.dt, profile, f"layer {name} iDecay")
    v_decay = decay_constant(v_rate / neuron.dt, neuron.dt, profile, f"layer {name} vDecay",
                             allow_zero=neuron.kind == "IF")
    return i_decay, v_decay, gain


def cuba_rates(neuron) -> tuple[float, float, float]:
    """``(dt/tau_syn, dt/tau_mem, gain)`` of an IR neuron as a CUBA neuron: the fractions of
    current and voltage lost per step (``iDecay / 4096``, ``vDecay / 4096``) and the factor from
    a float weight to the chip's voltage units per unit of ``S``.

    ``CubaLIF``/``CubaLI``: ``(dt tau_syn_inv, dt tau_mem_inv, dt tau_mem_inv)``;
    ``LIF``/``LI``: ``(1, dt tau_mem_inv, dt tau_mem_inv)``; ``IF``: ``(1, 0, 1)``.
    """
    dt = neuron.dt
    if neuron.kind in ("CubaLIF", "CubaLI"):
        return dt * neuron.tau_syn_inv, dt * neuron.tau_mem_inv, dt * neuron.tau_mem_inv
    if neuron.kind in ("LIF", "LI"):
        return 1.0, dt * neuron.tau_mem_inv, dt * neuron.tau_mem_inv
    if neuron.kind == "IF":
        return 1.0, 0.0, 1.0
    raise CompileError(f"neuron kind {neuron.kind!r} has no CUBA image")  # pragma: no cover


def _trailing_zero_bits(w: np.ndarray, cap: int = 8) -> int:
    """Largest ``n <= cap`` with every entry of ``w`` divisible by ``2**n`` (netx's search)."""
    n = cap
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    return n


def _netx_upscale(wmax: int, wmin: int) -> tuple[int, int]:
    """The left shift ``s`` netx's ``optimize_weight_bits`` (lava-dl ``netx/utils.py``) applies
    to a matrix whose largest and smallest weights are ``wmax``, ``wmin`` (not both 0), and
    whether it treats the matrix as signed (1) or single-signed (0)."""
    if wmax < 0:
        scale, signed = -256 / wmin, 0
    elif wmin >= 0:
        scale, signed = 255 / wmax, 0
    else:
        scale, signed = min(127 / wmax if wmax > 0 else np.inf, -128 / wmin), 1
    return int(np.floor(np.log2(scale))) + signed, signed


def netx_effective_weights(weight_int: np.ndarray) -> np.ndarray:
    """The integer weights Lava actually applies to a ``dense`` layer of a netx file.

    lava-dl 0.6 ``netx/utils.py optimize_weight_bits`` scales a file's weights up by ``2**s``
    (``s = floor(log2(scale)) + signed``, ``scale = min(127/max, -128/min)`` for mixed signs,
    ``255/max`` excitatory, ``-256/min`` inhibitory), sets ``weight_exponent = -s`` and
    ``num_weight_bits = 8 - s - n`` (``n``: trailing zero bits of the file weights, minus one
    if signed). Lava's fixed-point ``Dense``/``Sparse`` model then clips to 8 bits
    (``lava/utils/weightutils.py clip_weights``), drops ``8 - num_weight_bits + mixed`` low
    bits (``truncate_weights``, flooring) and right-shifts the synaptic sum by ``s``. For
    ``s = 0`` (the largest magnitude is at least 128) this is the identity; for ``s > 0`` it
    loses ``s`` low bits (lava #859), which the compiler avoids or models with this function.
    An all-zero matrix is returned unchanged (netx itself would crash on it: lava #501).

    Args:
        weight_int: integer weights ``(out, in)`` in ``[-256, 254]``, even (Loihi 2 step).

    Returns:
        int64 ``(out, in)``: ``E`` such that Lava's synaptic input is exactly ``E @ s``.

    Raises:
        ValueError: odd weights or weights outside 9 signed bits (the sum would not separate
            into per-synapse weights).
    """
    full = np.asarray(weight_int)
    nz = np.flatnonzero(full)
    if nz.size == 0:
        return full.astype(np.int64)
    w = full.reshape(-1)[nz].astype(np.int64)  # zeros stay zero below: work on synapses
    wmax, wmin = int(w.max()), int(w.min())
    if nz.size < full.size:  # the matrix's zeros count for netx's max and min
        wmax, wmin = max(wmax, 0), min(wmin, 0)
    if wmax > 254 or wmin < -256 or np.any(w % 2):
        raise ValueError(f"weights must be even and in [-256, 254], got [{wmin}, {wmax}]")
    s, signed = _netx_upscale(wmax, wmin)
    n = _trailing_zero_bits(w) - signed
    num_weight_bits = 8 - s - n
    w1 = w << s
    # lava/proc/dense/models.py: sign mode, clip_weights(num_bits=8), truncate_weights
    if w1.min() >= 0:
        lo, hi, mixed, negate = 0, 255, 0, False
    elif w1.max() <= 0:
        lo, hi, mixed, negate = 0, 255, 0, True
    else:
        lo, hi, mixed, negate = -256, 255, 1, False
    w2 = np.clip(-w1 if negate else w1, lo, hi)
    k = 8 - num_weight_bits + mixed
    w3 = (w2 >> k) << k
    w3 = -w3 if negate else w3
    if k < s:  # pragma: no cover - even weights always give k >= s
        raise ValueError("netx weight exponent does not separate over synapses")
    out = np.zeros(full.size, dtype=np.int64)
    out[nz] = w3 >> s
    return out.reshape(full.shape)


def netx_exact(weight_int: np.ndarray) -> bool:
    """Whether Lava applies a dense layer's file weights unchanged (:func:`netx_effective_weights`).

    Fast path: even weights in ``[-254, 254]`` whose netx scale-up ``s`` is 0 (largest
    magnitude >= 128, or an all-zero matrix) are always kept.
    """
    w = np.asarray(weight_int)
    if w.size == 0:
        return True
    wmax, wmin = int(w.max()), int(w.min())
    if wmax == wmin == 0:
        return True
    if wmin >= -254 and wmax <= 254:
        if _netx_upscale(wmax, wmin)[0] == 0 and not np.any(w & 1):
            return True
    return bool(np.array_equal(netx_effective_weights(w), w))


def quantize_layer(name: str, weight: np.ndarray, neuron, profile: HardwareProfile,
                   input_scale: float, max_payload: int,
                   payloads: np.ndarray | None = None,
                   weight_rec: np.ndarray | None = None) -> CompiledLayer:
    """Quantize one layer (see the module docstring for the choice of ``S``).

    Args:
        name: layer name for messages.
        weight: float ``(out, in)``.
        neuron: the layer's IR neuron node (:mod:`rewire.ir.nodes`).
        profile: target chip.
        input_scale: float value of one unit of input payload.
        max_payload: largest input payload (1 for binary spikes).
        payloads: optional calibration payloads ``(B, in)``; the activation bound is then the
            largest ``|sum_j w_ij p_bj|`` over them instead of the worst case
            ``sum_j |w_ij| max_payload``.
        weight_rec: float ``(out, out)`` recurrent weights (a ``RecurrentDense`` layer), or
            ``None``; they carry binary spikes and share the layer's scale.

    Returns:
        The :class:`CompiledLayer`. A layer whose synapses are all pruned compiles (its scale
        is then set by the threshold) and says so in ``notes``.

    Raises:
        CompileError: non-finite weights, a decay that rounds outside ``1..2**decay_bits``
            (0 allowed for ``IF``'s ``vDecay``), or a ``vThMant`` that cannot be represented.
    """
    n_in = weight.shape[1]
    full = weight if weight_rec is None else np.hstack([weight, weight_rec])
    if not np.all(np.isfinite(full)):
        raise CompileError(f"layer {name}: {int(np.count_nonzero(~np.isfinite(full)))} "
                           f"weights are NaN or infinite (training diverged); lower --lr or "
                           f"check the model")
    i_decay, v_decay, gain = neuron_decays(neuron, profile, name)
    gain = gain * input_scale   # float weight -> u per unit S
    # recurrent inputs are binary spikes of the layer itself, whose value is 1, not
    # input_scale: scale their weights so that one unit of "payload" means one spike
    if weight_rec is not None:
        full = np.hstack([weight, weight_rec / input_scale])
    col_max = np.full(full.shape[1], float(max_payload))
    col_max[n_in:] = 1.0
    wfmt, nfmt = profile.weights, profile.neuron
    # symmetric magnitude: -256 alone would be clipped to -255 by Lava's inhibitory sign mode
    wmag = min(wfmt.max_int, -wfmt.min_int)
    # work on the connected synapses only (a pruned layer is mostly zeros)
    nz = np.flatnonzero(full)
    rows, cols = nz // max(full.shape[1], 1), nz % max(full.shape[1], 1)
    vals = full.reshape(-1)[nz]
    wmax = float(np.abs(vals).max()) if vals.size else 0.0
    cal = None if payloads is None else np.asarray(payloads, np.float64)

    def activation(v: np.ndarray) -> float:
        """Largest |synaptic input| for synapse values ``v`` (signed over calibration data)."""
        if v.size == 0:
            return 0.0
        if cal is None:
            return float(np.bincount(rows, np.abs(v) * col_max[cols], full.shape[0]).max())
        dense = np.zeros(full.size)
        dense[nz] = v
        dense = dense.reshape(full.shape)
        worst_rec = np.abs(dense[:, n_in:]).sum(1)
        return float((np.abs(cal @ dense[:, :n_in].T) + worst_rec).max())

    act = activation(vals) * gain
    state_max = 2 ** (nfmt.state_bits - 1) - 1
    current_max = state_max * (i_decay / nfmt.decay_unit) / 2 ** nfmt.activation_shift
    limits = {
        "weight bits": wmag / (gain * wmax) if wmax > 0 else np.inf,
        "threshold bits": nfmt.max_threshold_mant / neuron.v_th if neuron.spiking else np.inf,
        "activation bits": ACTIVATION_MAX / act if act > 0 else np.inf,
        "current bits": current_max / act if act > 0 else np.inf,
    }
    limited_by = min(limits, key=limits.get)
    scale = limits[limited_by]
    if not np.isfinite(scale):  # a readout with every synapse pruned: any scale will do
        scale, limited_by = 1.0, "nothing (no synapse, no threshold)"
    step = wfmt.step
    bound = min(ACTIVATION_MAX, current_max)
    while True:
        q = np.clip(np.round(vals * (gain * scale / step)) * step, -wmag, wmag)
        reached = activation(q)
        if reached <= bound or scale < 1e-12:
            break
        scale *= min(0.99, bound / reached)  # rounding pushed the bound over: shrink
    w_int = np.zeros(full.size, dtype=np.int32)
    w_int[nz] = q
    w_int = w_int.reshape(full.shape)
    v_th_mant = 0
    if neuron.spiking:
        v_th_mant = int(round(neuron.v_th * scale))
        if not 1 <= v_th_mant <= nfmt.max_threshold_mant:
            raise CompileError(f"layer {name}: vThMant = {v_th_mant} is outside 1..."
                               f"{nfmt.max_threshold_mant}; the weights span too wide a range "
                               f"(limited by {limited_by})")
    notes = ()
    if not np.any(w_int):
        notes = ("every synapse is pruned or rounds to 0: the layer never spikes",)
    rec = {}
    if weight_rec is not None:
        rec = {"weight_rec": weight_rec.astype(np.float32),
               "weight_rec_int": np.ascontiguousarray(w_int[:, n_in:])}
    return CompiledLayer(name=name, weight=weight.astype(np.float32),
                         weight_int=np.ascontiguousarray(w_int[:, :n_in]),
                         scale=float(scale), input_scale=float(input_scale), i_decay=i_decay,
                         v_decay=v_decay, v_th_mant=v_th_mant, scale_limited_by=limited_by,
                         notes=notes, neuron=neuron, **rec)


def to_netx_grid(layer: CompiledLayer) -> CompiledLayer:
    """Make a dense layer's weights a fixed point of :func:`netx_effective_weights`.

    When the largest weight magnitude is below 128, netx would silently drop low weight bits
    in Lava; instead the compiler stores the weights Lava will really use (iterated to a fixed
    point, at most a few rounds) so that the integer model, the file and Lava agree, and notes
    it in the layer's ``notes``. A recurrent layer's ``[W | W_rec]`` is treated as one matrix,
    as netx's ``dense_rec`` does (lava-dl 0.6 ``netx/hdf5.py``: ``optimize_weight_bits`` of the
    concatenation).
    """
    full = layer.fan_in_matrix
    if netx_exact(full):
        return layer
    w = full.astype(np.int64)
    for _ in range(16):
        e = netx_effective_weights(w)
        if np.array_equal(e, w):
            break
        w = e
    else:  # pragma: no cover - the grid only coarsens, so this converges
        raise CompileError(f"layer {layer.name}: netx weight grid did not converge")
    if np.array_equal(w, full):
        return layer
    lost = int(np.count_nonzero(full)) - int(np.count_nonzero(w))
    note = (f"largest weight {int(np.abs(full).max())} < 128: weights rounded onto "
            f"netx's coarser grid as Lava applies them ({lost} synapses lost)")
    n_in = layer.weight_int.shape[1]
    rec = {"weight_rec_int": w[:, n_in:].astype(np.int32)} if layer.recurrent else {}
    return dataclasses.replace(layer, weight_int=w[:, :n_in].astype(np.int32),
                               notes=layer.notes + (note,), **rec)


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, str):
        raise CompileError(f"{what} = {value!r}: only integer paddings compile; give the "
                           f"padding in pixels")
    pair = (value, value) if isinstance(value, int) else tuple(value)
    return int(pair[0]), int(pair[1])


def conv_patches(payloads: np.ndarray, in_shape: tuple[int, int, int],
                 kernel: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int], chunk: int = 256) -> np.ndarray:
    """The distinct input patches a convolution sees: im2col of ``payloads``, rows deduplicated.

    Row ``r`` of the result times a flattened kernel row ``weight.reshape(C_out, -1)[o]`` is the
    synaptic input of one neuron of output channel ``o`` (``groups = 1``), so
    :func:`quantize_layer` can bound a conv layer's activation exactly as a dense one's.

    Args:
        payloads: integer inputs ``(B, C*H*W)`` in ``(C, H, W)`` order.
        in_shape: ``(C, H, W)``.
        kernel, stride, padding: ``(y, x)`` pairs as in ``torch.nn.Conv2d``.
        chunk: samples unfolded at a time (bounds memory).

    Returns:
        int64 ``(P, C*kH*kW)``: the distinct patches (zero padding included).
    """
    found = []
    for i in range(0, len(payloads), chunk):
        x = torch.as_tensor(np.asarray(payloads[i:i + chunk], dtype=np.float64))
        cols = F.unfold(x.reshape(-1, *in_shape), kernel, padding=padding, stride=stride)
        rows = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy().astype(np.int64)
        found.append(np.unique(rows, axis=0))
    return np.unique(np.concatenate(found), axis=0)


def quantize_conv_layer(name: str, synapse, in_shape: tuple[int, int, int],
                        out_shape: tuple[int, int, int], neuron, profile: HardwareProfile,
                        input_scale: float, max_payload: int,
                        payloads: np.ndarray | None = None) -> CompiledLayer:
    """Quantize an IR ``Conv2d`` or ``SumPool2d`` layer.

    The same per-layer scale ``S`` as :func:`quantize_layer` (whose code this reuses on the
    kernel flattened to ``(C_out, C_in/groups * kH * kW)``): a kernel row is the fan-in of one
    interior neuron, so the weight, threshold, activation and current bounds carry over
    unchanged; calibration payloads are turned into the patches the kernel sees
    (:func:`conv_patches`, ``groups = 1`` only; grouped layers use the worst case). A sum
    pool is the depthwise convolution with its constant kernel.

    Args:
        name: layer name for messages.
        synapse: the IR :class:`~rewire.ir.nodes.Conv2d` or :class:`~rewire.ir.nodes.SumPool2d`.
        in_shape, out_shape: ``(C, H, W)`` feature maps in and out.
        neuron, profile, input_scale, max_payload: as :func:`quantize_layer`.
        payloads: optional calibration payloads ``(B, C*H*W)``.

    Returns:
        A :class:`CompiledLayer` with ``kind = "conv"`` and 4-D ``weight``/``weight_int``
        (``pool_weight`` set for a sum pool).

    Raises:
        CompileError: any :func:`quantize_layer` error.
    """
    pool = synapse.op == "sumpool"
    weight = (synapse.kernel_weights(in_shape[0]) if pool else synapse.weight).astype(np.float64)
    groups = int(in_shape[0]) if pool else int(synapse.groups)
    stride, padding = tuple(synapse.stride), tuple(synapse.padding)
    patches = None
    if payloads is not None and groups == 1:
        patches = conv_patches(payloads, in_shape, weight.shape[2:], stride, padding)
    flat = quantize_layer(name, weight.reshape(len(weight), -1), neuron, profile, input_scale,
                          max_payload, patches)
    return dataclasses.replace(flat, weight=flat.weight.reshape(weight.shape),
                               weight_int=flat.weight_int.reshape(weight.shape), kind="conv",
                               in_shape=tuple(in_shape), out_shape=tuple(out_shape),
                               stride=stride, padding=padding, groups=groups,
                               pool_weight=float(synapse.weight) if pool else None)


def _netx_weights(profile: HardwareProfile) -> bool:
    """Whether dense weights go through netx's ``optimize_weight_bits`` (Loihi weight format)."""
    w = profile.weights
    return "netx" in profile.formats and w.max_int <= 254 and w.min_int >= -256 \
        and w.step % 2 == 0


def _graded_input_layer(name: str, layer, profile: HardwareProfile, input_gain: float,
                        input_max_value: int, calibration: np.ndarray | None
                        ) -> tuple[CompiledLayer, int]:
    """Quantize the first dense layer of a graded (current-encoded) input, choosing the payload.

    The payload standing for ``x = 1`` is tried at ``input_max_value``, then halved
    (``255, 127, 63, ...``: one graded bit fewer each time). With many inputs the 16-bit
    activation and 24-bit current bounds cap ``S`` (they do not depend on the payload), so a
    coarser payload leaves the weights more bits. The first payload whose largest weight uses
    the top weight bit (magnitude >= 128 on Loihi 2) and whose weights netx applies unchanged
    (:func:`netx_exact`) is kept; if none, the payload giving the largest weights, with the
    weights on netx's grid (:func:`to_netx_grid`).

    Returns:
        ``(layer, payload)``: the layer and the integer payload standing for ``x = 1``.
    """
    weight = layer.synapse.weight.astype(np.float64)
    rec = layer.synapse.weight_rec.astype(np.float64) if layer.synapse.op == "dense_rec" \
        else None
    netx, wfmt = _netx_weights(profile), profile.weights
    best = None
    payload = input_max_value
    while payload >= 1:
        cal = None if calibration is None else np.rint(np.asarray(calibration) * payload)
        compiled = quantize_layer(name, weight, layer.neuron, profile, input_gain / payload,
                                  payload, cal, rec)
        full = compiled.fan_in_matrix
        wtop = int(np.abs(full).max()) if full.size else 0
        top_bit = 2 * wtop >= min(wfmt.max_int, -wfmt.min_int) + wfmt.step or not weight.any()
        if top_bit and (not netx or netx_exact(full)):
            if payload != input_max_value:
                compiled = dataclasses.replace(compiled, notes=compiled.notes + (
                    f"graded input payload {payload} (not {input_max_value}) so the weights "
                    f"keep their low bits in netx",))
            return compiled, payload
        if best is None or wtop > best[0]:
            best = (wtop, compiled, payload)
        # S does not depend on the payload here, so the weights grow as 1/payload: skip the
        # halvings that cannot reach the top bit yet
        need = (min(wfmt.max_int, -wfmt.min_int) + wfmt.step) / (2 * wtop) if wtop else 2
        payload >>= max(1, int(np.floor(np.log2(need))))
    return (to_netx_grid(best[1]) if netx else best[1]), best[2]


def _layer_names(network: Network) -> list[str]:
    """``fc<k>`` (dense and recurrent dense), ``conv<k>``, ``pool<k>``, numbered per kind."""
    counts, names = {"conv": 0, "pool": 0, "fc": 0}, []
    for layer in network.layers:
        prefix = {"sumpool": "pool", "conv": "conv"}.get(layer.synapse.op, "fc")
        counts[prefix] += 1
        names.append(f"{prefix}{counts[prefix]}")
    return names


def compile_network(network, profile: HardwareProfile, input_max_value: int | None = None,
                    cores: int | None = None,
                    calibration: np.ndarray | None = None, **lower_options) -> CompiledNetwork:
    """Compile an IR :class:`~rewire.ir.network.Network` for ``profile``.

    Each IR layer becomes a :class:`CompiledLayer` named ``fc<k>``, ``conv<k>`` or
    ``pool<k>`` (numbered per kind) with its own neuron's chip constants
    (:func:`cuba_rates`); then the layers are mapped onto cores
    (:func:`rewire.compiler.mapping.map_cores`).

    Args:
        network: the IR network. For convenience a torch/Norse module or a NIR graph is
            lowered first with :func:`rewire.frontends.lower` (``lower_options`` go there);
            the compiler itself reads only the IR.
        profile: target chip.
        input_max_value: ``current`` encoding: the integer payload standing for input 1.0
            (16 for digits, 255 for MNIST); default 255. Ignored for ``rate`` input.
        cores: cores allotted to the model (default: the whole chip).
        calibration: optional inputs ``(B, *input_shape)`` or ``(B, n_in)`` in [0, 1] (the
            training set) bounding the first layer's graded input (current encoding);
            default: the worst case.

    Returns:
        The frozen :class:`CompiledNetwork`.

    Raises:
        CompileError: a profile whose neuron model is not ``cuba``, ``input_max_value`` not
            an integer in [1, 2**24], ``cores`` outside [1, limits.cores], and the errors of
            :func:`check_neuron`, :func:`quantize_layer` and
            :func:`rewire.compiler.mapping.map_cores` (``MappingError``), naming the layer.
        rewire.errors.LoweringError: (a module or graph given) what the frontend cannot lower;
            a value an IR node refuses (a NaN weight, ``v_reset >= v_th``) is a CompileError.
    """
    if not isinstance(network, Network):
        from rewire.errors import RewireError
        from rewire.frontends import lower

        try:
            network = lower(network, **lower_options)
        except RewireError:
            raise
        except ValueError as exc:  # an IR node refused a value (NaN weight, v_reset >= v_th)
            raise CompileError(f"the model cannot be compiled: {exc}") from None
    if profile.neuron.model != "cuba":
        raise CompileError(f"profile {profile.name!r}: neuron model {profile.neuron.model!r} "
                           f"is not supported (only 'cuba')")
    current = network.encoding == "current"
    if input_max_value is None:
        input_max_value = 255
    if isinstance(input_max_value, bool) or not isinstance(input_max_value, (int, np.integer)) \
            or not 1 <= input_max_value <= 2**24:
        raise CompileError(f"input_max_value must be an integer payload in [1, 2**24] (the "
                           f"payload standing for input 1.0: 16 for digits, 255 for MNIST), "
                           f"got {input_max_value!r}")
    if cores is not None and (isinstance(cores, bool) or not isinstance(cores, (int, np.integer))
                              or not 1 <= cores <= profile.limits.cores):
        raise CompileError(f"cores must be an integer in [1, {profile.limits.cores}] "
                           f"(limits.cores of {profile.name}), got {cores!r}")
    input_max_value = int(input_max_value)
    if calibration is not None:
        calibration = np.asarray(calibration, dtype=np.float64).reshape(len(calibration), -1)
    layers = []
    payload_max = input_max_value if current else 1
    netx = _netx_weights(profile)
    for k, (name, layer) in enumerate(zip(_layer_names(network), network.layers)):
        payloads = None
        if k == 0 and current:
            input_scale, max_payload = network.input_gain / input_max_value, input_max_value
            if calibration is not None:
                payloads = np.rint(calibration * input_max_value)
        else:
            input_scale, max_payload = 1.0, 1
        op = layer.synapse.op
        if op in ("dense", "dense_rec") and k == 0 and current:
            compiled, payload_max = _graded_input_layer(name, layer, profile,
                                                        network.input_gain,
                                                        input_max_value, calibration)
        elif op in ("conv", "sumpool"):
            compiled = quantize_conv_layer(name, layer.synapse, layer.in_shape,
                                           layer.out_shape, layer.neuron, profile,
                                           input_scale, max_payload, payloads)
        else:
            rec = layer.synapse.weight_rec.astype(np.float64) if op == "dense_rec" else None
            compiled = quantize_layer(name, layer.synapse.weight.astype(np.float64),
                                      layer.neuron, profile, input_scale, max_payload,
                                      payloads, rec)
            compiled = to_netx_grid(compiled) if netx else compiled
        layers.append(dataclasses.replace(compiled, source=layer.name))
    from rewire.compiler.mapping import map_cores  # mapping imports quantize's helpers

    mapping = map_cores(layers, profile, cores)
    return CompiledNetwork(layers=tuple(layers), steps=network.steps,
                           encoding=network.encoding, input_gain=network.input_gain,
                           input_max_value=payload_max, profile=profile,
                           mapping=mapping, notes=network.notes, source=network.source)
