"""Run a netx file in Lava's Loihi 2 simulator (fixed point). Needs the ``lava`` extra.

Recipe (lava-dl 0.6 ``netx/hdf5.py`` ``Network``, lava-nc 0.10 ``lava/proc/io``; checked with
lava-nc 0.10 / lava-dl 0.6): a ``RingBuffer`` source holding
the input ``(n_in, T)`` feeds ``net.inp``; ``net.out`` feeds a ``RingBuffer`` sink;
``net.run(RunSteps(T), Loihi2SimCfg(select_tag="fixed_pt"))``; the network is always stopped
(in ``finally``), since Lava starts worker processes that would otherwise hang.
"""

from __future__ import annotations

from pathlib import Path

import multiprocessing
import sys

import h5py
import numpy as np

from rewire.compiler.netx_legal import pad_silent

_LAVA_MP = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _allow_lava_import() -> None:
    """Lava calls ``multiprocessing.set_start_method('fork')`` at import, which raises
    "context has already been set" once anything (tqdm's lock, for one) has created a
    multiprocessing object. Clear the unused choice so Lava's import can make it."""
    if _LAVA_MP not in sys.modules and multiprocessing.get_start_method(allow_none=True):
        multiprocessing.set_start_method(None, force=True)


def lava_missing() -> str | None:
    """Why Lava cannot run here (``None`` when ``lava.lib.dl.netx`` and Lava's sim import)."""
    try:
        _allow_lava_import()
        import lava.lib.dl.netx  # noqa: F401
        from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return f"Lava is not usable ({type(exc).__name__}: {exc}); install 'rewire[lava]' " \
               f"on Python 3.10"
    return None


def run_netx(path: str | Path, payload: np.ndarray, sparse: bool = True,
             aligned: bool = False) -> np.ndarray:
    """Run one input sequence through a netx file in Lava and return the output spikes.

    Args:
        path: netx HDF5 written by :func:`rewire.export.netx.write`.
        payload: integer input ``(T, n_in)`` (graded payloads or 0/1 spikes); for a file with
            an ``input`` layer of shape ``(C, H, W)`` (conv nets) ``n_in = C*H*W`` in torch's
            ``(C, H, W)`` order, sent to Lava in its ``(W, H, C)`` order.
        sparse: load dense layers as Lava ``Sparse`` synapses (``sparse_fc_layer``).
        aligned: append the file's ``lava_delay_steps`` (``L``) silent steps to the input and
            drop the first ``L`` outputs, so output step ``t`` answers input step ``t``
            (equal to ``rewire.compiler.simulate.simulate(net, payload)``).
            A file with biases (root attribute ``rewire_bias_lines``) gets its always-on
            input lines appended here, payload 1 at every step (:mod:`rewire.compiler.bias_lines`).

    Returns:
        Output spikes ``(T, n_out)`` as uint8 (a feature-map output is flattened back in
        ``(C, H, W)`` order): with ``aligned=False`` as Lava produces them, one step late per
        dense or conv layer; with ``aligned=True`` lined up with the input.

    Raises:
        ImportError: Lava is not installed (install ``rewire[lava]`` on Python 3.10).
    """
    _allow_lava_import()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    with h5py.File(path, "r") as f:
        bits = int(f.attrs.get("input_message_bits", 0))
        first = f["layer/0"]
        image = tuple(first["shape"][()]) if first["type"][0] == b"input" else None
        delay = int(f.attrs.get("lava_delay_steps", 0))
        lines = int(f.attrs.get("rewire_bias_lines", 0))  # always-on inputs of the biases
    payload = np.asarray(payload)
    if lines:
        payload = np.hstack([payload, np.ones((len(payload), lines), payload.dtype)])
    if aligned:
        payload = pad_silent(payload, delay)
    steps = payload.shape[0]
    net = netx.hdf5.Network(net_config=str(path), input_message_bits=bits,
                            sparse_fc_layer=sparse)
    # Lava's order is the reverse of torch's: (n_in, T), or (W, H, C, T) from (T, C, H, W)
    data = (payload.reshape(steps, *image) if image is not None else payload).T
    source = Source(data=data.astype(np.int32) if bits else (data > 0))
    sink = Sink(shape=net.out.shape, buffer=steps)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps),
                run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        out = sink.data.get()
    finally:
        net.stop()
    out = np.asarray(out).T.reshape(steps, -1)  # (n_out, T) or (W, H, C, T) -> torch order
    out = (out > 0).astype(np.uint8)
    return out[delay:] if aligned else out
