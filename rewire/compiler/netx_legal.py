"""netx legalisation, in one place: what a Lava netx file (lava-dl 0.6 ``netx/hdf5.py``) and
Lava's fixed-point processes (lava-nc 0.10) do to a compiled network, and how the compiler and
the writers make the file, the integer model and Lava agree.

* the weight grid: netx's ``optimize_weight_bits`` (lava-dl 0.6 ``netx/utils.py``) and Lava's
  ``clip_weights``/``truncate_weights`` (``lava/utils/weightutils.py``) drop low weight bits
  of a layer whose largest magnitude is below 128 (lava #859): :func:`netx_effective_weights`,
  :func:`netx_exact`, :func:`to_netx_grid`, :func:`netx_weights`;
* an all-zero dense layer, which netx cannot load (lava #501): :func:`silent_guard`;
* Lava's one-step delay per ``Dense``/``Conv`` process: :func:`lava_delay_steps`,
  :func:`pad_silent` and :func:`pad_for_lava` (used by :func:`rewire.compiler.simulate.align`
  and :func:`rewire.export.lava_run.run_netx`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.errors import CompileError, ExportError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledDense, CompiledRecurrentDense

__all__ = ["netx_effective_weights", "netx_exact", "grid_matrix", "to_netx_grid", "netx_weights",
           "GUARD_WEIGHT", "silent_guard", "lava_delay_steps", "pad_silent", "pad_for_lava"]


def lava_delay_steps(net: CompiledNetwork) -> int:
    """Steps Lava delays ``net``'s output: one per layer (each ``Dense``/``Conv`` process
    delivers its input a step late; the source and the sink add none)."""
    return len(net.layers)


def pad_silent(payload: np.ndarray, steps: int) -> np.ndarray:
    """``payload`` ``(T, ...)`` with ``steps`` zero steps appended (same dtype)."""
    payload = np.asarray(payload)
    return np.concatenate([payload, np.zeros((steps,) + payload.shape[1:], payload.dtype)])


def pad_for_lava(net: CompiledNetwork, payload: np.ndarray) -> np.ndarray:
    """Append :func:`lava_delay_steps` silent steps to ``payload`` ``(T, B, n_in)`` (int64):
    the padded input lets the whole response of the last input step come out of Lava."""
    return pad_silent(np.asarray(payload, dtype=np.int64), lava_delay_steps(net))


def _trailing_zero_bits(w: np.ndarray, cap: int = 8) -> int:
    """Largest ``n <= cap`` with every entry of ``w`` divisible by ``2**n`` (netx's search):
    the trailing zero bits of the bitwise OR of all entries (two's complement)."""
    acc = int(np.bitwise_or.reduce(w, axis=None)) if w.size else 0
    n = 0
    while n < cap and not acc & (1 << n):
        n += 1
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
    return _effective(full if full.dtype.kind in "iu" else full.astype(np.int64)
                      ).astype(np.int64)


def _effective(full: np.ndarray) -> np.ndarray:
    """:func:`netx_effective_weights` in ``full``'s integer dtype (int32 holds every value:
    weights in 9 bits shifted by at most 8). A zero weight stays zero through every step, so
    the whole matrix is transformed as it is."""
    if not full.size or not full.any():
        return full.copy()
    wmax, wmin = int(full.max()), int(full.min())
    if wmax > 254 or wmin < -256 or np.any(full & 1):
        raise ValueError(f"weights must be even and in [-256, 254], got [{wmin}, {wmax}]")
    s, signed = _netx_upscale(wmax, wmin)
    n = _trailing_zero_bits(full) - signed
    num_weight_bits = 8 - s - n
    w = full if full.dtype.itemsize >= 4 else full.astype(np.int32)
    # lava/proc/dense/models.py: sign mode, clip_weights(num_bits=8), truncate_weights
    if wmin >= 0:
        lo, hi, mixed, negate = 0, 255, 0, False
    elif wmax <= 0:
        lo, hi, mixed, negate = 0, 255, 0, True
    else:
        lo, hi, mixed, negate = -256, 255, 1, False
    k = 8 - num_weight_bits + mixed
    if k < s:  # pragma: no cover - even weights always give k >= s
        raise ValueError("netx weight exponent does not separate over synapses")
    w2 = np.clip(-(w << s) if negate else w << s, lo, hi)
    w2 >>= k
    w2 <<= k
    if negate:
        np.negative(w2, out=w2)
    w2 >>= s
    return w2


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
    return bool(np.array_equal(_effective(w) if w.dtype.kind in "iu" else
                               netx_effective_weights(w), w))


def grid_matrix(layer: CompiledDense) -> np.ndarray:
    """The integer matrix netx's ``optimize_weight_bits`` sees for a dense layer:
    ``[W | W_rec]`` (:attr:`~rewire.ir.compiled_layers.CompiledLayer.fan_in_matrix`), plus
    the bias column ``bias_int`` when the layer has a bias (on netx it is the weight of an
    always-on input line or relay neuron, :mod:`rewire.compiler.bias_lines`)."""
    full = layer.fan_in_matrix
    if layer.bias_int is None:
        return full
    return np.hstack([full, layer.bias_int.reshape(-1, 1).astype(full.dtype)])


def to_netx_grid(layer: CompiledDense) -> CompiledDense:
    """Make a dense layer's weights a fixed point of :func:`netx_effective_weights`.

    When the largest weight magnitude is below 128, netx would silently drop low weight bits
    in Lava; instead the compiler stores the weights Lava will really use (iterated to a fixed
    point, at most a few rounds) so that the integer model, the file and Lava agree, and notes
    it in the layer's ``notes``. A recurrent layer's ``[W | W_rec]`` is treated as one matrix,
    as netx's ``dense_rec`` does (lava-dl 0.6 ``netx/hdf5.py``: ``optimize_weight_bits`` of the
    concatenation), and so is a bias column (:func:`grid_matrix`).
    """
    full = grid_matrix(layer)
    if netx_exact(full):
        return layer
    w = np.asarray(full, np.int32 if full.dtype.itemsize <= 4 else np.int64)
    for _ in range(16):
        e = _effective(w)
        if np.array_equal(e, w):
            break
        w = e
    else:  # pragma: no cover - the grid only coarsens, so this converges
        raise CompileError(f"layer {layer.name}: netx weight grid did not converge")
    if np.array_equal(w, full):
        return layer
    lost = int(np.count_nonzero(full)) - int(np.count_nonzero(w))
    top = max(int(full.max()), -int(full.min()))
    note = (f"largest weight {top} < 128: weights rounded onto "
            f"netx's coarser grid as Lava applies them ({lost} synapses lost)")
    n_in, n_out = layer.weight_int.shape[1], layer.shape[0]
    rec = {"weight_rec_int": w[:, n_in:n_in + n_out].astype(np.int32)} \
        if isinstance(layer, CompiledRecurrentDense) else {}
    if layer.bias_int is not None:
        rec["bias_int"] = w[:, -1].astype(np.int32)
    return dataclasses.replace(layer, weight_int=w[:, :n_in].astype(np.int32),
                               notes=layer.notes + (note,), **rec)


def netx_weights(profile: HardwareProfile) -> bool:
    """Whether dense weights go through netx's ``optimize_weight_bits`` (Loihi weight format)."""
    w = profile.weights
    return "netx" in profile.formats and w.max_int <= 254 and w.min_int >= -256 \
        and w.step % 2 == 0


GUARD_WEIGHT = -254  # netx keeps it exact: mixed sign mode, scale 128/254 < 1, exponent 0


def silent_guard(net: CompiledNetwork, k: int, layer: CompiledDense):
    """How an all-zero dense layer is written so that netx loads it (lava #501).

    netx's ``optimize_weight_bits`` crashes on an all-zero matrix (``log2(255 / 0)``). The
    layer is written with one inhibitory synapse, ``GUARD_WEIGHT`` from input 0 to neuron 0,
    ``iDecay = 4096`` and ``vDecay = 4095``: then ``u = a << 6 <= 0`` every step (no
    accumulation, no 24-bit wrap since ``254 * payload * 64 < 2**23``) and ``v <= 0`` never
    crosses the threshold. Every neuron stays silent, exactly as with zero weights; the
    layer's group carries ``rewire_all_zero = 1``.

    Returns:
        ``(weight int16 (out, in), iDecay, vDecay)``.

    Raises:
        rewire.errors.ExportError: the input payload is too large for the guard (over 9
            graded bits).
    """
    payload = net.input_max_value if (k == 0 and net.encoding == "current") else 1
    half = 1 << (net.profile.neuron.state_bits - 1)
    if abs(GUARD_WEIGHT) * payload << net.profile.neuron.activation_shift >= half:
        raise ExportError(f"netx export: layer {layer.name}: all synapses pruned and the "
                          f"input payload {payload} is too large for netx's silent guard "
                          f"synapse", "netx", layer.name)
    weight = np.zeros(layer.shape, dtype=np.int16)
    weight[0, 0] = GUARD_WEIGHT
    unit = net.profile.neuron.decay_unit
    return weight, unit, unit - 1
