"""Run a netx file in Lava's Loihi 2 simulator (fixed point). Needs the ``lava`` extra.

Recipe (lava-dl 0.6 ``netx/hdf5.py`` ``Network``, lava-nc 0.10 ``lava/proc/io``; checked with
lava-nc 0.10 / lava-dl 0.6): a ``RingBuffer`` source holding
the input ``(n_in, T)`` feeds ``net.inp``; ``net.out`` feeds a ``RingBuffer`` sink;
``net.run(RunSteps(T), Loihi2SimCfg(select_tag="fixed_pt"))``; the network is always stopped
(in ``finally``), since Lava starts worker processes that would otherwise hang.
"""

from __future__ import annotations

from pathlib import Path

import math
import multiprocessing
import sys

import h5py
import numpy as np

from rewire.compiler.netx_legal import pad_silent
from rewire.ir.input_layout import flatten_samples, sample_axes

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
             aligned: bool = False, input_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Run input sequences through a netx file in Lava and return the output spikes.

    Args:
        path: netx HDF5 written by :func:`rewire.export.netx.write`.
        payload: integer input (graded payloads or 0/1 spikes) in the model's input layout
            or flat (:mod:`rewire.ir.input_layout`): one sample ``(T, *input_shape)`` or
            ``(T, n_in)``, or a batch ``(T, B, *input_shape)`` or ``(T, B, n_in)``, as
            :func:`rewire.compiler.simulate.encode_input` returns it (each sample is one Lava
            run). ``n_in = C*H*W`` of a conv net's image is in torch's ``(C, H, W)`` order,
            sent to Lava in its ``(W, H, C)`` order.
        sparse: load dense layers as Lava ``Sparse`` synapses (``sparse_fc_layer``).
        aligned: append the file's ``lava_delay_steps`` (``L``) silent steps to the input and
            drop the first ``L`` outputs, so output step ``t`` answers input step ``t``
            (equal to ``rewire.compiler.simulate.simulate(net, payload)``).
        input_shape: the per-sample layout ``payload`` may take besides the flat ``(n_in,)``
            (``CompiledNetwork.input_shape``); default: the file's ``input`` layer's
            ``(C, H, W)`` (conv nets), else flat only.
            A file with biases (root attribute ``rewire_bias_lines``) gets its always-on
            input lines appended here, payload 1 at every step (input channels, 1 at every
            pixel, when the ``input`` layer's shape holds them: not part of the default
            ``(C, H, W)``; :mod:`rewire.compiler.bias_lines`).

    Returns:
        Output spikes as uint8, ``(T, n_out)`` for one sample, ``(T, B, n_out)`` for a batch
        (a feature-map output is flattened back in ``(C, H, W)`` order): with
        ``aligned=False`` as Lava produces them, one step late per dense or conv layer; with
        ``aligned=True`` lined up with the input.

    Raises:
        ImportError: Lava is not installed (install ``rewire[lava]`` on Python 3.10).
        ValueError: ``payload`` in none of these layouts (named).
    """
    with h5py.File(path, "r") as f:
        first = f["layer/0"]
        image = tuple(int(s) for s in first["shape"][()]) if first["type"][0] == b"input" \
            else None
        lines = int(f.attrs.get("rewire_bias_lines", 0))
    payload = np.asarray(payload)
    own = image and (image[0] - lines,) + image[1:]  # the always-on channels are not input
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else own
    if shape is None:  # a flat input: (T, n_in) or (T, B, n_in)
        if payload.ndim not in (2, 3):
            raise ValueError(f"payload: shape {payload.shape} is neither (T, n_in) nor "
                             f"(T, B, n_in); pass input_shape= for another layout")
        lead = payload.ndim - 1
    else:  # 1: (T, ...), 2: (T, B, ...)
        n_in = math.prod(shape)
        try:
            lead = sample_axes(payload, n_in, shape)
        except ValueError:
            raise ValueError(f"payload: shape {payload.shape} is none of (T, {n_in}), "
                             f"(T, *{shape}), (T, B, {n_in}), (T, B, *{shape})") from None
        payload = flatten_samples(payload, n_in, shape, lead)
    if lead == 1:
        return _run_one(path, payload, image, sparse, aligned)
    return np.stack([_run_one(path, payload[:, b], image, sparse, aligned)
                     for b in range(payload.shape[1])], axis=1)


def _run_one(path, payload: np.ndarray, image, sparse: bool, aligned: bool) -> np.ndarray:
    """One sample ``(T, n_in)`` through Lava: output spikes ``(T, n_out)`` uint8."""
    _allow_lava_import()
    from lava.lib.dl import netx
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    with h5py.File(path, "r") as f:
        bits = int(f.attrs.get("input_message_bits", 0))
        delay = int(f.attrs.get("lava_delay_steps", 0))
        lines = int(f.attrs.get("rewire_bias_lines", 0))  # always-on inputs of the biases
    payload = np.asarray(payload)
    if lines:  # lines, or channels of ones (the last in torch's (C, H, W) flat order)
        ones = lines * (math.prod(image[1:]) if image is not None else 1)
        payload = np.hstack([payload, np.ones((len(payload), ones), payload.dtype)])
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
