r"""Compile an IR network of ``BitshiftLIF`` layers for SynSense Xylo Audio 2 (SYNS61201;
the ``cuba_bitshift`` profile, ``hw_profiles/xylo.toml``).

Xylo holds three weight matrices (rockpool 3.1 ``devices/xylo/syns61201/xylo_samna.py``,
``config_from_specification``): ``weights_in (16, Nh)`` from the input channels to the hidden
neurons, ``weights_rec (Nh, Nh)`` among the hidden neurons and ``weights_out (Nh, 8)`` to the
readout. A chain of dense layers maps onto them as rockpool's mapper maps it: layer 0's weights
go to ``weights_in``, every later hidden layer is a block of ``weights_rec`` (so are the
recurrent weights of a ``RecurrentDense`` hidden layer), the last layer's weights are
``weights_out``. Each matrix holds int8 weights and one ``weight_shift``: the chip's integer
weight is ``int8 << weight_shift``.

Per layer one scale :math:`S` takes the float model to the chip's units (the neuron's gain is
1: the synaptic input enters :math:`I` unscaled, :class:`rewire.ir.chip_bitshift.CompiledBitshiftLIF`):

.. math::
    w_\mathrm{int} = \mathrm{round}(w\,S\,c_\mathrm{in} / 2^{s}) \ll s, \qquad
    \theta = \mathrm{round}(v_\mathrm{th}\,S),

with :math:`c_\mathrm{in}` the float value of one unit of input (``input_gain /
input_max_value`` for the first layer under ``current`` encoding, whose payload is the event
count 0..15; 1 for spikes) and :math:`s` the shift of the weight's matrix. :math:`S` is the
largest value (``scale_limited_by`` names the bound that set it) such that

* ``threshold bits``: :math:`\theta \le` ``neuron.max_threshold_mant`` (32767, int16);
* ``weight bits``: the weights fit int8 at the matrix's shift, at most
  :meth:`~rewire.ir.chip_bitshift.CompiledBitshiftLIF.max_weight_shift` (8);
* without calibration data, ``activation bits``: the worst-case synaptic input of one step,
  :math:`\sum_j |w_{\mathrm{int},ij}|\,p_j` (:math:`p_j` at most ``input_max_value`` input
  events, or 31 spikes of a hidden neuron), fits int16, so that no sum of one step saturates;
* with calibration data (``current`` encoding), ``state bits``: :math:`I + a` (every partial
  sum of :math:`a`, in any order: :func:`rewire.compiler.xylo_bounds.split`) and :math:`V`
  stay within int16 on the calibration inputs, first estimated from the float model's
  states (times :math:`S`, with :data:`STATE_MARGIN`), then checked in the integer model, on
  the chip's timing (hidden-to-hidden and readout weights one step late) and without it,
  shrinking :math:`S` of a layer that still saturates.

The shift of a matrix is the smallest that lets every layer in it keep the :math:`S` its other
bounds allow (the largest weight's int8 value then lies in 64..127); layers sharing
``weights_rec`` share its shift, the smallest of theirs, and a layer whose weights would need
more take a smaller :math:`S` (``weight bits``). docs/compiler.md, "Xylo", says more.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from rewire.compiler.diagnostics import CALIBRATION_SAMPLES, with_warnings
from rewire.compiler.mapping import layer_connectivity, map_layers
from rewire.compiler.xylo_bounds import (activation_peaks, float_peaks, payload_max,
                                         state_peaks)
from rewire.compiler.xylo_checks import check_fan_out, check_network
from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir import nodes as ir_nodes
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledDense, CompiledRecurrentDense, layer_names
from rewire.ir.network import Network

__all__ = ["MATRICES", "STATE_MARGIN", "compile_xylo", "xylo_shifts",
           "matrix_of", "matrix_shift"]

MATRICES = ("weights_in", "weights_rec", "weights_out")
STATE_MARGIN = 0.9  #: share of int16 the float model's states may fill (the integer check follows)
_ROUNDS = 8         #: integer checks of the state bound before giving up


def matrix_of(k: int, n_layers: int, recurrent_part: bool = False) -> str:
    """The Xylo matrix that holds layer ``k``'s weights (``recurrent_part``: its recurrent
    weights) in a chain of ``n_layers``: ``weights_in``, ``weights_rec`` or ``weights_out``."""
    if recurrent_part or 0 < k < n_layers - 1:
        return "weights_rec"
    return "weights_in" if k == 0 else "weights_out"


def _blocks(layers) -> list[tuple[str, int, str]]:
    """``(matrix, layer index, attribute)`` of every weight block, ``attribute`` ``weight`` or
    ``weight_rec`` (the same names hold ``weight_int``/``weight_rec_int``)."""
    n = len(layers)
    out = []
    for k, layer in enumerate(layers):
        out.append((matrix_of(k, n), k, "weight"))
        syn = getattr(layer, "synapse", layer)
        if getattr(syn, "weight_rec", None) is not None:
            out.append((matrix_of(k, n, True), k, "weight_rec"))
    return out


def _int8(profile: HardwareProfile) -> tuple[int, int, int]:
    """``(lowest, highest)`` int8 weight and the largest ``weight_shift`` on ``profile``."""
    fmt = profile.weights
    return fmt.min_int, fmt.max_int, CompiledBitshiftLIF.max_weight_shift(profile)


def matrix_shift(blocks, profile: HardwareProfile, name: str = "weights") -> int:
    """The smallest ``weight_shift`` ``s`` in ``0..max_weight_shift`` (8) such that every
    integer weight of ``blocks`` is ``m << s`` with ``m`` an int8 (``weights.bits``) value; 0
    for an all-zero matrix.

    Raises:
        CompileError: no such shift (named with the largest weight).
    """
    lo, hi, top = _int8(profile)
    wide = [np.asarray(b, np.int64) for b in blocks if np.size(b)]
    for s in range(top + 1):
        if all(not np.any(w & ((1 << s) - 1)) and lo <= (w >> s).min() and (w >> s).max() <= hi
               for w in wide):
            return s
    worst = max((int(np.abs(w).max()) for w in wide), default=0)
    raise CompileError(f"{name}: no weight_shift in 0..{top} makes every weight an int8 "
                       f"shifted left (largest |w| {worst}); compile the model again for xylo")


def xylo_shifts(net: CompiledNetwork) -> dict[str, int]:
    """``{"weights_in": s, "weights_rec": s, "weights_out": s}``: each matrix's
    ``weight_shift``, read from the compiled layers' effective integer weights (``weight_int =
    int8 << shift``; the int8 values written to the chip are ``weight_int >> shift``). The
    smallest shift that holds the weights, so a reloaded network gives the shifts it was
    compiled with. 0 for an empty ``weights_rec``.

    Raises:
        CompileError: a matrix whose weights no shift holds.
    """
    groups = {m: [] for m in MATRICES}
    for matrix, k, attr in _blocks(net.layers):
        groups[matrix].append(getattr(net.layers[k], attr + "_int"))
    return {m: matrix_shift(ws, net.profile, m) for m, ws in groups.items()}


def compile_xylo(network: Network, profile: HardwareProfile, input_max_value: int | None = None,
                 cores: int | None = None, calibration: np.ndarray | None = None,
                 strict: bool = False) -> CompiledNetwork:
    """Compile a chain of dense ``BitshiftLIF`` layers for Xylo (module docstring).

    Args:
        network: the IR network (``Dense``/``RecurrentDense`` layers of
            :class:`~rewire.ir.neurons.BitshiftLIF` neurons, the last one the readout).
        profile: a ``cuba_bitshift`` profile (``load_profile("xylo")``).
        input_max_value: ``current`` encoding: the event count standing for ``x = 1``
            (1..15, default 15). Ignored for ``rate`` input.
        cores: 1 or ``None`` (Xylo has one core).
        calibration: optional inputs ``(B, n_in)`` in [0, 1] (``current`` encoding; the first
            :data:`~rewire.compiler.diagnostics.CALIBRATION_SAMPLES` are used) bounding
            ``I`` and ``V``; also the inputs of the class-agreement check.
        strict: refuse the network when it has warnings.

    Returns:
        The :class:`~rewire.ir.compiled.CompiledNetwork`: :class:`CompiledDense` /
        :class:`CompiledRecurrentDense` layers whose ``chip`` is a
        :class:`~rewire.ir.chip_bitshift.CompiledBitshiftLIF` (``i_decay = dash_syn``,
        ``v_decay = dash_mem``, ``v_th_mant`` the int16 threshold) and whose ``weight_int`` are
        the effective integer weights ``int8 << shift`` (:func:`xylo_shifts`).

    Raises:
        CompileError: what :func:`rewire.compiler.xylo_checks.check_network` refuses, a
            threshold that rounds below 1, a fan-out over ``limits.fan_out``
            (``MappingError``), ``cores`` other than 1.
    """
    if input_max_value is None:
        input_max_value = 15
    if isinstance(input_max_value, bool) or not isinstance(input_max_value, (int, np.integer)) \
            or input_max_value < 1:
        raise CompileError(f"input_max_value must be an integer payload >= 1 (the events of "
                           f"x = 1, at most 15 on Xylo), got {input_max_value!r}")
    if cores is not None and (isinstance(cores, bool) or cores != 1):
        raise CompileError(f"cores must be 1 for {profile.name!r} (limits.cores = "
                           f"{profile.limits.cores}), got {cores!r}")
    input_max_value = int(input_max_value)
    check_network(network, profile, input_max_value)
    current = network.encoding == "current"
    layers = network.layers
    names = layer_names(layers)
    scales_in = [network.input_gain / input_max_value if current and k == 0 else 1.0
                 for k in range(len(layers))]
    if calibration is not None and current:
        calibration = np.asarray(calibration, np.float64).reshape(len(calibration), -1)
        payload = np.rint(np.clip(calibration[:CALIBRATION_SAMPLES], 0, 1) * input_max_value)
    else:
        payload = None
    caps = _caps(network, profile, scales_in, input_max_value if current else 1, payload)
    limit, bound = 2 ** (profile.neuron.state_bits - 1) - 1, \
        "activation bits" if payload is None else "state bits"
    for _ in range(_ROUNDS):  # rounding may push a bound over: shrink that layer's S
        compiled = _quantize(network, profile, names, scales_in, caps)
        over = activation_peaks(network, compiled, input_max_value if current else 1) \
            if payload is None else state_peaks(compiled, profile, payload, network.steps)
        if all(p <= limit for p in over):
            break
        caps = [(cap * limit / peak * 0.98, bound) if peak > limit else (cap, why)
                for (cap, why), peak in zip(caps, over)]
    else:
        raise CompileError(f"layer {names[int(np.argmax(over))]}: the synaptic input, I or V "
                           f"still leaves int16 after {_ROUNDS} smaller scales; lower the "
                           f"weights or the threshold's ratio to them")
    check_fan_out(compiled, profile)
    compiled = [dataclasses.replace(c, source=l.name) for c, l in zip(compiled, layers)]
    chip = CompiledNetwork(layers=tuple(compiled), steps=network.steps,
                           encoding=network.encoding, input_gain=network.input_gain,
                           input_max_value=input_max_value, profile=profile,
                           mapping=_map(compiled, profile, cores), notes=network.notes,
                           source=network.source, input_layout=network.input_shape)
    return with_warnings(chip, calibration, strict)  # rewire.compiler.diagnostics


def _map(layers, profile: HardwareProfile, cores):
    """:func:`rewire.compiler.mapping.map_layers` of the compiled layers, the first layer's
    inputs being the input channels only (its recurrent weights come from hidden neurons)."""
    conns = [layer_connectivity(l) for l in layers]
    conns[0] = dataclasses.replace(conns[0], n_in=layers[0].shape[1])
    return map_layers(conns, profile, cores)


def _float_rows(layer, scale_in: float) -> np.ndarray:
    """``[W c_in | W_rec]`` float64 ``(out, in [+ out])``: the weights per unit of ``S``."""
    w = layer.synapse.weight.astype(np.float64) * scale_in
    if isinstance(layer.synapse, ir_nodes.RecurrentDense):
        w = np.hstack([w, layer.synapse.weight_rec.astype(np.float64)])
    return w


def _caps(network: Network, profile: HardwareProfile, scales_in, first: int, payload):
    """Per layer ``(S cap, bound)`` from the threshold, the largest shift and either the
    worst-case activation (no calibration) or the float model's states on ``payload``."""
    state_max = 2 ** (profile.neuron.state_bits - 1) - 1
    peaks = None if payload is None else float_peaks(network, payload / first)
    caps, (_, hi, top) = [], _int8(profile)
    for k, layer in enumerate(network.layers):
        rows = _float_rows(layer, scales_in[k])
        wmax = float(np.abs(rows).max()) if rows.size else 0.0
        bounds = {"threshold bits": profile.neuron.max_threshold_mant / layer.neuron.v_th,
                  "weight bits": hi * 2 ** top / wmax if wmax else math.inf}
        if peaks is None:
            act = float((np.abs(rows) @ payload_max(k, layer, network.layers, first)).max())
            bounds["activation bits"] = state_max / act if act else math.inf
        elif peaks[k] > 0:
            bounds["state bits"] = STATE_MARGIN * state_max / peaks[k]
        why = min(bounds, key=bounds.get)
        caps.append((bounds[why], why))
    return caps


