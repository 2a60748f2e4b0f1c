r"""The Xylo writer: a compiled chain of ``BitshiftLIF`` layers as the network specification
SynSense's tools take (rockpool 3.1 ``devices/xylo/syns61201/xylo_sim.py``
``XyloSim.from_specification`` and ``xylo_samna.py`` ``config_from_specification``, Xylo
Audio 2, SYNS61201).

Two files (docs/xylo.md):

- ``model_xylo.npz``: exactly keyword arguments of ``from_specification`` (:data:`SPEC_KEYS`),
  so ``XyloSim.from_specification(**np.load(path))`` and
  ``config_from_specification(**np.load(path))`` take it as it is;
- ``model_xylo.json``: the format and its version, rewire's version, the profile, ``dt``,
  the source and the layer layout (which hidden neuron ids hold which compiled layer).

The mapping of a chain of ``L >= 2`` dense layers (the hidden neurons are one population,
numbered layer after layer), as rockpool's mapper maps one: layer 0 is fed by the input,
``weights_in (n_in, N)`` (its columns; the other columns 0); layer ``k`` of ``1..L-2`` by the
block ``weights_rec[rows of layer k-1, columns of layer k]`` (``(N, N)``, hidden spikes arrive
one step late); a recurrent hidden layer's own weights are its diagonal block of
``weights_rec``; the last layer is the readout, ``weights_out (N, n_out)`` from the rows of
layer ``L-2`` (one step late). Each matrix holds int8 values ``m`` with one
``weight_shift_*``: the chip's weights are ``m << shift``, the shift the compiler chose
(:func:`rewire.compiler.xylo.xylo_shifts` reads it back from the integer weights). Decays are
per neuron (``dash_syn``, ``dash_mem`` uint8), thresholds int16.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rewire._version import __version__
from rewire.compiler.xylo import xylo_shifts
from rewire.errors import CompileError, ExportError
from rewire.io import atomic_path, write_text
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledDense, CompiledRecurrentDense

__all__ = ["FORMAT", "FORMAT_VERSION", "SPEC_KEYS", "HIDDEN_SPIKES", "check", "specification",
           "layout", "write", "write_json", "load_specification", "load_layout"]

FORMAT = "rewire-xylo-spec"
#: Version of the two files' layout (bump on any change of keys, dtypes or the JSON).
FORMAT_VERSION = 1
#: The ``.npz`` keys: keyword names of rockpool 3.1 ``XyloSim.from_specification`` (also
#: taken, or absorbed by ``**kwargs``, by ``config_from_specification``), in this order.
SPEC_KEYS = ("weights_in", "weights_out", "weights_rec", "dash_mem", "dash_mem_out", "dash_syn",
             "dash_syn_out", "threshold", "threshold_out", "weight_shift_in",
             "weight_shift_rec", "weight_shift_out", "dt")
#: Spikes a hidden neuron emits per step on Xylo Audio 2 (XyloSim 0.1.3); a readout neuron 1.
HIDDEN_SPIKES = 31
_LIMITS = (("max_inputs", 16, "input channels"), ("neurons_per_core", 1000, "hidden neurons"),
           ("output_neurons", 8, "readout neurons"))
_FMT = "xylo"


def _refuse(msg: str, layer: str = "") -> ExportError:
    return ExportError(f"xylo: {msg}", format=_FMT, layer=layer)


def check(net: CompiledNetwork) -> None:
    """Refuse what a Xylo specification cannot express, before anything is written.

    Raises:
        rewire.errors.ExportError: fewer than two layers; a layer that is not a plain dense
            or recurrent dense layer (conv, pool, skip connections, a bias), a recurrent
            readout, or a neuron that is not ``BitshiftLIF``; hidden layers not emitting up
            to 31 spikes per step or a readout not emitting 1; more inputs, hidden or
            readout neurons than the profile's ``max_inputs``, ``neurons_per_core``,
            ``output_neurons``; a weight matrix that is not int8 values times one power of
            two up to ``2**8`` (:func:`rewire.compiler.xylo.xylo_shifts`); a threshold
            outside 1..32,767 or a dash outside 0..15; a current-encoded input whose
            ``input_max_value`` exceeds the 15 events per channel and step the chip takes; a
            hidden neuron with more outgoing synapses than ``limits.fan_out`` (64) (each
            names the layer, the figure and the fix).
    """
    if len(net.layers) < 2:
        raise _refuse("Xylo needs at least two neuron layers (hidden and readout); this "
                      "network has one: add a hidden layer")
    for k, layer in enumerate(net.layers):
        _check_layer(layer, k == len(net.layers) - 1)
    hidden = sum(l.shape[0] for l in net.layers[:-1])
    for (field, default, what), n in zip(_LIMITS, (net.sizes[0], hidden, net.sizes[-1])):
        top = int(getattr(net.profile.limits, field, 0) or default)
        if n > top:
            raise _refuse(f"{n} {what}, above the {top} of Xylo (profile limits.{field}); "
                          f"make the network smaller")
    if net.encoding == "current" and net.input_max_value > 15:
        raise _refuse(f"input_max_value = {net.input_max_value}: Xylo takes at most 15 input "
                      f"events per channel and step and clips the rest; compile with "
                      f"input_max_value <= 15")
    spec = specification(net)  # the weight shifts refuse weights off an int8 << k grid
    _check_fan_out(net, spec)


def _check_fan_out(net: CompiledNetwork, spec: dict) -> None:
    """A hidden neuron's outgoing synapses (its rows of ``weights_rec`` and ``weights_out``)
    within the profile's ``limits.fan_out``."""
    limit = int(net.profile.limits.fan_out or 0)
    fan = np.count_nonzero(spec["weights_rec"], axis=1) + \
        np.count_nonzero(spec["weights_out"], axis=1)
    if limit and fan.size and fan.max() > limit:
        i = int(fan.argmax())
        (name, first), = [(l["name"], l["neurons"][0]) for l in layout(net)["layers"]
                          if l["role"] == "hidden" and l["neurons"][0] <= i < l["neurons"][1]]
        raise _refuse(f"layer {name}: neuron {i - first} has {int(fan[i])} outgoing synapses, "
                      f"above the {limit} of {net.profile.name!r} (limits.fan_out); train "
                      f"under the xylo profile (rewire.train steers fan-out) or prune", name)


