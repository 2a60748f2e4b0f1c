r"""ONNX export of the float model unrolled over time: one ``Scan`` over all ``T`` steps.

The step is :func:`rewire.export.onnx_step.float_body` (each layer's IR neuron); the
``Scan`` carries the states and creates them as zeros, so a user feeds only the input::

    input : x (steps, batch, n_in)   (current encoding: the input in [0, 1] at every step;
                                      rate encoding: the input spikes)
    output: z (steps, batch, n_out)  output spikes (a readout's v), and v<k>_final, i<k>_final
                                     (batch, n_k), r<k>_final for a recurrent layer

``steps`` is a symbolic dimension: there is no static unroll and no limit on ``T``
(the metadata's ``steps`` is the ``T`` the network was trained for). Conv nets export the
same way, their inputs and states flat in ``x.flatten()`` order of each ``(C, H, W)`` map
(:func:`rewire.export.onnx_graph.conv2d`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from rewire.ir.compiled import CompiledNetwork
from rewire.export import onnx_graph
from rewire.export.onnx_graph import save, scan_model, session
from rewire.export.onnx_step import encode_sequence, float_body

USAGE = "feed x (T, batch, n_in); z (T, batch, n_out) are the output spikes; states start at 0"


def build(net: CompiledNetwork) -> onnx.ModelProto:
    """Build the unrolled (``Scan``) float model of ``net``; checked, with metadata.

    Example:
        >>> import rewire
        >>> from rewire.training.model import SpikingMLP
        >>> net = rewire.compile(SpikingMLP((4, 3, 2)), "loihi2", 16)
        >>> m = build(net)
        >>> [n.op_type for n in m.graph.node][-1], [o.name for o in m.graph.output][:2]
        ('Scan', ['z', 'v0_final'])
    """
    return scan_model(net, float_body(net), "unrolled", USAGE)


def check_size(net: CompiledNetwork) -> None:
    """Refuse float32 weights over ONNX's 2 GiB before anything is written
    (:func:`rewire.export.onnx_graph.check_size`).

    Raises:
        rewire.errors.ExportError: naming ``onnx_unrolled`` and the size.
    """
    onnx_graph.check_size(net, "onnx_unrolled")


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Build and write the unrolled model atomically; return the path."""
    return save(build(net), path)


def run(path, x: np.ndarray, steps: int | None = None, sess=None) -> np.ndarray:
    """Run the unrolled model in onnxruntime.

    Args:
        path: file written by :func:`write` (or an ``onnx.ModelProto``).
        x: float32 in the model's input layout or flat (as :func:`rewire.export.onnx_step.run`):
            ``(B, *input_shape)`` / ``(B, n_in)`` constant input (repeated ``steps`` times,
            default the file's ``T``) or ``(T, B, *input_shape)`` / ``(T, B, n_in)``.
        sess: an open session to reuse (optional).

    Returns:
        Output spikes ``(T, B, n_out)`` float32.

    Raises:
        ValueError: ``x`` in neither layout.
    """
    sess = sess or session(path)
    steps = steps or int(sess.get_modelmeta().custom_metadata_map["steps"])
    x, _ = onnx_graph.flat_input(sess, np.asarray(x, dtype=np.float32))
    seq = np.ascontiguousarray(encode_sequence(x, steps))
    return sess.run(["z"], {"x": seq})[0]
