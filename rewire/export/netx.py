"""Lava-dl netx HDF5 writer (and a reader for tests), with h5py only: no Lava needed.

Layout read by ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6, ``netx/hdf5.py``)::

    /                      attrs: rewire_format_version, rewire_version, profile, steps,
                                  encoding, input_message_bits, input_max_value, dt,
                                  lava_delay_steps (one step per layer: drop that many),
                                  rewire_warnings (JSON, only when the compiler warned)
    /layer/<k>/type        b"dense" (b"dense_rec" for a recurrent layer)
    /layer/<k>/shape       int (n_out,)
    /layer/<k>/weight      int16 (n_out, n_in): chip weights (even values in [-254, 254] on
                           loihi2, largest magnitude >= 128 so that netx's optimize_weight_bits
                           keeps them exact; see rewire.compiler.netx_legal.netx_effective_weights)
    /layer/<k>/weight_rec  int16 (n_out, n_out): a dense_rec layer's recurrent weights (row =
                           target; lava-dl 0.6 create_dense(rec=True) -> RecurrentDense)
    /layer/<k>/neuron/     type b"CUBA", iDecay, vDecay, vThMant (the layer's own neuron),
                           refDelay, gradedSpike

Biases travel as synapses (:mod:`rewire.compiler.bias_lines`): ``rewire_bias_lines`` (a root
attribute, present only with biases) more inputs after the real ones carry payload 1 at
every step (:func:`rewire.export.lava_run.run_netx` feeds them; with a conv first layer they
are input channels, in the ``input`` layer's shape, 1 at every pixel), and ``rewire_relays``
(a layer's attribute) relay neurons (relay channels of a conv layer) appended after its real
neurons fire every step; ``rewire_bias_relay_neurons`` (root) counts the relay neurons.
netx's own ``bias`` (added to ``v`` from Lava's first step, before a layer's input arrives) is
not used.

A dense layer whose synapses are all pruned (netx crashes on it, lava #501) is written with
one silent inhibitory guard synapse and the attribute ``rewire_all_zero = 1`` (see
:func:`rewire.compiler.netx_legal.silent_guard`); :func:`read_weights` returns its zeros.

Convolutional networks (:class:`~rewire.ir.compiled_layers.CompiledConv` layers) add,
in the same torch order netx expects (netx reverses every shape and pair into its own
``(x, y, c)`` = ``(W, H, C)`` order, flips the kernel and transposes it to
``(C_out, kW, kH, C_in)``; Lava's ``Conv`` then convolves, which with the flip is torch's
cross-correlation)::

    /layer/0/type          b"input"   (no neuron group: only sets the input shape, no process)
    /layer/0/shape         int (C, H, W) of the input image
    /layer/<k>/type        b"conv"
    /layer/<k>/shape       int (C_out, H_out, W_out)
    /layer/<k>/weight      int (C_out, C_in / groups, kH, kW): torch's kernel, unflipped
    /layer/<k>/stride, padding, dilation   int (y, x); groups  int
    /layer/<k>/type        b"flatten" (before the first dense layer after a conv layer)

Sum pooling is a ``conv`` layer with ``groups = C`` (netx 0.6 cannot read ``pool`` layers).
Lava feeds a ``conv`` layer, like a ``dense`` one, one step late, and flattens a feature map
in ``(C, H, W)`` order (``transpose([2, 1, 0]).flatten()``), so dense weights keep torch's
column order. Lava's ``Conv`` uses the integer kernel as given (no ``optimize_weight_bits``).

Without conv layers there is no ``input`` layer: the source feeds the first dense layer. With
``current`` encoding the source sends graded spikes, so load the file with
``Network(net_config=path, input_message_bits=<file attr input_message_bits>)``; pass
``sparse_fc_layer=True`` to keep the pruned synapses sparse. Each dense layer in Lava delivers
its input one step later (see :mod:`rewire.compiler.simulate`).
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np

from rewire._version import __version__
from rewire.compiler import bias_lines
from rewire.compiler.netx_legal import lava_delay_steps, silent_guard
from rewire.errors import CompileError, ExportError
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import (CompiledConv, CompiledDense, CompiledRecurrentDense,
                                       lookup)
from rewire.io import atomic_path, check_hdf5


def _string(group: h5py.Group, key: str, value: str) -> None:
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _conv(group: h5py.Group, net: CompiledNetwork, k: int, layer: CompiledConv) -> dict:
    """The ``conv`` entries of one layer (torch order; netx reverses them); netx uses the
    integer kernel as given."""
    _string(group, "type", "conv")
    group.create_dataset("shape", data=np.array(layer.out_shape, dtype=np.int64))
    group.create_dataset("stride", data=np.array(layer.stride, dtype=np.int64))
    group.create_dataset("padding", data=np.array(layer.padding, dtype=np.int64))
    group.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
    group.create_dataset("groups", data=int(layer.groups))
    group.create_dataset("weight", data=layer.weight_int.astype(np.int64))
    return {}


def _dense(group: h5py.Group, net: CompiledNetwork, k: int, layer: CompiledDense) -> dict:
    """A ``dense`` layer; an all-zero one gets netx's silent guard (its decays returned)."""
    _string(group, "type", "dense")
    group.create_dataset("shape", data=np.array([layer.shape[0]], dtype=np.int64))
    if layer.all_zero:
        weight, i_decay, v_decay = silent_guard(net, k, layer)
        group.attrs["rewire_all_zero"] = 1
        group.create_dataset("weight", data=weight)
        return {"i_decay": i_decay, "v_decay": v_decay}
    group.create_dataset("weight", data=layer.weight_int.astype(np.int16))  # netx widens it
    return {}