def _check_layer(layer, readout: bool) -> None:
    name = layer.name
    if type(layer) not in (CompiledDense, CompiledRecurrentDense) or layer.skips \
            or layer.bias_int is not None:
        what = ("skip connections" if layer.skips else "a bias" if layer.bias_int is not None
                else f"a {type(layer).__name__}")
        raise _refuse(f"layer {name} has {what}; a Xylo specification holds chains of dense "
                      f"layers only (weights_in, weights_rec, weights_out)", name)
    if readout and layer.recurrent:
        raise _refuse(f"layer {name} is the readout and recurrent; Xylo's readout neurons "
                      f"have no recurrent synapses: make the last layer a plain Dense", name)
    if type(layer.chip) is not CompiledBitshiftLIF:
        raise _refuse(f"layer {name} has {layer.neuron.kind} neurons; Xylo runs BitshiftLIF "
                      f"only (train with rewire's LIFBitshiftCell)", name)
    want = 1 if readout else HIDDEN_SPIKES
    if layer.neuron.max_spikes != want:
        raise _refuse(f"layer {name} ({'readout' if readout else 'hidden'}) has max_spikes = "
                      f"{layer.neuron.max_spikes}; Xylo's {'readout' if readout else 'hidden'} "
                      f"neurons emit up to {want} spike(s) per step: train with max_spikes = "
                      f"{want}", name)
    if not 1 <= layer.v_th_mant <= 32767:
        raise _refuse(f"layer {name}: threshold {layer.v_th_mant} is outside Xylo's int16 "
                      f"1..32767", name)
    for field, value in (("dash_syn", layer.i_decay), ("dash_mem", layer.v_decay)):
        if not 0 <= value <= 15:
            raise _refuse(f"layer {name}: {field} = {value} is outside 0..15", name)


