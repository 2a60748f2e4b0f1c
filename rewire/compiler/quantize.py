r"""Compile an IR network to the chip's fixed-point CUBA arithmetic (Lava's ``PyLifModelBitAcc``,
lava-nc 0.10 ``lava/proc/lif/models.py``; derivation in docs/compiler.md).

Norse's LIF step and Loihi's CUBA step are the same recurrence once

.. math::
    \mathrm{iDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{syn}^{-1}), \quad
    \mathrm{vDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{mem}^{-1}), \\
    w_\mathrm{int} = \mathrm{round}(w\,\Delta t\,\tau_\mathrm{mem}^{-1} S\,c_\mathrm{in}), \quad
    \mathrm{vThMant} = \mathrm{round}(v_\mathrm{th} S),

with one scale :math:`S` per layer and :math:`c_\mathrm{in}` the float value of one unit of
input payload. Only the rounding differs. That is the IR's ``CubaLIF``; its other neuron nodes
(:mod:`rewire.ir.nodes`) are CUBA neurons too (:mod:`rewire.ir.chip_neurons`, one class per
kind): ``LIF`` and ``LI`` with ``iDecay = 4096`` (the current lasts one step, so the input enters ``v`` directly), ``IF``
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
  ``state_bits`` (current bits), so the chip's current never wraps (nor, on netx, that of the
  relay neurons carrying a later layer's bias: relay current; a bias counts as one more weight).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.compiler._rows import RowBlocks, calibrated_max, conv_patches, int_row_sums
from rewire.compiler.bias_lines import max_relay_threshold
from rewire.compiler.diagnostics import with_warnings
from rewire.compiler.mapping import map_cores
from rewire.compiler.netx_legal import grid_matrix, netx_exact, netx_weights, to_netx_grid
from rewire.compiler.rounding import round_weights, weight_magnitude
from rewire.compiler.skips import check_skips, conv_skip_columns, split_skips, with_conv_skips
from rewire.compiler.xylo import compile_xylo
from rewire.errors import CompileError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir import nodes as ir_nodes
from rewire.ir.chip_neurons import chip_class
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import (CompiledConv, CompiledDense, CompiledRecurrentDense,
                                       CompiledSumPool, layer_names, lookup)
from rewire.ir.network import Network

ACTIVATION_BITS = 16  # Lava's LIF a_in port: LavaPyType(np.int16, precision=16)
ACTIVATION_MAX = 2 ** (ACTIVATION_BITS - 1) - 1


def quantize_layer(name: str, weight: np.ndarray, neuron, profile: HardwareProfile,
                   input_scale: float, max_payload: int,
                   payloads: np.ndarray | None = None,
                   weight_rec: np.ndarray | None = None,
                   bias: np.ndarray | None = None, relays: bool = False) -> CompiledDense:
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
        bias: float ``(out,)`` bias (``a = W x + b``), or ``None``. It is quantized as one
            more column of weights carrying an always-on 1 (``bias_int = round(b gain S)``
            on the weight grid): ``S`` keeps it inside the weight bits and counts it in the
            activation and current bounds, and on netx it becomes exactly such a synapse
            (:mod:`rewire.compiler.bias_lines`).
        relays: the layer holds netx relay neurons for a later layer's bias: ``S`` keeps
            ``vThMant`` within :func:`~rewire.compiler.bias_lines.max_relay_threshold`.

    Returns:
        A :class:`~rewire.ir.compiled_layers.CompiledDense` (a
        :class:`~rewire.ir.compiled_layers.CompiledRecurrentDense` with ``weight_rec``). A layer whose synapses are all pruned compiles (its scale
        is then set by the threshold) and says so in ``notes``.

    Raises:
        CompileError: non-finite weights, a decay that rounds outside ``1..2**decay_bits``
            (0 allowed for ``IF``'s ``vDecay``), or a ``vThMant`` that cannot be represented.
    """
    return _quantize(name, RowBlocks(weight, weight_rec, bias), neuron, profile, input_scale,
                     max_payload, payloads, relays)


