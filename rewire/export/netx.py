"""Lava-dl netx HDF5 writer (and a reader for tests), with h5py only: no Lava needed.

Layout read by ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6, ``netx/hdf5.py``)::

    /                      attrs: rewire_format_version, rewire_version, profile, steps,
                                  encoding, input_message_bits, input_max_value, dt,
                                  lava_delay_steps (one step per layer: drop that many)
    /layer/<k>/type        b"dense" (b"dense_rec" for a recurrent layer)
    /layer/<k>/shape       int (n_out,)
    /layer/<k>/weight      int16 (n_out, n_in): chip weights (even values in [-254, 254] on
                           loihi2, largest magnitude >= 128 so that netx's optimize_weight_bits
                           keeps them exact; see rewire.compiler.quantize.netx_effective_weights)
    /layer/<k>/weight_rec  int16 (n_out, n_out): a dense_rec layer's recurrent weights (row =
                           target; lava-dl 0.6 create_dense(rec=True) -> RecurrentDense)
    /layer/<k>/neuron/     type b"CUBA", iDecay, vDecay, vThMant (the layer's own neuron),
                           refDelay, gradedSpike

A dense layer whose synapses are all pruned (netx crashes on it, lava #501) is written with
one silent inhibitory guard synapse and the attribute ``rewire_all_zero = 1`` (see
:func:`_silent_guard`); :func:`read_weights` returns its zeros.

Convolutional networks (layers of ``kind == "conv"``, see :mod:`rewire.training.conv`) add,
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

from rewire import __version__
from rewire.errors import CompileError
from rewire.ir.compiled import CompiledLayer, CompiledNetwork
from rewire.io import atomic_path, check_hdf5


def _string(group: h5py.Group, key: str, value: str) -> None:
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def _conv(group: h5py.Group, layer: CompiledLayer) -> None:
    """The ``conv`` entries of one layer (torch order; netx reverses them)."""
    _string(group, "type", "conv")
    group.create_dataset("shape", data=np.array(layer.out_shape, dtype=np.int64))
    group.create_dataset("stride", data=np.array(layer.stride, dtype=np.int64))
    group.create_dataset("padding", data=np.array(layer.padding, dtype=np.int64))
    group.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
    group.create_dataset("groups", data=int(layer.groups))


def check_network(net: CompiledNetwork) -> None:
    """Refuse, before any file is written, what a netx file cannot express.

    Raises:
        ValueError: ``net.profile`` has no netx target (``"netx"`` not in its formats).
        rewire.errors.CompileError: a leaky-integrator (``LI``/``CubaLI``) readout layer,
            naming it: netx networks output spikes only.
    """
    if "netx" not in net.profile.formats:
        raise ValueError(f"profile {net.profile.name!r} has no netx target "
                         f"(formats = {list(net.profile.formats)})")
    for layer in net.layers:
        if not layer.spiking:
            raise CompileError(
                f"netx export: layer {layer.name} ({layer.source or layer.name}) is a "
                f"{layer.neuron.kind} leaky-integrator readout; a netx network's output is "
                f"spikes (lava-dl 0.6 netx reads only CUBA/LIF neurons and Lava's sink records "
                f"s_out), so its voltage cannot be read out: end the model in a spiking layer "
                f"(e.g. LIFCell) for Loihi 2, or export this net as ONNX or NIR "
                f"(formats=['onnx', 'nir'])")


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Write ``net`` as a netx HDF5 file, atomically.

    Args:
        net: the compiled network (not modified).
        path: target file (``.net`` or ``.h5``); parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError, rewire.errors.CompileError: see :func:`check_network`.
    """
    check_network(net)
    # Built in memory, then written with one plain write: a full disk is then a clean
    # OSError (ENOSPC) instead of an HDF5 error mid-file (h5py raised RuntimeError, and its
    # objects' finalisers printed tracebacks or crashed the process).
    buf = io.BytesIO()
    if True:
        with h5py.File(buf, "w") as f:
            attrs = {"rewire_format_version": net.format_version, "rewire_version": __version__,
                     "profile": net.profile.name, "steps": net.steps, "encoding": net.encoding,
                     "input_message_bits": net.input_message_bits,
                     "input_max_value": net.input_max_value, "dt": net.dt,
                     "lava_delay_steps": len(net.layers)}
            f.attrs.update(attrs)
            layers = f.create_group("layer")
            index = 0
            for k, layer in enumerate(net.layers):
                previous = net.layers[k - 1].kind if k else None
                if (k == 0 and layer.kind == "conv") or (previous == "conv" != layer.kind):
                    g = layers.create_group(str(index))
                    index += 1
                    if k == 0:
                        _string(g, "type", "input")
                        g.create_dataset("shape", data=np.array(layer.in_shape, np.int64))
                    else:
                        _string(g, "type", "flatten")
                g = layers.create_group(str(index))
                index += 1
                if layer.kind == "conv":
                    _conv(g, layer)
                else:
                    _string(g, "type", "dense_rec" if layer.recurrent else "dense")
                    g.create_dataset("shape", data=np.array([layer.shape[0]], dtype=np.int64))
                    if layer.recurrent:  # lava-dl 0.6 create_dense(rec=True) -> RecurrentDense
                        g.create_dataset("weight_rec",
                                         data=layer.weight_rec_int.astype(np.int16))
                i_decay, v_decay = layer.i_decay, layer.v_decay
                if layer.kind == "dense" and layer.all_zero and not layer.recurrent:
                    weight, i_decay, v_decay = _silent_guard(net, k, layer)
                    g.attrs["rewire_all_zero"] = 1
                elif layer.kind == "dense":
                    weight = layer.weight_int.astype(np.int16)  # netx widens it on load
                else:
                    weight = layer.weight_int.astype(np.int64)
                g.create_dataset("weight", data=weight)
                n = g.create_group("neuron")
                _string(n, "type", "CUBA")
                n.create_dataset("iDecay", data=i_decay)
                n.create_dataset("vDecay", data=v_decay)
                n.create_dataset("vThMant", data=layer.v_th_mant)
                n.create_dataset("refDelay", data=1)
                n.create_dataset("gradedSpike", data=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
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


GUARD_WEIGHT = -254  # netx keeps it exact: mixed sign mode, scale 128/254 < 1, exponent 0


def _silent_guard(net: CompiledNetwork, k: int, layer: CompiledLayer):
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
        ValueError: the input payload is too large for the guard (over 9 graded bits).
    """
    payload = net.input_max_value if (k == 0 and net.encoding == "current") else 1
    half = 1 << (net.profile.neuron.state_bits - 1)
    if abs(GUARD_WEIGHT) * payload << net.profile.neuron.activation_shift >= half:
        raise ValueError(f"layer {layer.name}: all synapses pruned and the input payload "
                         f"{payload} is too large for netx's silent guard synapse")
    weight = np.zeros(layer.shape, dtype=np.int16)
    weight[0, 0] = GUARD_WEIGHT
    unit = net.profile.neuron.decay_unit
    return weight, unit, unit - 1
