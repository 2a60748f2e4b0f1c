"""Range checks of a compiled network read from a dict (:meth:`CompiledNetwork.from_dict`):
every field must fit the format the chip and the files hold, so that nothing is wrapped,
clipped or rounded on the way out.

The ranges are the profile's: weights ``m * 2**exponent`` with ``m`` a signed ``bits``-bit
mantissa (:class:`~rewire.hw_profiles.sections.WeightFormat`), ``iDecay``/``vDecay`` in
``[0, 2**decay_bits]`` and ``vThMant`` in ``[1, 2**threshold_bits - 1]``
(:class:`~rewire.hw_profiles.sections.NeuronFormat`; Lava's CUBA neuron, lava-nc 0.10
``lava/proc/lif/models.py``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir._checked import check_encoding, check_gain, check_int, check_steps
from rewire.ir.compiled_layers import CompiledConv, CompiledLayer, CompiledRecurrentDense

__all__ = ["check_run_fields", "check_layer", "check_chain", "check_placement"]


def check_run_fields(data: dict) -> None:
    """``steps``, ``encoding``, ``input_gain``, ``input_max_value``, ``notes``, ``source``.

    Raises:
        ValueError: a missing or out-of-range field, named (``TypeError`` of the checks
            re-raised as ``ValueError``: a file's field of the wrong type is bad data).
    """
    for key in ("layers", "profile", "steps", "encoding", "input_gain", "input_max_value"):
        if key not in data:
            raise ValueError(f"compiled network: missing field {key!r}")
    try:
        check_steps(data["steps"], "compiled network: steps")
        check_encoding(data["encoding"], "compiled network: encoding")
        check_gain(data["input_gain"], "compiled network: input_gain")
        check_int("compiled network: input_max_value", data["input_max_value"], 1, 2**24)
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data["layers"], list) or not data["layers"]:
        raise ValueError("compiled network: layers must be a non-empty list")
    if any(not isinstance(l, dict) for l in data["layers"]):
        raise ValueError("compiled network: every entry of layers must be a dict")
    if not isinstance(data["profile"], dict):
        raise ValueError("compiled network: profile must be a dict")
    notes = data.get("notes", [])
    if not isinstance(notes, list) or any(not isinstance(n, str) for n in notes):
        raise ValueError("compiled network: notes must be a list of strings")
    if not isinstance(data.get("source", ""), str):
        raise ValueError("compiled network: source must be a string")


def _ints_in(name: str, w: np.ndarray, profile: HardwareProfile, chip=None) -> None:
    fmt = profile.weights
    if w.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {w.dtype}")
    if not w.size:
        return
    # the layer's neuron class knows its chip's weights (Xylo: int8 << a per-matrix shift)
    lo, hi, step = (fmt.min_int, fmt.max_int, fmt.step) if chip is None else \
        chip.weight_range(profile)
    wide = w.astype(np.int64)
    bad = (wide < lo) | (wide > hi) | (wide % step != 0)
    if np.any(bad):
        raise ValueError(f"{name}: {int(np.count_nonzero(bad))} weights are not multiples of "
                         f"{step} in [{lo}, {hi}] (profile {profile.name!r}: {fmt.bits}-bit "
                         f"mantissa, exponent {fmt.exponent}), e.g. "
                         f"{int(wide[bad].reshape(-1)[0])}; compile the model again for this "
                         f"profile")


def _floats(name: str, w: np.ndarray, shape) -> None:
    if w.dtype.kind != "f":
        raise ValueError(f"{name} must hold floats, got dtype {w.dtype}")
    if tuple(w.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(w.shape)}, expected {tuple(shape)}")


def _positive_finite(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_layer(layer: CompiledLayer, k: int, profile: HardwareProfile) -> None:
    """One layer's fields against ``profile``'s formats.

    Raises:
        ValueError: the field at fault, its value and the range (``layers[k].field``).
    """
    at = f"compiled network: layers[{k}] ({layer.name!r})"
    if not isinstance(layer.name, str) or not layer.name:
        raise ValueError(f"compiled network: layers[{k}].name must be a non-empty string")
    for key in ("scale_limited_by", "source"):
        if not isinstance(getattr(layer, key), str):
            raise ValueError(f"{at}.{key} must be a string")
    if not isinstance(layer.notes, tuple) or any(not isinstance(n, str) for n in layer.notes):
        raise ValueError(f"{at}.notes must be a list of strings")
    for key in ("weight", "weight_int"):
        if not isinstance(getattr(layer, key), np.ndarray):
            raise ValueError(f"{at}.{key} must be an array dict {{dtype, shape, data}}")
    ndim = 4 if isinstance(layer, CompiledConv) else 2
    if layer.weight_int.ndim != ndim or 0 in layer.weight_int.shape:
        raise ValueError(f"{at}.weight_int must be a non-empty {ndim}-D array, got shape "
                         f"{layer.weight_int.shape}")
    _ints_in(f"{at}.weight_int", layer.weight_int, profile, layer.chip)
    _floats(f"{at}.weight", layer.weight, layer.weight_int.shape)
    for n, skip in enumerate(layer.skips):
        _ints_in(f"{at}.skips[{n}].weight_int", skip.weight_int, profile, layer.chip)
        _floats(f"{at}.skips[{n}].weight", skip.weight, skip.weight_int.shape)
    if isinstance(layer, CompiledRecurrentDense):
        out = layer.weight_int.shape[0]
        if not isinstance(layer.weight_rec_int, np.ndarray) or \
                layer.weight_rec_int.shape != (out, out):
            raise ValueError(f"{at}.weight_rec_int must be an ({out}, {out}) array")
        _ints_in(f"{at}.weight_rec_int", layer.weight_rec_int, profile, layer.chip)
        if not isinstance(layer.weight_rec, np.ndarray):
            raise ValueError(f"{at}.weight_rec must be an array dict")
        _floats(f"{at}.weight_rec", layer.weight_rec, (out, out))
    if (layer.bias is None) != (layer.bias_int is None):
        raise ValueError(f"{at}: bias and bias_int must be given together")
    if layer.bias_int is not None:  # on the weights' grid (an always-on synapse on netx)
        for key in ("bias", "bias_int"):
            if not isinstance(getattr(layer, key), np.ndarray):
                raise ValueError(f"{at}.{key} must be an array dict {{dtype, shape, data}}")
        _floats(f"{at}.bias", layer.bias, (layer.weight_int.shape[0],))
        if layer.bias_int.shape != layer.bias.shape:
            raise ValueError(f"{at}.bias_int must have the shape of bias, {layer.bias.shape}")
        _ints_in(f"{at}.bias_int", layer.bias_int, profile, layer.chip)
    _positive_finite(f"{at}.scale", layer.scale)
    _positive_finite(f"{at}.input_scale", layer.input_scale)
    unit, top = profile.neuron.decay_unit, profile.neuron.max_threshold_mant
    check_int(f"{at}.i_decay", layer.i_decay, 0, unit)
    check_int(f"{at}.v_decay", layer.v_decay, 0, unit)
    check_int(f"{at}.v_th_mant", layer.v_th_mant, 1 if layer.spiking else 0, top)
    if isinstance(layer, CompiledConv):
        _check_conv(layer, at)


def _check_conv(layer: CompiledConv, at: str) -> None:
    shapes = (layer.in_shape, layer.out_shape)
    if any(not isinstance(s, tuple) for s in shapes + (layer.stride, layer.padding)):
        raise ValueError(f"{at}: in_shape, out_shape, stride and padding must be lists")
    if any(len(s) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                              or v < 1 for v in s) for s in shapes):
        raise ValueError(f"{at}: in_shape and out_shape must be 3 integers >= 1 (C, H, W), "
                         f"got {list(layer.in_shape)} and {list(layer.out_shape)}")
    pairs = (layer.stride, layer.padding)
    if any(len(p) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral)
                              for v in p) for p in pairs) or min(layer.stride) < 1 or \
            min(layer.padding) < 0:
        raise ValueError(f"{at}: stride must be 2 integers >= 1 and padding 2 integers >= 0, "
                         f"got {list(layer.stride)} and {list(layer.padding)}")
    groups = check_int(f"{at}.groups", layer.groups, 1, layer.in_shape[0])
    c_out, c_in, kh, kw = layer.weight_int.shape
    want = tuple((layer.in_shape[1 + a] + 2 * layer.padding[a] - (kh, kw)[a])
                 // layer.stride[a] + 1 for a in range(2))
    if c_out != layer.out_shape[0] or c_in * groups != layer.in_shape[0] or \
            want != tuple(layer.out_shape[1:]):
        raise ValueError(f"{at}: a {layer.weight_int.shape} kernel with stride "
                         f"{list(layer.stride)}, padding {list(layer.padding)}, groups {groups} "
                         f"maps {list(layer.in_shape)} to ({c_out}, {want[0]}, {want[1]}), not "
                         f"{list(layer.out_shape)}")
    if hasattr(layer, "pool_weight"):
        if isinstance(layer.pool_weight, bool) or \
                not isinstance(layer.pool_weight, numbers.Real) or \
                not math.isfinite(layer.pool_weight):
            raise ValueError(f"{at}.pool_weight must be a finite number")


def check_chain(layers) -> None:
    """Each layer's inputs are the outputs of the one before, and the names are distinct.

    Raises:
        ValueError: the layer whose input width differs, or a repeated name.
    """
    names = [l.name for l in layers]
    if len(set(names)) != len(names):
        raise ValueError(f"compiled network: layer names must be distinct, got {names}")
    for k in range(1, len(layers)):
        if layers[k].shape[1] != layers[k - 1].shape[0]:
            raise ValueError(f"compiled network: layers[{k}] ({layers[k].name!r}) takes "
                             f"{layers[k].shape[1]} inputs, layers[{k - 1}] gives "
                             f"{layers[k - 1].shape[0]}")
    for k, layer in enumerate(layers):
        for n, skip in enumerate(layer.skips):
            at = f"compiled network: layers[{k}] ({layer.name!r}).skips[{n}]"
            if type(layer).TYPE == "sumpool":
                raise ValueError(f"{at}: a sum pool takes no skip")
            if not 0 <= skip.source <= k:
                raise ValueError(f"{at}.source must be 0 (the input) .. {k} (an earlier "
                                 f"layer), got {skip.source}")
            width = layers[0].shape[1] if skip.source == 0 else layers[skip.source - 1].shape[0]
            if skip.weight_int.shape != (layer.shape[0], width) or \
                    skip.weight.shape != skip.weight_int.shape:
                raise ValueError(f"{at}: weight and weight_int must be ({layer.shape[0]}, "
                                 f"{width}), got {skip.weight.shape} and "
                                 f"{skip.weight_int.shape}")


def check_placement(mapping, layers) -> None:
    """The core mapping places every neuron of every layer on a listed core.

    Raises:
        ValueError: a placement of the wrong length or naming a core that is not listed.
    """
    if len(mapping.placement) != len(layers):
        raise ValueError(f"compiled network: mapping.placement has {len(mapping.placement)} "
                         f"entries for {len(layers)} layers")
    for k, (p, layer) in enumerate(zip(mapping.placement, layers)):
        p = np.asarray(p)
        if p.shape != (layer.shape[0],) or (p.size and (p.min() < 0 or
                                                        p.max() >= len(mapping.usage))):
            raise ValueError(f"compiled network: mapping.placement[{k}] must give each of the "
                             f"{layer.shape[0]} neurons of {layer.name!r} a core index in "
                             f"[0, {len(mapping.usage)})")