def _quantize(name: str, rows: RowBlocks, neuron, profile: HardwareProfile,
              input_scale: float, max_payload: int, payloads, relays=False) -> CompiledDense:
    """:func:`quantize_layer` of weights read by ``rows`` (shared by the graded input
    layer's tries, so that the per-row sums are taken once)."""
    n_in, n_out, width = rows.n_in, rows.n_out, rows.width
    if rows.bad:
        raise CompileError(f"layer {name}: {rows.bad} weights are NaN or infinite (training "
                           f"diverged); lower --lr or check the model")
    chip = chip_class(neuron)
    i_decay, v_decay, gain = chip.decays(neuron, profile, name)
    gain = gain * input_scale   # float weight -> u per unit S
    # recurrent inputs are binary spikes of the layer itself, and the bias an always-on 1,
    # whose value is 1, not input_scale: scale their weights so that one unit of "payload"
    # means one spike
    col_max = np.full(width, float(max_payload))
    col_max[n_in:] = 1.0
    wfmt, nfmt = profile.weights, profile.neuron
    wmag = weight_magnitude(wfmt)
    wmax = rows.wmax(input_scale)
    cal = None if payloads is None else np.asarray(payloads, np.float64)
    if cal is None:
        act = rows.max_row_sum(col_max, input_scale) * gain
    else:
        act = calibrated_max(np.vstack([rows.block(r0, input_scale) for r0 in rows.starts])
                             if n_out else np.zeros((0, width)), cal, n_in) * gain
    state_max = 2 ** (nfmt.state_bits - 1) - 1
    current_max = state_max * (i_decay / nfmt.decay_unit) / 2 ** nfmt.activation_shift
    limits = {
        "weight bits": wmag / (gain * wmax) if wmax > 0 else np.inf,
        "threshold bits": chip.threshold_limit(neuron, profile),
        "activation bits": ACTIVATION_MAX / act if act > 0 else np.inf,
        "current bits": current_max / act if act > 0 else np.inf,
    }
    if relays and neuron.spiking:
        limits["relay current"] = max_relay_threshold(i_decay, profile) / neuron.v_th
    limited_by = min(limits, key=limits.get)
    scale = limits[limited_by]
    if not np.isfinite(scale):  # a readout with every synapse pruned: any scale will do
        scale, limited_by = 1.0, "nothing (no synapse, no threshold)"
    step = wfmt.step
    bound = min(ACTIVATION_MAX, current_max)
    w_int = np.empty((n_out, width), np.int32)
    per_col = col_max if rows.extra is not None else float(max_payload)
    while True:  # w_int block by block; reached: its largest |synaptic input|
        k, reached = gain * scale / step, 0.0
        for r0 in rows.starts:
            q = round_weights(rows.block(r0, input_scale), k, wfmt)  # a fresh block, in place
            w_int[r0:r0 + len(q)] = q
            if cal is None and len(q):
                reached = max(reached, float(int_row_sums(q, per_col, wmag).max()))
        if cal is not None:
            reached = calibrated_max(w_int.astype(np.float64), cal, n_in)
        if reached <= bound or scale < 1e-12:
            break
        scale *= min(0.99, bound / reached)  # rounding pushed the bound over: shrink
    v_th_mant = chip.threshold_mant(neuron, scale, profile, name, limited_by)
    notes = ()
    if not np.any(w_int):
        notes = ("every synapse is pruned or rounds to 0: the layer never spikes",)
    fields = dict(name=name, weight=np.asarray(rows.weight, np.float32),
                  weight_int=np.ascontiguousarray(w_int[:, :n_in]), scale=float(scale),
                  input_scale=float(input_scale), scale_limited_by=limited_by, notes=notes,
                  chip=chip(neuron, i_decay, v_decay, v_th_mant))
    if rows.bias is not None:
        fields.update(bias=np.asarray(rows.bias, np.float32).copy(),
                      bias_int=np.ascontiguousarray(w_int[:, -1]))
    if rows.weight_rec is None:
        return CompiledDense(**fields)
    # every extra binary column: the recurrent weights, and the skips split_skips takes off
    rec_int = np.ascontiguousarray(w_int[:, n_in:n_in + rows.weight_rec.shape[1]])
    return CompiledRecurrentDense(weight_rec=np.asarray(rows.weight_rec, np.float32),
                                  weight_rec_int=rec_int, **fields)