def _quantize(network: Network, profile: HardwareProfile, names, scales_in, caps):
    """The compiled layers for the scale caps ``caps``: each matrix's shift, each layer's
    ``S`` and its rounded weights and threshold."""
    layers = network.layers
    blocks = _blocks(layers)
    rows = {(k, attr): getattr(layers[k].synapse, attr).astype(np.float64)
            * (scales_in[k] if attr == "weight" else 1.0) for _, k, attr in blocks}
    wmax = {key: float(np.abs(w).max()) if w.size else 0.0 for key, w in rows.items()}
    lo, hi, top = _int8(profile)
    shift = {m: top for m in MATRICES}
    for matrix, k, attr in blocks:  # the smallest shift that keeps the cap, per block
        need = wmax[k, attr] * caps[k][0] / hi
        s = 0 if need <= 1 else min(top, math.ceil(math.log2(need)))
        shift[matrix] = min(shift[matrix], s)
    scales, why = [cap for cap, _ in caps], [w for _, w in caps]
    for matrix, k, attr in blocks:
        most = hi * 2 ** shift[matrix] / wmax[k, attr] if wmax[k, attr] else math.inf
        if most < scales[k]:
            scales[k], why[k] = most, "weight bits"
    out = []
    for k, layer in enumerate(layers):
        s = scales[k] if math.isfinite(scales[k]) else 1.0
        ints = {}
        for matrix, j, attr in blocks:
            if j == k:
                sh = shift[matrix]
                mant = np.clip(np.rint(rows[k, attr] * s / 2 ** sh), lo, hi)
                ints[attr] = (mant.astype(np.int64) << sh).astype(np.int32)
        neuron = layer.neuron
        ds, dm, _ = CompiledBitshiftLIF.decays(neuron, profile, names[k])
        th = CompiledBitshiftLIF.threshold_mant(neuron, s, profile, names[k], why[k])
        notes = () if np.any(ints["weight"]) else (
            "every synapse is pruned or rounds to 0: the layer never spikes",)
        fields = dict(name=names[k], weight=np.asarray(layer.synapse.weight, np.float32),
                      weight_int=ints["weight"], scale=float(s), input_scale=float(scales_in[k]),
                      scale_limited_by=why[k], notes=notes,
                      chip=CompiledBitshiftLIF(neuron, ds, dm, th))
        if "weight_rec" in ints:
            out.append(CompiledRecurrentDense(
                weight_rec=np.asarray(layer.synapse.weight_rec, np.float32),
                weight_rec_int=ints["weight_rec"], **fields))
        else:
            out.append(CompiledDense(**fields))
    return out
