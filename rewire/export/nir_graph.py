r"""NIR export (neuromorphic intermediate representation, ``nir`` 1.0); the reader is
:mod:`rewire.frontends.nir`.

:func:`to_nir` turns a :class:`~rewire.ir.compiled.CompiledNetwork` into a ``nir.NIRGraph``;
:func:`write` goes through ``nir.write``. A dense net is the chain
``input -> fc1 -> lif1 -> fc2 -> lif2 -> ... -> output`` (``nir.Linear`` + each layer's own
neuron node, :func:`neuron_node`: ``nir.CubaLIF``, ``nir.LIF``, ``nir.IF``, ``nir.CubaLI`` or
``nir.LI``; a recurrent layer's neurons are the nested graph of :func:`recurrent_subgraph`); a
conv net is

    ``input (C,H,W) -> conv1 -> lif1 [-> pool1 -> lif2] -> conv2 -> ... -> flatten -> fc1 ->
    lif<n> -> output``

with one ``nir.Conv2d`` per conv layer, one ``nir.SumPool2d`` per sum-pooling layer, each
followed by the layer's neuron node of its full ``(C, H, W)`` shape, and one ``nir.Flatten``
before the first ``nir.Linear``. Synaptic nodes are named like the compiled layers
(``conv<k>``, ``pool<k>``, ``fc<k>``), neuron nodes ``lif<k>`` by layer index (1-based).

**Time constants and scales.** NIR's CubaLIF is continuous:

.. math::
    \tau_\mathrm{syn}\dot I = -I + w_\mathrm{in} S, \qquad
    \tau_\mathrm{mem}\dot v = (v_\mathrm{leak} - v) + R I,

and readers integrate it with forward Euler at their step :math:`\Delta t`, the input ``S``
being the value arriving in one step (snnTorch's and Norse's importers do). Norse's LIF
(``norse/torch/functional/lif.py``) is exactly that Euler step with ``I`` = Norse's current ``j`` when

.. math::
    \tau_\mathrm{syn} = 1/\tau_\mathrm{syn}^{-1},\ \tau_\mathrm{mem} = 1/\tau_\mathrm{mem}^{-1}
    \text{ (seconds)},\quad R = \tau_\mathrm{mem}/\Delta t,\quad
    w_\mathrm{in} = \tau_\mathrm{syn}/\Delta t,\quad
    v_\mathrm{threshold} = v_\mathrm{th}\,\tau_\mathrm{mem}/\Delta t

(and :math:`v_\mathrm{leak}, v_\mathrm{reset}` scaled like the threshold): NIR's ``v`` is
Norse's ``v`` in units of one step's input, :math:`v/(\Delta t\,\tau_\mathrm{mem}^{-1})`.
Norse 1.1's own ``to_nir`` writes :math:`\Delta t/\tau^{-1}` as the time constant (off by
:math:`\Delta t^2`) and scalar parameters; here every parameter has the layer's full shape
(Norse issues #411, #412) and ``input_type``/``output_type`` are set.

**Sum pooling.** ``nir.SumPool2d`` has no weight, rewire's pooling synapses have one
(``pool_weight``, the same for every synapse). It is carried by the ``w_in`` of the CubaLIF
after the pool, :math:`w_\mathrm{in} = w_\mathrm{pool}\,\tau_\mathrm{syn}/\Delta t`, every other
parameter as for any layer: ``w_in`` is the input weight of the NIR equations, so a reader
that implements them runs the pool exactly (Norse's ``from_nir`` multiplies the input by
``w_in``; snnTorch divides the threshold by ``w_in dt / tau_syn``, the same neuron with reset
to 0 and ``v_leak = 0``). The alternatives were worse: a ``nir.Scale`` node (no reader maps it)
or a grouped ``nir.Conv2d`` with the constant kernel (exact, but no longer a pooling node).
:func:`from_nir` reads ``pool_weight`` back as the ratio of this ``w_in`` to the one of the
first LIF node, rounded to float32 (the dtype of the pooling kernel), which is exact.

**Flatten.** NIR shapes exclude the batch: ``nir.Flatten(input_type=(C, H, W), start_dim=0,
end_dim=-1)`` gives ``(C*H*W,)`` (``nir`` 1.0.8's type inference, and what snnTorch's exporter
writes for ``torch.nn.Flatten()``). Neurons are numbered as ``x.flatten()`` of the ``(C, H, W)``
map, as in the compiled network, so ``fc1``'s columns are in torch order.

**dt and input.** NIR has no time step: the graph's ``metadata`` carries ``dt`` (s), ``steps``,
``encoding``, ``input_gain`` and the rewire/profile versions (conv nets also ``input_shape``
and, with pooling, ``pool_weight``, for people reading the file; :func:`from_nir` takes both
from the nodes), and :func:`from_nir` reads it back. For ``current`` encoding the input gain is
folded into the first ``Linear``/``Conv2d`` (stored in float64, so dividing it out again
restores the float32 weight exactly): the graph's input is the pixel value in [0, 1],
presented every step; for ``rate`` encoding it is the spike.
"""