def _dense_rec(group: h5py.Group, net: CompiledNetwork, k: int,
               layer: CompiledRecurrentDense) -> dict:
    """A ``dense_rec`` layer (lava-dl 0.6 ``create_dense(rec=True)`` -> ``RecurrentDense``)."""
    _string(group, "type", "dense_rec")
    group.create_dataset("shape", data=np.array([layer.shape[0]], dtype=np.int64))
    group.create_dataset("weight_rec", data=layer.weight_rec_int.astype(np.int16))
    group.create_dataset("weight", data=layer.weight_int.astype(np.int16))
    return {}


#: compiled layer type -> how its netx group is written (returns decay overrides).
LAYER_WRITERS = {CompiledDense: _dense, CompiledRecurrentDense: _dense_rec,
                 CompiledConv: _conv}


def check_network(net: CompiledNetwork) -> None:
    """Refuse, before any file is written, what a netx file cannot express.

    Raises:
        ValueError: ``net.profile`` has no netx target (``"netx"`` not in its formats).
        rewire.errors.ExportError: a skip connection (netx is a chain), a neuron netx cannot
            hold (a leaky-integrator ``LI``/``CubaLI`` readout: netx networks output spikes
            only), an all-zero layer whose input is too large for the silent guard, or a bias
            netx cannot carry exactly or whose relays do not fit the cores
            (:func:`rewire.compiler.bias_lines.with_lines`), naming the layer.
    """
    _checked_lines(net)


