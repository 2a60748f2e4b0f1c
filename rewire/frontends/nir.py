"""NIR frontend: read a NIR graph written by rewire or another framework.

See :mod:`rewire.export.nir_graph` for how rewire writes its graphs (the conventions this
reader inverts).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np

from rewire.export.nir_graph import CONV_SUPPORTED, NIR_FORMAT
from rewire.io import check_hdf5
from rewire.training.conv import SpikingConvNet, SumPool2d
from rewire.training.model import NeuronConfig, SpikingMLP


def read(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` a graph (rewire's or another tool's).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not HDF5, declared data over :data:`rewire.io.MAX_HDF5_BYTES` (checked
            before anything is read), or a layout ``nir.read`` cannot parse (the message
            names the file).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    check_hdf5(path, "NIR file")
    try:
        graph = nir.read(str(path))
    except (OSError, KeyError, AttributeError, TypeError, ValueError, IndexError,
            RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"{path}: malformed NIR file ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"{path}: holds a {type(graph).__name__}, not a NIR graph")
    return graph


def _scalar(node: nir.CubaLIF, field: str) -> float:
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise NotImplementedError(f"CubaLIF.{field} differs between neurons ({values.size} "
                                  f"values); rewire's models share one LIF setting")
    return float(values[0])


def _invert(stored: float, forward, approx: float) -> float:
    """The value ``c`` with ``forward(c) == stored`` that has the shortest decimal form:
    ``approx`` (the float64 inverse, possibly a few ulps off the number written) or ``approx``
    to 15 significant digits when that maps to ``stored`` exactly (so the 1.0 that was
    written reads back as 1.0, not 0.9999999999999999)."""
    tidy = float(f"{approx:.15g}")
    return tidy if forward(tidy) == stored else approx


def neuron_config(node: nir.CubaLIF, dt: float) -> NeuronConfig:
    """Norse LIF constants of a ``nir.CubaLIF`` integrated with Euler steps of ``dt`` seconds.

    Inverts :func:`cuba_lif` for any ``R`` and ``w_in``: Norse's current is NIR's ``I`` over
    ``w_in dt / tau_syn`` and Norse's ``v`` is NIR's ``v`` times ``tau_syn / (R w_in dt)``.
    Constants come back exactly when they have at most 15 significant digits, otherwise within
    a few float64 ulps (far below the float32 the model computes in).

    Raises:
        NotImplementedError: parameters that differ between neurons.
    """
    tau_syn, tau_mem = _scalar(node, "tau_syn"), _scalar(node, "tau_mem")
    v_scale = tau_syn / (_scalar(node, "r") * _scalar(node, "w_in") * dt)
    v_unit = tau_mem / dt  # what cuba_lif multiplies by

    def volt(field: str) -> float:
        stored = _scalar(node, field)
        return _invert(stored, lambda c: c * v_unit, stored * v_scale)

    return NeuronConfig(tau_syn_inv=_invert(tau_syn, lambda c: 1.0 / c, 1.0 / tau_syn),
                        tau_mem_inv=_invert(tau_mem, lambda c: 1.0 / c, 1.0 / tau_mem),
                        v_th=volt("v_threshold"), v_leak=volt("v_leak"),
                        v_reset=volt("v_reset"), dt=dt)


def _chain(graph: nir.NIRGraph) -> list[str]:
    """Node names from ``input`` to ``output`` of a graph that is a simple chain."""
    nxt = {}
    for a, b in graph.edges:
        if a in nxt:
            raise NotImplementedError(f"node {a!r} has several successors; only feed-forward "
                                      f"chains are imported")
        nxt[a] = b
    start = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    if len(start) != 1:
        raise ValueError(f"the graph needs exactly one nir.Input node, found {len(start)}")
    order = [start[0]]
    while order[-1] in nxt:
        order.append(nxt[order[-1]])
        if len(order) > len(graph.nodes):
            raise NotImplementedError("the graph has a cycle (recurrence is not imported)")
    return order


def _pair(name: str, node: nir.NIRNode, field: str) -> int:
    """The one integer of a NIR ``(y, x)`` field that must be equal on both axes."""
    value = getattr(node, field)
    values = np.atleast_1d(np.asarray(value)) if not isinstance(value, str) else None
    if values is None or values.dtype.kind not in "iuf" or values.size not in (1, 2) \
            or np.any(values != values.flat[0]) or values.flat[0] != int(values.flat[0]):
        raise NotImplementedError(f"node {name!r}: {type(node).__name__}.{field} = {value!r} is "
                                  f"not imported (one integer for both axes); supported: "
                                  f"{CONV_SUPPORTED}")
    return int(values.flat[0])


_IMPORTED = (nir.Linear, nir.Affine, nir.Conv2d, nir.SumPool2d, nir.Flatten, nir.CubaLIF)


def _layers(graph: nir.NIRGraph) -> list[tuple[str, nir.NIRNode, str, nir.CubaLIF]]:
    """``(name, synaptic node, LIF name, CubaLIF)`` of each layer of a chain, in order.

    A ``Flatten`` is returned as a layer whose LIF is ``None``; it must come right before a
    ``Linear``/``Affine``.

    Raises:
        NotImplementedError: an unsupported node, a synaptic node not followed by a CubaLIF
            (or a CubaLIF without one), a Flatten elsewhere, an Affine with a non-zero bias.
    """
    layers, pending = [], None
    for name in _chain(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        if not isinstance(node, _IMPORTED):
            raise NotImplementedError(f"node {name!r}: {type(node).__name__} is not imported "
                                      f"(supported: Linear, Affine, Conv2d, SumPool2d, Flatten, "
                                      f"CubaLIF)")
        if isinstance(node, nir.CubaLIF):
            if pending is None or isinstance(pending[1], nir.Flatten):
                raise NotImplementedError(f"node {name!r}: a CubaLIF must follow a Linear, "
                                          f"Conv2d or SumPool2d node")
            layers.append((*pending, name, node))
            pending = None
            continue
        if pending is not None and not isinstance(pending[1], nir.Flatten):
            raise NotImplementedError(f"node {pending[0]!r}: {type(pending[1]).__name__} is "
                                      f"not followed by a CubaLIF (it is followed by {name!r})")
        if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
            raise NotImplementedError(f"node {name!r}: Affine with a non-zero bias (rewire's "
                                      f"models have no bias)")
        if isinstance(node, (nir.Linear, nir.Affine, nir.Conv2d, nir.SumPool2d)):
            if pending is not None and not isinstance(node, (nir.Linear, nir.Affine)):
                raise NotImplementedError(f"node {pending[0]!r}: a Flatten must come right "
                                          f"before a Linear, not {type(node).__name__}")
            if pending is not None:
                layers.append((*pending, None, None))
            pending = (name, node)
        else:  # Flatten
            if pending is not None:
                raise NotImplementedError(f"node {name!r}: two Flatten nodes in a row")
            pending = (name, node)
    if pending is not None:
        raise NotImplementedError(f"node {pending[0]!r}: {type(pending[1]).__name__} is not "
                                  f"followed by a CubaLIF")
    return layers


def _shared_neuron(lifs: list[tuple[str, nir.CubaLIF]], dt: float) -> NeuronConfig:
    neurons = {neuron_config(node, dt) for _, node in lifs}
    if len(neurons) != 1:
        raise NotImplementedError(f"expected CubaLIF nodes sharing one LIF setting; found "
                                  f"{len(neurons)} distinct settings in "
                                  f"{[name for name, _ in lifs]}")
    return neurons.pop()


def _dense_model(layers, meta: dict, dt: float) -> SpikingMLP:
    encoding = str(meta.get("encoding", "rate"))
    gain = float(meta.get("input_gain", 1.0))
    weights = [np.asarray(node.weight, dtype=np.float64) for _, node, _, lif in layers
               if lif is not None]
    if not weights:
        raise NotImplementedError("the graph has no Linear -> CubaLIF layer")
    names = [name for name, _, _, lif in layers if lif is not None]
    for lif_name, lif in [(n, lif) for *_, n, lif in layers if lif is not None]:
        if not np.all(np.asarray(lif.w_in, dtype=np.float64) > 0):
            raise ValueError(f"node {lif_name!r}: CubaLIF.w_in must be > 0 in a dense layer")
    for k, (name, w) in enumerate(zip(names, weights)):
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"node {name!r}: weight of shape {w.shape}; a Linear needs a "
                             f"non-empty (n_out, n_in) matrix")
        if k and w.shape[1] != weights[k - 1].shape[0]:
            raise ValueError(f"node {name!r}: takes {w.shape[1]} inputs, but the layer before "
                             f"({names[k - 1]!r}) has {weights[k - 1].shape[0]} neurons")
    neuron = _shared_neuron([(n, lif) for *_, n, lif in layers if lif is not None], dt)
    sizes = (weights[0].shape[1],) + tuple(w.shape[0] for w in weights)
    model = SpikingMLP(sizes, steps=int(meta.get("steps", 16)), encoding=encoding,
                       neuron=neuron, input_gain=gain if encoding == "current" else 1.0)
    _copy_weights(list(model.linears), weights, encoding, gain)
    return model


def _copy_weights(modules, weights: list[np.ndarray], encoding: str, gain: float) -> None:
    """Copy float64 weights into the modules as float32, the input gain divided out of the
    first one for current encoding."""
    import torch

    with torch.no_grad():
        for k, (module, w) in enumerate(zip(modules, weights)):
            if k == 0 and encoding == "current":
                w = w / gain
            module.weight.copy_(torch.as_tensor(w.astype(np.float32)))


def _conv_model(graph: nir.NIRGraph, layers, meta: dict, dt: float) -> SpikingConvNet:
    """The :class:`SpikingConvNet` of a chain with Conv2d / SumPool2d / Flatten nodes."""
    def refuse(name: str, what: str):
        raise NotImplementedError(f"node {name!r}: {what}; supported: {CONV_SUPPORTED}")

    start = next(n for n, node in graph.nodes.items() if isinstance(node, nir.Input))
    input_shape = tuple(int(s) for s in np.asarray(graph.nodes[start].input_type["input"]))
    if len(input_shape) != 3:
        refuse(start, f"input shape {input_shape} is not (C, H, W)")
    encoding = str(meta.get("encoding", "rate"))
    gain = float(meta.get("input_gain", 1.0))
    channels, kernels, strides, paddings, pools, pool_lifs = [], [], [], [], [], []
    weights, plain_lifs, linear = [], [], None
    for name, node, lif_name, lif in layers:
        if linear is not None:
            refuse(name, f"{type(node).__name__} after the Linear {linear!r} (a SpikingConvNet "
                         f"has one Linear, last)")
        if isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 4 or w.shape[2] != w.shape[3]:
                refuse(name, f"Conv2d weight of shape {w.shape} (a non-square kernel)")
            if _pair(name, node, "dilation") != 1 or int(node.groups) != 1:
                refuse(name, f"Conv2d with dilation {node.dilation}, groups {node.groups}")
            if np.any(np.asarray(node.bias) != 0):
                refuse(name, "Conv2d with a non-zero bias")
            c_in = channels[-1] if channels else input_shape[0]
            if w.shape[1] != c_in:
                raise ValueError(f"node {name!r}: Conv2d takes {w.shape[1]} channels, its "
                                 f"input has {c_in}")
            channels.append(w.shape[0])
            kernels.append(w.shape[2])
            strides.append(_pair(name, node, "stride"))
            paddings.append(_pair(name, node, "padding"))
            pools.append(1)
            weights.append(w)
            plain_lifs.append((lif_name, lif))
        elif isinstance(node, nir.SumPool2d):
            if not channels or pools[-1] != 1:
                refuse(name, "SumPool2d not right after a Conv2d's CubaLIF")
            kernel = _pair(name, node, "kernel_size")
            if _pair(name, node, "stride") != kernel or _pair(name, node, "padding") != 0:
                refuse(name, f"SumPool2d with kernel {kernel}, stride {node.stride}, padding "
                             f"{node.padding}: stride must equal the kernel, padding 0")
            pools[-1] = kernel
            pool_lifs.append((lif_name, lif))
        elif isinstance(node, nir.Flatten):
            if not channels:
                refuse(name, "Flatten before any Conv2d")
        else:  # Linear / Affine
            if not channels:
                refuse(name, f"{type(node).__name__} before any Conv2d")
            linear = name
            weights.append(np.asarray(node.weight, dtype=np.float64))
            plain_lifs.append((lif_name, lif))
    if linear is None:
        refuse(layers[-1][0], "the chain does not end in Flatten -> Linear -> CubaLIF")
    neuron = _shared_neuron(plain_lifs, dt)
    ref_w_in = _scalar(plain_lifs[0][1], "w_in")
    pool_ws = set()
    for name, lif in pool_lifs:  # the same LIF as every layer, except w_in x pool weight
        ratio = float(np.float32(_scalar(lif, "w_in") / ref_w_in))
        same = dataclasses.replace(lif, w_in=np.full(np.shape(lif.w_in), ref_w_in))
        if not ratio > 0 or neuron_config(same, dt) != neuron:
            refuse(name, f"the CubaLIF after a SumPool2d must equal the other layers' LIF but "
                         f"for w_in = pool weight x their w_in ({ref_w_in}) with a pool "
                         f"weight > 0 (got w_in ratio {ratio})")
        pool_ws.add(ratio)
    if len(pool_ws) > 1:
        refuse(pool_lifs[1][0], f"pools with different weights {sorted(pool_ws)} (a "
                                f"SpikingConvNet has one pool_weight)")
    model = SpikingConvNet(input_shape, channels=tuple(channels), kernels=tuple(kernels),
                           strides=tuple(strides), paddings=tuple(paddings), pools=tuple(pools),
                           classes=int(weights[-1].shape[0]), steps=int(meta.get("steps", 16)),
                           encoding=encoding, neuron=neuron,
                           input_gain=gain if encoding == "current" else 1.0,
                           pool_weight=pool_ws.pop() if pool_ws else 2.5)
    modules = [m for m in model.layers if not isinstance(m, SumPool2d)]
    for (name, *_), module, w in zip([l for l in layers if l[3] is not None and not
                                      isinstance(l[1], nir.SumPool2d)], modules, weights):
        if tuple(module.weight.shape) != w.shape:
            raise ValueError(f"node {name!r}: weight of shape {w.shape}, but the layer it "
                             f"feeds from has the shape for {tuple(module.weight.shape)} "
                             f"(flattened map {model.sizes[-2]})")
    _copy_weights(modules, weights, encoding, gain)
    return model


def _positive(what: str, value, hi: float) -> float:
    """``value`` as a float in ``(0, hi]``, or ValueError naming ``what``."""
    try:
        v = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]) \
            if np.size(value) == 1 else float("nan")
    except (TypeError, ValueError):
        v = float("nan")
    if not (0 < v <= hi):
        raise ValueError(f"{what} must be a number in (0, {hi:g}], got {str(value)[:60]}")
    return v


def _check_meta(meta: dict) -> None:
    """The metadata rewire reads: ``steps`` an integer in [1, 10**5], ``input_gain`` in
    (0, 1e4], ``encoding`` a known one."""
    from rewire.training.model import ENCODINGS

    steps = meta.get("steps", 16)
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) \
            or not 1 <= int(steps) <= 10**5:
        raise ValueError(f"metadata['steps'] must be an integer in [1, 100000], got "
                         f"{str(steps)[:60]}")
    if "input_gain" in meta:
        _positive("metadata['input_gain']", meta["input_gain"], 1e4)
    if str(meta.get("encoding", "rate")) not in ENCODINGS:
        raise ValueError(f"metadata['encoding'] must be one of {list(ENCODINGS)}, got "
                         f"{str(meta.get('encoding'))[:60]!r}")


def _check_nodes(graph: nir.NIRGraph) -> None:
    """Finite weights; CubaLIF time constants, ``r`` and ``w_in`` positive and finite,
    voltages finite, before anything divides by them."""
    for name, node in graph.nodes.items():
        for field in ("weight", "bias"):
            if hasattr(node, field) and getattr(node, field) is not None:
                w = np.asarray(getattr(node, field))
                if w.dtype.kind not in "biuf" or not np.all(np.isfinite(w)):
                    raise ValueError(f"node {name!r}: {type(node).__name__}.{field} holds NaN, "
                                     f"infinite or non-numeric values")
        if isinstance(node, nir.CubaLIF):
            for field in ("tau_syn", "tau_mem", "r", "w_in"):
                v = np.asarray(getattr(node, field), dtype=np.float64)
                # w_in's sign is checked where it is read (a pool weight, a dense layer)
                ok = v != 0 if field == "w_in" else v > 0
                if v.size == 0 or not np.all(np.isfinite(v)) or not np.all(ok):
                    raise ValueError(f"node {name!r}: CubaLIF.{field} must be "
                                     f"{'non-zero' if field == 'w_in' else 'positive'} and "
                                     f"finite, got {str(getattr(node, field))[:60]}")
            for field in ("v_threshold", "v_leak", "v_reset"):
                v = np.asarray(getattr(node, field), dtype=np.float64)
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"node {name!r}: CubaLIF.{field} must be finite")
            if not np.all(np.asarray(node.v_threshold, dtype=np.float64) > 0):
                raise ValueError(f"node {name!r}: CubaLIF.v_threshold must be > 0")


def from_nir(graph: nir.NIRGraph | str | Path,
             dt: float | None = None) -> SpikingMLP | SpikingConvNet:
    """Build the Norse model of a NIR graph.

    ``Input -> (Linear|Affine -> CubaLIF)+ -> Output`` (an optional ``Flatten`` before the
    first Linear) gives a :class:`~rewire.training.model.SpikingMLP`; a chain with ``Conv2d``
    / ``SumPool2d`` nodes (:data:`CONV_SUPPORTED`, what :func:`to_nir` writes for conv nets)
    gives a :class:`~rewire.training.conv.SpikingConvNet`, the pool weight read from the
    ``w_in`` of the CubaLIF after each pool (module docstring).

    Args:
        graph: a graph or the path of a NIR file.
        dt: Euler step in s; default the graph's ``metadata["dt"]`` (NIR itself has none).

    Returns:
        The model with the graph's weights and LIF constants, ``steps``, ``encoding`` and
        ``input_gain`` from the metadata (defaults: 16 steps, ``rate`` encoding, i.e. the
        graph's input is the layer input as is).

    Raises:
        ValueError: no ``dt`` in the metadata nor the argument, or ``dt`` not in (0, 1] s;
            ``steps`` / ``input_gain`` / ``encoding`` metadata out of range; NaN or infinite
            weights; a CubaLIF ``tau_syn``, ``tau_mem``, ``r`` or ``w_in`` not positive and
            finite, voltages not finite, ``v_threshold <= 0``; not exactly one input; weight
            shapes that do not match the layer before (each naming the node).
        NotImplementedError: a node other than Linear/Affine (zero bias)/Conv2d/SumPool2d/
            Flatten/CubaLIF, branches, recurrence, LIF parameters that differ between neurons
            or layers, or a conv chain outside :data:`CONV_SUPPORTED` (non-square kernels,
            unequal strides, pools with stride != kernel, a conv after a Linear, bias, ...),
            naming the node.
    """
    if not isinstance(graph, nir.NIRGraph):
        graph = read(graph)
    meta = dict(graph.metadata or {})
    dt = dt if dt is not None else meta.get("dt")
    if dt is None:
        raise ValueError("the NIR graph has no metadata['dt'] (NIR stores no time step); "
                         "pass dt= (seconds)")
    dt = _positive("dt", dt, 1.0)
    _check_meta(meta)
    _check_nodes(graph)
    layers = _layers(graph)
    if any(isinstance(node, (nir.Conv2d, nir.SumPool2d)) for _, node, *_ in layers):
        return _conv_model(graph, layers, meta, dt)
    for k, (name, node, _, _) in enumerate(layers):
        if isinstance(node, nir.Flatten) and k != 0:
            raise NotImplementedError(f"node {name!r}: a Flatten between Linear layers")
    return _dense_model(layers, meta, dt)