from __future__ import annotations

import io
from pathlib import Path

import nir
import numpy as np

from rewire._version import __version__
from rewire.errors import ExportError
from rewire.io import atomic_path
from rewire.ir.chip_neurons import CompiledCubaLIF, chip_class
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import (CompiledConv, CompiledDense, CompiledLayer,
                                       CompiledRecurrentDense, CompiledSumPool, lookup)

NIR_FORMAT = "rewire-nir-1"

#: What ``rewire.frontends.nir.from_nir`` builds a ``SpikingConvNet`` from (named in its errors).
CONV_SUPPORTED = ("Input (C, H, W) -> (Conv2d -> CubaLIF [-> SumPool2d -> CubaLIF])+ -> Flatten "
                  "-> Linear -> CubaLIF -> Output; Conv2d with a square kernel, equal strides "
                  "and paddings (integers), dilation 1, groups 1 and zero bias; SumPool2d with "
                  "a square kernel, stride = kernel and no padding, right after a conv's "
                  "CubaLIF, all pools with one weight")


def cuba_lif(neuron, shape: int | tuple[int, ...], weight: float = 1.0) -> nir.CubaLIF:
    """The ``nir.CubaLIF`` of an IR ``CubaLIF`` (module docstring), full-shape float64
    (:meth:`rewire.ir.chip_neurons.CompiledCubaLIF.nir_node`).

    Args:
        neuron: the IR :class:`~rewire.ir.nodes.CubaLIF` (or anything with its fields).
        shape: neurons, ``n`` or a ``(C, H, W)`` feature map: the shape of every parameter.
        weight: synaptic weight folded into ``w_in`` (``weight * tau_syn / dt``): 1 after a
            ``Linear``/``Conv2d`` (which carry their weights), ``pool_weight`` after a
            ``SumPool2d``.
    """
    return CompiledCubaLIF.nir_node(neuron, shape, weight)


def neuron_node(neuron, shape: int | tuple[int, ...], weight: float = 1.0) -> nir.NIRNode:
    """The NIR node of any IR neuron, full-shape float64, with a synaptic ``weight`` (a
    pool's) folded in: its kind's :meth:`~rewire.ir.chip_neurons.ChipNeuron.nir_node`
    (``CubaLIF`` -> :func:`cuba_lif`; ``LIF`` -> ``nir.LIF`` with ``tau = 1/tau_mem_inv``,
    ``r = weight * tau/dt`` and ``v`` in units of ``tau/dt``; ``IF`` -> ``nir.IF`` with
    ``r = weight / dt``; ``LI``/``CubaLI`` as ``LIF``/``CubaLIF`` without threshold).
    """
    return chip_class(neuron).nir_node(neuron, shape, weight)