def _checked_lines(net: CompiledNetwork) -> tuple[CompiledNetwork, int]:
    """:func:`check_network`'s checks, returning what they build on the way:
    :func:`rewire.compiler.bias_lines.with_lines`'s ``(lined, lines)`` (its relays placed on
    the cores), so :func:`write` lines and maps the network once."""
    if "netx" not in net.profile.formats:
        raise ValueError(f"profile {net.profile.name!r} has no netx target "
                         f"(formats = {list(net.profile.formats)})")
    try:
        lined = bias_lines.with_lines(net)  # (net, 0) at once without a bias
    except CompileError as exc:
        raise ExportError(str(exc), "netx") from None
    for k, layer in enumerate(net.layers):
        if layer.skips:
            src = ", ".join("the input" if s.source == 0 else net.layers[s.source - 1].name
                            for s in layer.skips)
            raise ExportError(f"netx export: layer {layer.name} ({layer.source or layer.name}) "
                              f"sums a skip connection from {src}; a netx file is a chain of "
                              f"layers (lava-dl 0.6 netx reads no skip or concat), and in Lava "
                              f"each path would arrive with its own delay. Export ONNX or NIR "
                              f"(formats=['onnx', 'nir']) for this network, or train it without "
                              f"the skip for Loihi 2", "netx", layer.name)
        why = layer.chip.netx_refusal()
        if why:
            raise ExportError(f"netx export: layer {layer.name} ({layer.source or layer.name}) "
                              f"is {why}", "netx", layer.name)
        if type(layer) is CompiledDense and layer.all_zero:
            silent_guard(net, k, layer)
    return lined


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Write ``net`` as a netx HDF5 file, atomically.

    Args:
        net: the compiled network (not modified).
        path: target file (``.net`` or ``.h5``); parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError, rewire.errors.ExportError: see :func:`check_network`.
    """
    lined, lines = _checked_lines(net)
    cost = bias_lines.chip_cost(net)
    relays = bias_lines.relay_counts(net)[1] if lines else None
    net = lined
    # Built in memory, then written with one plain write: a full disk is then a clean
    # OSError (ENOSPC) instead of an HDF5 error mid-file (h5py raised RuntimeError, and its
    # objects' finalisers printed tracebacks or crashed the process).
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        attrs = {"rewire_format_version": net.format_version, "rewire_version": __version__,
                 "profile": net.profile.name, "steps": net.steps, "encoding": net.encoding,
                 "input_message_bits": net.input_message_bits,
                 "input_max_value": net.input_max_value, "dt": net.dt,
                 "lava_delay_steps": lava_delay_steps(net)}
        if lines:
            attrs["rewire_bias_lines"] = lines
            attrs["rewire_bias_relay_neurons"] = cost["relay_neurons"]
        if net.warnings:  # the compiler's warnings (JSON), only when there are some
            attrs["rewire_warnings"] = net.warnings_json
        f.attrs.update(attrs)
        layers = f.create_group("layer")
        index = 0
        for k, layer in enumerate(net.layers):
            conv, after_conv = isinstance(layer, CompiledConv), \
                k and isinstance(net.layers[k - 1], CompiledConv)
            if (k == 0 and conv) or (after_conv and not conv):
                g = layers.create_group(str(index))
                index += 1
                if k == 0:
                    _string(g, "type", "input")
                    g.create_dataset("shape", data=np.array(layer.in_shape, np.int64))
                else:
                    _string(g, "type", "flatten")
            g = layers.create_group(str(index))
            index += 1
            decays = lookup(LAYER_WRITERS, layer, "netx")(g, net, k, layer)
            if relays and relays[k]:
                g.attrs["rewire_relays"] = relays[k]
            n = g.create_group("neuron")
            for key, value in layer.chip.netx_fields(**decays).items():
                if key == "type":
                    _string(n, key, value)
                else:
                    n.create_dataset(key, data=value)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())
    return Path(path)


def read_weights(path: str | Path) -> list[np.ndarray]:
    """Integer weights of every layer that has some, in order: dense ``(n_out, n_in)``, conv
    ``(C_out, C_in / groups, kH, kW)`` (``input`` and ``flatten`` layers have none). An
    all-zero layer (written with its silent guard synapse) reads back as zeros.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not HDF5, declared data over :data:`rewire.io.MAX_HDF5_BYTES`, or not a
            netx layout (no ``layer`` group, layers not numbered 0..n-1, a weight that is
            not a numeric array); the message names the file and the entry.
    """
    check_hdf5(path, "netx file")
    try:
        with h5py.File(path, "r") as f:
            layer = f.get("layer")
            if not isinstance(layer, h5py.Group):
                raise ValueError(f"{path}: no 'layer' group; not a netx file")
            groups = []
            for k in range(len(layer)):
                g = layer.get(str(k))
                if not isinstance(g, h5py.Group):
                    raise ValueError(f"{path}: layer/{k} is missing or not a group; netx "
                                     f"layers are numbered 0..{len(layer) - 1}")
                groups.append(g)
            weights = []
            for k, g in enumerate(groups):
                if "weight" in g:
                    ds = g["weight"]
                    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf":
                        raise ValueError(f"{path}: layer/{k}/weight is not a numeric array")
                    w = np.asarray(ds[()]).astype(np.int64)
                    weights.append(np.zeros_like(w) if g.attrs.get("rewire_all_zero", 0)
                                   else w)
            return weights
    except (OSError, KeyError, AttributeError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: malformed netx file ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