def quantize_conv_layer(name: str, synapse, in_shape: tuple[int, int, int],
                        out_shape: tuple[int, int, int], neuron, profile: HardwareProfile,
                        input_scale: float, max_payload: int,
                        payloads: np.ndarray | None = None,
                        extra: np.ndarray | None = None, relays: bool = False) -> CompiledConv:
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
        extra: optional float ``(C_out, m)`` columns of binary inputs that share the layer's
            scale (a skip connection's worst row per channel,
            :func:`rewire.compiler.skips.conv_skip_columns`).
        relays: as :func:`quantize_layer` (netx relay channels, :mod:`~rewire.compiler.conv_lines`).

    Returns:
        A :class:`~rewire.ir.compiled_layers.CompiledConv` (a
        :class:`~rewire.ir.compiled_layers.CompiledSumPool` for a sum pool) with 4-D
        ``weight``/``weight_int``.

    Raises:
        CompileError: any :func:`quantize_layer` error.
    """
    pool = isinstance(synapse, ir_nodes.SumPool2d)
    weight = (synapse.kernel_weights(in_shape[0]) if pool else synapse.weight).astype(np.float64)
    groups = int(in_shape[0]) if pool else int(synapse.groups)
    stride, padding = tuple(synapse.stride), tuple(synapse.padding)
    patches = None
    if payloads is not None and groups == 1:
        patches = conv_patches(payloads, in_shape, weight.shape[2:], stride, padding)
    flat = quantize_layer(name, weight.reshape(len(weight), -1), neuron, profile, input_scale,
                          max_payload, patches, extra, bias=None if pool else synapse.bias,
                          relays=relays)
    fields = dict(name=name, weight=flat.weight.reshape(weight.shape),
                  weight_int=flat.weight_int.reshape(weight.shape), scale=flat.scale,
                  input_scale=flat.input_scale, scale_limited_by=flat.scale_limited_by,
                  chip=flat.chip, notes=flat.notes, bias=flat.bias, bias_int=flat.bias_int,
                  in_shape=tuple(in_shape),
                  out_shape=tuple(out_shape), stride=stride, padding=padding, groups=groups)
    if pool:
        return CompiledSumPool(pool_weight=float(synapse.weight), **fields)
    return CompiledConv(**fields)


def _graded_input_layer(name: str, layer, profile: HardwareProfile, input_gain: float,
                        input_max_value: int, calibration: np.ndarray | None,
                        relays: bool = False) -> tuple[CompiledDense, int]:
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
    weight = layer.synapse.weight  # float32; quantize_layer widens it block by block
    rec = layer.synapse.weight_rec if isinstance(layer.synapse, ir_nodes.RecurrentDense) \
        else None
    netx, wfmt = netx_weights(profile), profile.weights
    rows = RowBlocks(weight, rec, layer.synapse.bias)
    best = None
    payload = input_max_value
    while payload >= 1:
        cal = None if calibration is None else np.rint(np.asarray(calibration) * payload)
        compiled = _quantize(name, rows, layer.neuron, profile, input_gain / payload, payload,
                             cal, relays)
        full = grid_matrix(compiled)
        wtop = max(int(full.max()), -int(full.min())) if full.size else 0
        top_bit = 2 * wtop >= min(wfmt.max_int, -wfmt.min_int) + wfmt.step or not rows.wmax_in
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


def _dense(name, layer, profile, input_scale, max_payload, payloads, netx,
           relays, skips=()) -> CompiledDense:
    rec = getattr(layer.synapse, "weight_rec", None)  # RecurrentDense only
    # skip weights carry binary spikes, as recurrent ones do: they join the layer's extra
    # columns and share its scale S (every bound then covers them), and are split off after
    extra = [w for w in [rec, *(skip.weight for skip in skips)] if w is not None]
    compiled = quantize_layer(name, layer.synapse.weight, layer.neuron, profile, input_scale,
                              max_payload, payloads, np.hstack(extra) if extra else None,
                              layer.synapse.bias, relays)
    compiled = to_netx_grid(compiled) if netx else compiled
    return split_skips(compiled, rec, skips) if skips else compiled


def _conv(name, layer, profile, input_scale, max_payload, payloads, netx,
          relays, skips=()) -> CompiledConv:
    compiled = quantize_conv_layer(name, layer.synapse, layer.in_shape, layer.out_shape,
                                   layer.neuron, profile, input_scale, max_payload, payloads,
                                   conv_skip_columns(layer.out_shape, skips), relays)
    return with_conv_skips(compiled, skips, profile) if skips else compiled


#: IR synapse type -> how its layer is quantized (the graded input layer aside).
QUANTIZERS = {ir_nodes.Dense: _dense, ir_nodes.RecurrentDense: _dense,
              ir_nodes.Conv2d: _conv, ir_nodes.SumPool2d: _conv}


def compile_network(network: Network, profile: HardwareProfile, input_max_value: int | None = None,
                    cores: int | None = None, calibration: np.ndarray | None = None,
                    strict: bool = False) -> CompiledNetwork:
    """Compile an IR :class:`~rewire.ir.network.Network` for ``profile``.

    Each IR layer becomes the compiled layer of its synapse type (:mod:`rewire.ir.compiled_layers`)
    named by :func:`~rewire.ir.compiled_layers.layer_names` with its own neuron's chip image
    (:mod:`rewire.ir.chip_neurons`), mapped onto cores (:func:`rewire.compiler.mapping.map_cores`).

    Args:
        network: the IR network (lower a torch/Norse module or a NIR graph first with
            :func:`rewire.frontends.lower`, or call :func:`rewire.compile`, which does).
        profile: target chip.
        input_max_value: ``current`` encoding: the integer payload standing for input 1.0
            (16 for digits, 255 for MNIST); default 255 (15 on Xylo). Ignored for ``rate`` input.
        cores: cores allotted to the model (default: the whole chip).
        calibration: optional inputs ``(B, *input_shape)`` or ``(B, n_in)`` in [0, 1] (the
            training set) bounding the first layer's graded input (current encoding);
            default: the worst case; also the inputs of the class-agreement check.
        strict: refuse the network when it has warnings (below) instead of warning.

    Returns:
        The frozen :class:`CompiledNetwork`, its ``warnings`` the ones issued as
        :class:`~rewire.errors.RewireWarning` s (:mod:`rewire.compiler.diagnostics`).

    ``profile.neuron.model`` picks the compiler (:data:`COMPILERS`): ``cuba`` (this module),
    ``cuba_bitshift`` (Xylo: :func:`rewire.compiler.xylo.compile_xylo`, its own errors).

    Raises:
        CompileError: a neuron model without a compiler, ``input_max_value`` not
            an integer in [1, 2**24], ``cores`` outside [1, limits.cores], and the errors of
            :meth:`~rewire.ir.chip_neurons.ChipNeuron.check`, :func:`quantize_layer` and
            :func:`rewire.compiler.mapping.map_cores` (``MappingError``), naming the layer;
            with ``strict``, ``StrictError`` naming every warning.
        TypeError: ``network`` is not an IR ``Network`` (named, with how to lower it).
    """
    if not isinstance(network, Network):
        raise TypeError(f"network: give an IR rewire.ir.Network, got {type(network).__name__}; "
                        f"lower a model first with rewire.frontends.lower(model) or call "
                        f"rewire.compile(model, profile)")
    if profile.neuron.model not in COMPILERS:
        raise CompileError(f"profile {profile.name!r}: neuron model {profile.neuron.model!r} "
                           f"is not supported (only {', '.join(map(repr, COMPILERS))})")
    compiler = COMPILERS[profile.neuron.model]
    return compiler(network, profile, input_max_value, cores, calibration, strict)


def compile_cuba(network: Network, profile: HardwareProfile, input_max_value=None, cores=None,
                 calibration=None, strict=False) -> CompiledNetwork:
    """:func:`compile_network` for a ``cuba`` profile (the module docstring)."""
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
    netx = netx_weights(profile)
    for k, (name, layer) in enumerate(zip(layer_names(network.layers), network.layers)):
        payloads = None
        if k == 0 and current:
            input_scale, max_payload = network.input_gain / input_max_value, input_max_value
            if calibration is not None:
                payloads = np.rint(calibration * input_max_value)
        else:
            input_scale, max_payload = 1.0, 1
        dense = isinstance(layer.synapse, (ir_nodes.Dense, ir_nodes.RecurrentDense))
        # netx carries a later layer's bias through relay neurons in this one (bias_lines)
        relays = netx and any(getattr(l.synapse, "bias", None) is not None
                              for l in network.layers[k + 1:])
        skips = check_skips(network, k, name, layer, current)
        if skips:
            compiled = lookup(QUANTIZERS, layer.synapse, "compile_network")(
                name, layer, profile, input_scale, max_payload, payloads, netx, relays, skips)
        elif dense and k == 0 and current:
            compiled, payload_max = _graded_input_layer(name, layer, profile,
                                                        network.input_gain, input_max_value,
                                                        calibration, relays)
        else:
            compiled = lookup(QUANTIZERS, layer.synapse, "compile_network")(
                name, layer, profile, input_scale, max_payload, payloads, netx, relays)
        layers.append(dataclasses.replace(compiled, source=layer.name))
    mapping = map_cores(layers, profile, cores)
    chip = CompiledNetwork(layers=tuple(layers), steps=network.steps,
                           encoding=network.encoding, input_gain=network.input_gain,
                           input_max_value=payload_max, profile=profile,
                           mapping=mapping, notes=network.notes, source=network.source,
                           input_layout=network.input_shape)
    return with_warnings(chip, calibration, strict)  # rewire.compiler.diagnostics


#: ``profile.neuron.model`` -> its compiler (same arguments as :func:`compile_network`).
COMPILERS = {"cuba": compile_cuba, "cuba_bitshift": compile_xylo}