def _blocks(net: CompiledNetwork) -> list[tuple[int, int]]:
    """``[start, stop)`` hidden neuron ids of each hidden layer."""
    stops = np.cumsum([l.shape[0] for l in net.layers[:-1]])
    return [(int(b - l.shape[0]), int(b)) for l, b in zip(net.layers[:-1], stops)]


def specification(net: CompiledNetwork) -> dict[str, np.ndarray]:
    """The specification's arrays (:data:`SPEC_KEYS`), from ``net`` (see the module
    docstring): weights int8, dashes uint8, thresholds int16, shifts int64 scalars, ``dt``
    float64 in s.

    Raises:
        rewire.errors.ExportError: a matrix that no ``weight_shift`` holds (names the
            matrix, its largest weight and the layers).
    """
    hidden, readout = net.layers[:-1], net.layers[-1]
    blocks = _blocks(net)
    n_h, n_in = blocks[-1][1], net.sizes[0]
    w_in = np.zeros((n_in, n_h), np.int64)
    w_rec = np.zeros((n_h, n_h), np.int64)
    w_out = np.zeros((n_h, readout.shape[0]), np.int64)
    a, b = blocks[0]
    w_in[:, a:b] = hidden[0].weight_int.T
    for (pa, pb), (a, b), layer in zip(blocks[:-1], blocks[1:], hidden[1:]):
        w_rec[pa:pb, a:b] = layer.weight_int.T
    for (a, b), layer in zip(blocks, hidden):
        if layer.recurrent:  # its own block on the diagonal
            w_rec[a:b, a:b] = layer.weight_rec_int.T
    pa, pb = blocks[-1]
    w_out[pa:pb] = readout.weight_int.T
    shifts = _shifts(net)
    w_in, w_rec, w_out = ((w >> shifts[key]).astype(np.int8) for key, w in
                          (("weights_in", w_in), ("weights_rec", w_rec), ("weights_out", w_out)))

    def per_neuron(attr, dtype):
        return np.concatenate([np.full(l.shape[0], getattr(l, attr)) for l in hidden]
                              ).astype(dtype)

    return {"weights_in": w_in, "weights_out": w_out, "weights_rec": w_rec,
            "dash_mem": per_neuron("v_decay", np.uint8),
            "dash_mem_out": np.full(readout.shape[0], readout.v_decay, np.uint8),
            "dash_syn": per_neuron("i_decay", np.uint8),
            "dash_syn_out": np.full(readout.shape[0], readout.i_decay, np.uint8),
            "threshold": per_neuron("v_th_mant", np.int16),
            "threshold_out": np.full(readout.shape[0], readout.v_th_mant, np.int16),
            "weight_shift_in": np.int64(shifts["weights_in"]),
            "weight_shift_rec": np.int64(shifts["weights_rec"]),
            "weight_shift_out": np.int64(shifts["weights_out"]), "dt": np.float64(net.dt)}


def _shifts(net: CompiledNetwork) -> dict[str, int]:
    """Each matrix's ``weight_shift``: the compiler's rule
    (:func:`rewire.compiler.xylo.xylo_shifts`, the smallest shift that makes every integer
    weight of the matrix an int8 value shifted left), its refusal as the writer's."""
    try:
        return xylo_shifts(net)
    except CompileError as exc:
        layers = ", ".join(l["name"] + " in " + l["matrix"] for l in layout(net)["layers"])
        raise _refuse(f"{exc} (layers: {layers})") from None