def recurrent_subgraph(neuron, w_rec: np.ndarray) -> nir.NIRGraph:
    """A recurrent layer's neurons as the nested graph snnTorch's ``RLeaky``/``RSynaptic``
    and rockpool write: ``{input -> lif -> output, lif -> w_rec -> lif}`` with ``w_rec`` a
    ``nir.Linear`` of the recurrent weights ``(n, n)`` (row = target)."""
    n = len(w_rec)
    nodes = {"input": nir.Input(input_type={"input": np.array([n])}),
             "lif": neuron_node(neuron, n),
             "w_rec": nir.Linear(weight=np.asarray(w_rec, dtype=np.float64)),
             "output": nir.Output(output_type={"output": np.array([n])})}
    edges = [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def pool_weight(layer: CompiledLayer) -> float | None:
    """The weight of a compiled sum-pooling layer, ``None`` for any other layer.

    Raises:
        rewire.errors.ExportError: a :class:`~rewire.ir.compiled_layers.CompiledSumPool` that is not a sum pool (``groups = C_in = C_out``, a
            constant square kernel, stride = kernel, no padding), naming the layer.
    """
    if not isinstance(layer, CompiledSumPool):
        return None
    w = layer.weight
    c_in, c_out, k = layer.in_shape[0], layer.out_shape[0], w.shape[-1]
    if not (layer.groups == c_in == c_out and w.shape[1] == 1 and w.shape[2] == k
            and tuple(layer.stride) == (k, k) and tuple(layer.padding) == (0, 0)
            and w.size and np.all(w == w.flat[0])):
        raise ExportError(f"NIR export: layer {layer.name} is named as a pooling layer but is "
                          f"not a sum pool (groups {layer.groups}, kernel {w.shape}, stride "
                          f"{layer.stride}, padding {layer.padding}); a sum pool has groups = "
                          f"channels, a constant square kernel, stride = kernel, no padding",
                          "nir", layer.name)
    return float(w.flat[0])


def _weight(layer: CompiledLayer, gain: float | None) -> np.ndarray:
    """float64 weights, the input gain folded in (first layer of a ``current`` net)."""
    weight = layer.weight.astype(np.float64)
    return weight * gain if gain is not None else weight


def _linear(layer, out_shape, gain, pool_w):
    return nir.Linear(weight=_weight(layer, gain)), neuron_node(layer.neuron, out_shape)


def _recurrent(layer, out_shape, gain, pool_w):
    return (nir.Linear(weight=_weight(layer, gain)),
            recurrent_subgraph(layer.neuron, layer.weight_rec))


def _conv2d(layer, out_shape, gain, pool_w):
    weight = _weight(layer, gain)
    return (nir.Conv2d(input_shape=tuple(layer.in_shape[1:]), weight=weight,
                       stride=tuple(layer.stride), padding=tuple(layer.padding),
                       dilation=(1, 1), groups=int(layer.groups), bias=np.zeros(len(weight))),
            neuron_node(layer.neuron, out_shape))


def _sumpool(layer, out_shape, gain, pool_w):
    kernel = layer.weight.shape[-1]
    return (nir.SumPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array(layer.stride),
                          padding=np.array(layer.padding)),
            neuron_node(layer.neuron, out_shape, pool_w * (gain or 1.0)))


#: compiled layer type -> its ``(synapse node, neuron node)`` pair.
LAYER_NODES = {CompiledDense: _linear, CompiledRecurrentDense: _recurrent,
               CompiledConv: _conv2d, CompiledSumPool: _sumpool}


