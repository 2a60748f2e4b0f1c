"""Lava-dl netx HDF5 writer (and a reader for tests), with h5py only: no Lava needed.

Layout read by ``lava.lib.dl.netx.hdf5.Network`` (lava-dl 0.6, ``netx/hdf5.py``)::

    /                      attrs: rewire_format_version, rewire_version, profile, steps,
                                  encoding, input_message_bits, input_max_value, dt
    /layer/<k>/type        b"dense"
    /layer/<k>/shape       int (n_out,)
    /layer/<k>/weight      int (n_out, n_in): chip weights (even values in [-256, 254] on loihi2)
    /layer/<k>/neuron/     type b"CUBA", iDecay, vDecay, vThMant, refDelay, gradedSpike

There is no ``input`` layer: the source feeds the first dense layer directly. With
``current`` encoding the source sends graded spikes, so load the file with
``Network(net_config=path, input_message_bits=<file attr input_message_bits>)``; pass
``sparse_fc_layer=True`` to keep the pruned synapses sparse. Each dense layer in Lava delivers
its input one step later (see :mod:`rewire.compile.simulate`).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from rewire import __version__
from rewire.compile.network import CompiledNetwork
from rewire.export.atomic import atomic_path


def _string(group: h5py.Group, key: str, value: str) -> None:
    group.create_dataset(key, (1,), "S10", [value.encode("ascii")])


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Write ``net`` as a netx HDF5 file, atomically.

    Args:
        net: the compiled network (not modified).
        path: target file (``.net`` or ``.h5``); parent folders are created.

    Returns:
        The path written.

    Raises:
        ValueError: ``net.profile`` has no netx target (``"netx"`` not in its formats).
    """
    if "netx" not in net.profile.formats:
        raise ValueError(f"profile {net.profile.name!r} has no netx target "
                         f"(formats = {list(net.profile.formats)})")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            attrs = {"rewire_format_version": net.format_version, "rewire_version": __version__,
                     "profile": net.profile.name, "steps": net.steps, "encoding": net.encoding,
                     "input_message_bits": net.input_message_bits,
                     "input_max_value": net.input_max_value, "dt": net.neuron.dt}
            f.attrs.update(attrs)
            layers = f.create_group("layer")
            for k, layer in enumerate(net.layers):
                g = layers.create_group(str(k))
                _string(g, "type", "dense")
                g.create_dataset("shape", data=np.array([layer.shape[0]], dtype=np.int64))
                g.create_dataset("weight", data=layer.weight_int.astype(np.int64))
                n = g.create_group("neuron")
                _string(n, "type", "CUBA")
                n.create_dataset("iDecay", data=layer.i_decay)
                n.create_dataset("vDecay", data=layer.v_decay)
                n.create_dataset("vThMant", data=layer.v_th_mant)
                n.create_dataset("refDelay", data=1)
                n.create_dataset("gradedSpike", data=False)
    return Path(path)


def read_weights(path: str | Path) -> list[np.ndarray]:
    """Integer weight matrices ``(n_out, n_in)`` of every layer of a netx file, in order."""
    with h5py.File(path, "r") as f:
        return [f["layer"][str(k)]["weight"][()].astype(np.int64)
                for k in range(len(f["layer"]))]