def layout(net: CompiledNetwork) -> dict:
    """The JSON record beside the specification: ``format``, ``version``,
    ``rewire_version``, ``profile``, ``source``, ``dt`` (s), ``steps``, ``encoding``,
    ``input_max_value``, ``layers`` (per compiled layer: ``name``, ``role`` ``"hidden"`` or
    ``"readout"``, ``matrix`` it is stored in, ``neurons`` ``[start, stop)`` ids among the
    hidden neurons or the readout, ``delay`` in steps from the input, ``recurrent`` (its own
    weights a diagonal block of ``weights_rec``), ``dash_syn``,
    ``dash_mem``, ``threshold``, ``max_spikes``) and ``warnings`` (the compiler's)."""
    blocks = _blocks(net) + [(0, net.layers[-1].shape[0])]
    matrix = ["weights_in"] + ["weights_rec"] * (len(net.layers) - 2) + ["weights_out"]
    layers = [{"name": l.name, "role": "readout" if k == len(net.layers) - 1 else "hidden",
               "matrix": matrix[k], "neurons": list(blocks[k]), "delay": k,
               "recurrent": l.recurrent,
               "dash_syn": l.i_decay, "dash_mem": l.v_decay, "threshold": l.v_th_mant,
               "max_spikes": l.neuron.max_spikes} for k, l in enumerate(net.layers)]
    return {"format": FORMAT, "version": FORMAT_VERSION, "rewire_version": __version__,
            "profile": net.profile.name, "source": net.source, "dt": net.dt,
            "steps": net.steps, "encoding": net.encoding,
            "input_max_value": net.input_max_value, "layers": layers,
            "warnings": [w.to_dict() for w in net.warnings]}


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Write the specification ``model_xylo.npz`` atomically (after :func:`check`).

    Returns:
        ``path``.

    Raises:
        rewire.errors.ExportError: as :func:`check`; nothing is written then.
    """
    check(net)
    spec = specification(net)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **spec)
    return Path(path)


def write_json(net: CompiledNetwork, path: str | Path) -> Path:
    """Write :func:`layout` as ``model_xylo.json`` atomically (after :func:`check`)."""
    check(net)
    return write_text(path, json.dumps(layout(net), indent=1) + "\n")


def load_specification(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``model_xylo.npz`` back: ``{key: array}`` (the keys of :data:`SPEC_KEYS` it
    holds; no pickled objects are loaded).

    Raises:
        ValueError: a key that is not a ``from_specification`` keyword, a missing weight
            matrix, or shapes that do not chain (``weights_in (n_in, N)``,
            ``weights_rec (N, N)``, ``weights_out (N, n_out)``, per-neuron vectors).
    """
    with np.load(path, allow_pickle=False) as data:
        spec = {key: data[key] for key in data.files}
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{path}: {unknown} are not keywords of XyloSim.from_specification")
    for key in ("weights_in", "weights_out"):
        if key not in spec or spec[key].ndim != 2:
            raise ValueError(f"{path}: {key} must be a 2-D matrix")
    n_h, n_out = spec["weights_out"].shape
    want = {"weights_in": (spec["weights_in"].shape[0], n_h), "weights_rec": (n_h, n_h),
            "dash_mem": (n_h,), "dash_syn": (n_h,), "threshold": (n_h,),
            "dash_mem_out": (n_out,), "dash_syn_out": (n_out,), "threshold_out": (n_out,)}
    for key, shape in want.items():
        if key in spec and spec[key].shape != shape:
            raise ValueError(f"{path}: {key} has shape {spec[key].shape}, expected {shape}")
    return spec


def load_layout(path: str | Path) -> dict:
    """Read a ``model_xylo.json`` back (:func:`layout`'s dict).

    Raises:
        ValueError: not a rewire Xylo layout, or a version this rewire does not read (the
            message says which it reads).
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a rewire Xylo layout (format must be {FORMAT!r})")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: layout version {data.get('version')!r}; this rewire reads "
                         f"version {FORMAT_VERSION}: write the specification again")
    return data