def to_nir(net: CompiledNetwork) -> nir.NIRGraph:
    """The NIR graph of ``net``'s float model (see the module docstring).

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, then per layer ``fc<k>`` (``nir.Linear``, weight
        ``(out, in)`` float64), ``conv<k>`` (``nir.Conv2d``, weight ``(C_out, C_in/groups, kH,
        kW)`` float64, zero bias, dilation 1) or ``pool<k>`` (``nir.SumPool2d``), each followed
        by ``lif<k>`` (the layer's neuron node, :func:`neuron_node`, parameters of the
        layer's output shape ``(out,)`` or ``(C, H, W)``; a recurrent layer's
        :func:`recurrent_subgraph`), ``flatten`` (``nir.Flatten``) between a conv and a dense layer, and
        ``output``; ``metadata`` with ``dt``, ``steps``, ``encoding``, ``input_gain``,
        ``input_max_value``, ``profile``, ``rewire_version``, ``format`` (conv nets also
        ``input_shape`` and, with pooling, ``pool_weight``).

    Raises:
        rewire.errors.ExportError: a layer named ``pool<k>`` that is not a sum pool (:func:`pool_weight`).

    Example:
        >>> import rewire
        >>> from rewire.training.model import SpikingMLP
        >>> net = rewire.compile(SpikingMLP((4, 3, 2)), "loihi2", 16)
        >>> g = to_nir(net)
        >>> list(g.nodes), g.metadata["dt"], g.nodes["lif1"].tau_mem.shape
        (['input', 'fc1', 'lif1', 'fc2', 'lif2', 'output'], 0.0001, (3,))
    """
    conv = any(isinstance(layer, CompiledConv) for layer in net.layers)
    pools = [pool_weight(layer) for layer in net.layers]
    in_shape = net.layers[0].in_shape if isinstance(net.layers[0], CompiledConv) \
        else (net.sizes[0],)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges, prev = [], "input"
    for k, (layer, pool_w) in enumerate(zip(net.layers, pools)):
        gain = net.input_gain if k == 0 and net.encoding == "current" else None
        dense = isinstance(layer, CompiledDense)
        syn, lif = layer.name, f"lif{k + 1}"  # synapses named as the compiled layers
        out_shape = layer.shape[0] if dense else layer.out_shape
        if dense and prev != "input" and isinstance(net.layers[k - 1], CompiledConv):
            nodes["flatten"] = nir.Flatten(input_type={"input": np.array(
                net.layers[k - 1].out_shape)}, start_dim=0, end_dim=-1)
            edges.append((prev, "flatten"))
            prev = "flatten"
        nodes[syn], nodes[lif] = lookup(LAYER_NODES, layer, "NIR export")(layer, out_shape,
                                                                          gain, pool_w)
        edges += [(prev, syn), (syn, lif)]
        prev = lif
    nodes["output"] = nir.Output(output_type={"output": np.array([net.sizes[-1]])})
    edges.append((prev, "output"))
    meta = {"format": NIR_FORMAT, "rewire_version": __version__, "profile": net.profile.name,
            "dt": float(net.dt), "time_unit": "s", "steps": int(net.steps),
            "encoding": net.encoding, "input_gain": float(net.input_gain),
            "input_max_value": int(net.input_max_value)}
    if conv:
        meta["input_shape"] = [int(s) for s in in_shape]
        weights = [p for p in pools if p is not None]
        if weights:
            meta["pool_weight"] = weights[0]
    if net.warnings:  # the compiler's warnings (JSON), only when there are some
        meta["rewire_warnings"] = net.warnings_json
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Write :func:`to_nir` of ``net`` with ``nir.write``, atomically; return the path.

    Datasets are gzip-compressed (``nir.write``'s default) up to :data:`GZIP_MAX_WEIGHTS`
    weights, uncompressed above (any HDF5 reader reads both)."""
    graph = to_nir(net)
    buf = io.BytesIO()  # in memory first: a full disk is a clean ENOSPC, not an HDF5 error
    # gzip (nir's default) saves about half of the float64 weights but runs at ~10 MB/s;
    # above GZIP_MAX_WEIGHTS weights the file is written uncompressed (docs/compiler.md)
    nir.write(buf, graph, compression="gzip" if net.total_synapses <= GZIP_MAX_WEIGHTS
              else None)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())
    return Path(path)


GZIP_MAX_WEIGHTS = 1 << 22  # weights (recurrent ones included) written gzip-compressed
