r"""Compile a trained Norse SNN to the chip's fixed-point CUBA arithmetic (REFERENCE §3).

Norse's LIF step and Loihi's CUBA step are the same recurrence once

.. math::
    \mathrm{iDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{syn}^{-1}), \quad
    \mathrm{vDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{mem}^{-1}), \\
    w_\mathrm{int} = \mathrm{round}(w\,\Delta t\,\tau_\mathrm{mem}^{-1} S\,c_\mathrm{in}), \quad
    \mathrm{vThMant} = \mathrm{round}(v_\mathrm{th} S),

with one scale :math:`S` per layer and :math:`c_\mathrm{in}` the float value of one unit of
input payload. Only the rounding differs. :math:`S` is the largest value such that

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
from torch import nn
from torch.nn import functional as F

from rewire.compile.network import CompiledLayer, CompiledNetwork
from rewire.hw_profiles.profile import HardwareProfile
from rewire.training.conv import SpikingConvNet, SumPool2d
from rewire.training.model import NeuronConfig, SpikingMLP

ACTIVATION_BITS = 16  # Lava's LIF a_in port: LavaPyType(np.int16, precision=16)
ACTIVATION_MAX = 2 ** (ACTIVATION_BITS - 1) - 1


class CompileError(ValueError):
    """The network cannot run on the chip; the message names the layer, the limit and the fix."""


def decay_constant(rate_inv: float, dt: float, profile: HardwareProfile, what: str) -> int:
    """``round(2**decay_bits * dt * rate_inv)``: a Norse time constant as a chip decay.

    Raises:
        CompileError: the decay rounds to 0 (no leak on chip) or exceeds ``2**decay_bits``.
    """
    unit = profile.neuron.decay_unit
    if not np.isfinite(unit * dt * rate_inv):
        raise CompileError(f"{what}: dt * tau_inv = {dt * rate_inv:g} is not a finite number; "
                           f"give finite, positive dt and time constants")
    value = round(unit * dt * rate_inv)
    if value < 1 or value > unit:
        raise CompileError(f"{what}: dt * tau_inv = {dt * rate_inv:g} gives a decay of {value} "
                           f"/ {unit}; the chip needs 1..{unit} (change dt or the time constant)")
    return int(value)


def check_neuron(neuron: NeuronConfig) -> None:
    """Refuse neuron constants the chip's CUBA model cannot express.

    Raises:
        CompileError: ``v_leak`` or ``v_reset`` non-zero, or ``v_th <= 0``.
    """
    if neuron.v_leak != 0 or neuron.v_reset != 0:
        raise CompileError(f"neuron: v_leak = {neuron.v_leak} and v_reset = {neuron.v_reset} "
                           f"must both be 0 for the chip's CUBA neuron")
    if not neuron.v_th > 0:
        raise CompileError(f"neuron: v_th must be > 0, got {neuron.v_th}")


def quantize_layer(name: str, weight: np.ndarray, neuron: NeuronConfig, profile: HardwareProfile,
                   input_scale: float, max_payload: int,
                   payloads: np.ndarray | None = None) -> CompiledLayer:
    """Quantize one layer (see the module docstring for the choice of ``S``).

    Args:
        name: layer name for messages.
        weight: float ``(out, in)``.
        neuron: LIF constants.
        profile: target chip.
        input_scale: float value of one unit of input payload.
        max_payload: largest input payload (1 for binary spikes).
        payloads: optional calibration payloads ``(B, in)``; the activation bound is then the
            largest ``sum_j |w_ij| p_bj`` over them instead of the worst case.

    Raises:
        CompileError: the layer has no synapse left, or no scale satisfies every limit.
    """
    if not np.all(np.isfinite(weight)):
        raise CompileError(f"layer {name}: {int(np.count_nonzero(~np.isfinite(weight)))} "
                           f"weights are NaN or infinite (training diverged); lower --lr or "
                           f"check the model")
    i_decay = decay_constant(neuron.tau_syn_inv, neuron.dt, profile, f"layer {name} iDecay")
    v_decay = decay_constant(neuron.tau_mem_inv, neuron.dt, profile, f"layer {name} vDecay")
    gain = neuron.dt * neuron.tau_mem_inv * input_scale   # float weight -> u per unit S
    wmax = float(np.abs(weight).max())
    if wmax == 0:
        raise CompileError(f"layer {name}: every synapse is pruned (all-zero weights), so it "
                           f"can never spike; relax the budget (--connectivity/--max-synapses)")
    wfmt, nfmt = profile.weights, profile.neuron
    if payloads is None:
        payloads = np.full((1, weight.shape[1]), max_payload)
    payloads = np.abs(payloads).astype(np.int64)
    rowsum = float((payloads @ np.abs(weight).T).max())
    state_max = 2 ** (nfmt.state_bits - 1) - 1
    limits = {
        "weight bits": wfmt.max_int / (gain * wmax),
        "threshold bits": nfmt.max_threshold_mant / neuron.v_th,
        "activation bits": ACTIVATION_MAX / (gain * rowsum),
        "current bits": state_max * (i_decay / nfmt.decay_unit)
                        / (gain * rowsum * 2 ** nfmt.activation_shift),
    }
    limited_by = min(limits, key=limits.get)
    scale = limits[limited_by]
    step = wfmt.step
    while True:
        w_int = np.clip(np.round(weight * gain * scale / step) * step, wfmt.min_int, wfmt.max_int)
        w_int = w_int.astype(np.int32)
        a_max = int((payloads @ np.abs(w_int).T.astype(np.int64)).max())
        if a_max <= ACTIVATION_MAX or scale < 1e-12:
            break
        scale *= 0.99  # rounding pushed the worst case over: shrink a little
    v_th_mant = int(round(neuron.v_th * scale))
    if not 1 <= v_th_mant <= nfmt.max_threshold_mant:
        raise CompileError(f"layer {name}: vThMant = {v_th_mant} is outside 1..."
                           f"{nfmt.max_threshold_mant}; the weights span too wide a range")
    return CompiledLayer(name=name, weight=weight.astype(np.float32), weight_int=w_int,
                         scale=float(scale), input_scale=float(input_scale), i_decay=i_decay,
                         v_decay=v_decay, v_th_mant=v_th_mant, scale_limited_by=limited_by)


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


def quantize_conv_layer(name: str, module: nn.Module, in_shape: tuple[int, int, int],
                        out_shape: tuple[int, int, int], neuron: NeuronConfig,
                        profile: HardwareProfile, input_scale: float, max_payload: int,
                        payloads: np.ndarray | None = None) -> CompiledLayer:
    """Quantize a ``torch.nn.Conv2d`` or :class:`rewire.training.conv.SumPool2d` layer.

    The same per-layer scale ``S`` as :func:`quantize_layer` (whose code this reuses on the
    kernel flattened to ``(C_out, C_in/groups * kH * kW)``): a kernel row is the fan-in of one
    interior neuron, so the weight, threshold, activation and current bounds carry over
    unchanged; calibration payloads are turned into the patches the kernel sees
    (:func:`conv_patches`, ``groups = 1`` only; grouped layers use the worst case).

    Args:
        name: layer name for messages.
        module: the conv (bias-free, zero padding, dilation 1) or sum-pooling module.
        in_shape, out_shape: ``(C, H, W)`` feature maps in and out.
        neuron, profile, input_scale, max_payload: as :func:`quantize_layer`.
        payloads: optional calibration payloads ``(B, C*H*W)``.

    Returns:
        A :class:`CompiledLayer` with ``kind = "conv"`` and 4-D ``weight``/``weight_int``.

    Raises:
        CompileError: a bias, dilation, non-zero padding mode or string padding, or any
            :func:`quantize_layer` error.
    """
    if isinstance(module, nn.Conv2d):
        if module.bias is not None:
            raise CompileError(f"layer {name}: Conv2d has a bias; the chip model has none "
                               f"(use bias=False)")
        if tuple(module.dilation) != (1, 1) or module.padding_mode != "zeros":
            raise CompileError(f"layer {name}: dilation {tuple(module.dilation)} / padding_mode "
                               f"{module.padding_mode!r} do not compile; use dilation 1, "
                               f"padding_mode 'zeros'")
    stride = _pair(module.stride, f"layer {name}: stride")
    padding = _pair(module.padding, f"layer {name}: padding")
    with torch.no_grad():
        weight = module.weight.detach().cpu().numpy().astype(np.float64)
    groups = int(module.groups)
    patches = None
    if payloads is not None and groups == 1:
        patches = conv_patches(payloads, in_shape, weight.shape[2:], stride, padding)
    flat = quantize_layer(name, weight.reshape(len(weight), -1), neuron, profile, input_scale,
                          max_payload, patches)
    return dataclasses.replace(flat, weight=flat.weight.reshape(weight.shape),
                               weight_int=flat.weight_int.reshape(weight.shape), kind="conv",
                               in_shape=tuple(in_shape), out_shape=tuple(out_shape),
                               stride=stride, padding=padding, groups=groups)


def compile_network(model: SpikingMLP | SpikingConvNet, profile: HardwareProfile,
                    input_max_value: int, cores: int | None = None,
                    calibration: np.ndarray | None = None) -> CompiledNetwork:
    """Compile a trained :class:`SpikingMLP` or :class:`SpikingConvNet` for ``profile``.

    Args:
        model: trained model (GradR-parametrized or plain); it is not modified. A conv net's
            layers compile to ``conv1, pool1, ..., fc1`` (:func:`quantize_conv_layer`).
        profile: target chip.
        input_max_value: integer payload standing for input 1.0 (16 for digits, 255 MNIST).
        cores: cores allotted to the model (default: the whole chip).
        calibration: optional inputs ``(B, n_in)`` in [0, 1] (the training set) bounding the
            first layer's graded input (current encoding); default: the worst case.

    Returns:
        The frozen :class:`CompiledNetwork`.

    Raises:
        CompileError: see :func:`check_neuron`, :func:`quantize_layer` and
            :func:`rewire.compile.mapping.map_cores` (``MappingError``).
    """
    if profile.neuron.model != "cuba":
        raise CompileError(f"profile {profile.name!r}: neuron model {profile.neuron.model!r} "
                           f"is not supported (only 'cuba')")
    check_neuron(model.neuron)
    layers = []
    convnet = isinstance(model, SpikingConvNet)
    modules = model.layers if convnet else model.linears
    counts = {"conv": 0, "pool": 0, "fc": 0}
    for k, module in enumerate(modules):
        payloads = None
        if k == 0 and model.encoding == "current":
            input_scale, max_payload = model.input_gain / input_max_value, input_max_value
            if calibration is not None:
                payloads = np.rint(np.asarray(calibration) * input_max_value)
        else:
            input_scale, max_payload = 1.0, 1
        prefix = "pool" if isinstance(module, SumPool2d) else \
            "conv" if isinstance(module, nn.Conv2d) else "fc"
        counts[prefix] += 1
        name = f"{prefix}{counts[prefix]}"
        if prefix != "fc":
            layers.append(quantize_conv_layer(name, module, model.shapes[k],
                                              model.shapes[k + 1], model.neuron, profile,
                                              input_scale, max_payload, payloads))
            continue
        with torch.no_grad():
            weight = module.weight.detach().cpu().numpy().astype(np.float64)
        layers.append(quantize_layer(name, weight, model.neuron, profile,
                                     input_scale, max_payload, payloads))
    from rewire.compile.mapping import map_cores  # mapping imports CompileError from here

    mapping = map_cores(layers, profile, cores)
    return CompiledNetwork(layers=tuple(layers), neuron=model.neuron, steps=model.steps,
                           encoding=model.encoding, input_gain=model.input_gain,
                           input_max_value=int(input_max_value), profile=profile,
                           mapping=mapping)
