r"""NIR export (neuromorphic intermediate representation, ``nir`` 1.0); the reader is
:mod:`rewire.frontends.nir`.

:func:`to_nir` turns a :class:`~rewire.ir.compiled.CompiledNetwork` (or a float IR
:class:`~rewire.ir.network.Network`) into a ``nir.NIRGraph``;
:func:`write` goes through ``nir.write``. A dense net is the chain
``input -> fc1 -> lif1 -> fc2 -> lif2 -> ... -> output`` (``nir.Linear`` + each layer's own
neuron node, :func:`neuron_node`: ``nir.CubaLIF``, ``nir.LIF``, ``nir.IF``, ``nir.CubaLI`` or
``nir.LI``; Xylo's ``BitshiftLIF`` a ``nir.CubaLIF`` that rockpool maps back to its dash values,
with ``metadata["rewire.kind"]``, :meth:`rewire.ir.chip_bitshift.CompiledBitshiftLIF.nir_node`;
a recurrent layer's neurons are the nested graph of :func:`recurrent_subgraph`); a
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
(Norse issues #411, #412) and ``input_type``/``output_type`` are set. snnTorch 1.0's reader
asserts this ``R = tau_mem/dt`` (at its fixed ``dt = 1e-4`` s), so CubaLIF keeps it.

**LIF, LI and IF: r = 1**, the model's own voltages and weights. NIR's LIF
:math:`\tau\dot v = (v_\mathrm{leak} - v) + R I` with ``R = 1``, Euler at :math:`\Delta t`, is
Norse's ``LIFBoxCell`` step :math:`v \mathrel{+}= \Delta t/\tau\,(v_\mathrm{leak} - v + S)`;
NIR's IF with ``R = 1`` is read by every reader as ``v += S`` per step (NIR stores no step).
That is the form the readers agree on: Norse 1.1's ``from_nir`` ignores ``r`` on LIF and IF
nodes, snnTorch 1.0 asserts ``r == 1`` on IF, sinabs ignores it (docs/formats.md, "NIR
readers", has the table). After a sum pool the pool weight divides the voltages instead.

**Biases** go into the synapse node: ``nir.Affine(weight, bias)`` for a dense layer with one
(the input gain of a ``current`` net scales the weights, not the bias), the ``bias`` field of
``nir.Conv2d``. **Spike fields** NIR 1.0.8 has no field for (a reset by subtraction,
snnTorch's delayed reset, several spikes per step, a spike at ``v >= v_th``, a floor
``v_min``) go into the neuron node's ``metadata`` under ``rewire.<field>``
(:mod:`rewire.ir.spike_metadata`); a neuron with the defaults carries none.

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

import dataclasses
import io
from pathlib import Path

import nir
import numpy as np

from rewire._version import __version__
from rewire.errors import ExportError
from rewire.io import atomic_path
from rewire.ir import nodes as ir_nodes
from rewire.ir.chip_neurons import CompiledCubaLIF, chip_class
from rewire.ir.compiled import CompiledNetwork, float_network
from rewire.ir.compiled_layers import CompiledLayer, CompiledSumPool, layer_names
from rewire.ir.network import Network

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
    ``r = 1`` and the voltages divided by ``weight``; ``IF`` -> ``nir.IF`` with ``r = 1`` and
    the voltages divided by ``weight``; ``LI``/``CubaLI`` as ``LIF``/``CubaLIF`` without
    threshold). Spike fields other than the defaults go into the node's ``metadata``
    (:mod:`rewire.ir.spike_metadata`).
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


def _weight(synapse, gain: float | None) -> np.ndarray:
    """float64 weights, the input gain folded in (first layer of a ``current`` net)."""
    weight = np.asarray(synapse.weight).astype(np.float64)
    return weight * gain if gain is not None else weight


def _bias(synapse) -> np.ndarray | None:
    """float64 bias (exactly the float32 one), ``None`` without a bias."""
    bias = getattr(synapse, "bias", None)
    return None if bias is None else np.asarray(bias).astype(np.float64)


def _affine(synapse, gain):
    """``nir.Linear`` of the weights, ``nir.Affine`` when the synapse has a bias (the bias is
    not scaled by the input gain: ``a = W (g x) + b``)."""
    bias = _bias(synapse)
    if bias is None:
        return nir.Linear(weight=_weight(synapse, gain))
    return nir.Affine(weight=_weight(synapse, gain), bias=bias)


def _linear(layer, gain, pool_w):
    return _affine(layer.synapse, gain), neuron_node(layer.neuron, layer.out_shape)


def _recurrent(layer, gain, pool_w):
    return (_affine(layer.synapse, gain),
            recurrent_subgraph(layer.neuron, layer.synapse.weight_rec))


def _conv2d(layer, gain, pool_w):
    syn = layer.synapse
    weight, bias = _weight(syn, gain), _bias(syn)
    return (nir.Conv2d(input_shape=tuple(layer.in_shape[1:]), weight=weight,
                       stride=tuple(syn.stride), padding=tuple(syn.padding),
                       dilation=(1, 1), groups=int(syn.groups),
                       bias=np.zeros(len(weight)) if bias is None else bias),
            neuron_node(layer.neuron, layer.out_shape))


def _sumpool(layer, gain, pool_w):
    syn = layer.synapse
    return (nir.SumPool2d(kernel_size=np.array(syn.kernel), stride=np.array(syn.stride),
                          padding=np.array(syn.padding)),
            neuron_node(layer.neuron, layer.out_shape, pool_w * (gain or 1.0)))


#: IR synapse type -> its ``(synapse node, neuron node)`` pair.
LAYER_NODES = {ir_nodes.Dense: _linear, ir_nodes.RecurrentDense: _recurrent,
               ir_nodes.Conv2d: _conv2d, ir_nodes.SumPool2d: _sumpool}


def _compiled_ir(net: CompiledNetwork) -> tuple[Network, list, dict]:
    """The float IR of a compiled network (its biases included), its pool weights (the
    float32 kernel value, :func:`pool_weight`) and the run metadata."""
    pools = [pool_weight(layer) for layer in net.layers]
    ir = float_network(net)
    nodes, k = list(ir.nodes), 0
    for i, node in enumerate(nodes):  # a bias the compiled layer holds and the IR node lacks
        if isinstance(node, ir_nodes.SYNAPSES):
            bias = getattr(net.layers[k], "bias", None)
            if bias is not None and getattr(node, "bias", None) is None:
                nodes[i] = dataclasses.replace(node, bias=bias)
            k += 1
    if nodes != list(ir.nodes):
        ir = dataclasses.replace(ir, nodes=tuple(nodes))
    meta = {"format": NIR_FORMAT, "rewire_version": __version__, "profile": net.profile.name,
            "dt": float(net.dt), "time_unit": "s", "steps": int(net.steps),
            "encoding": net.encoding, "input_gain": float(net.input_gain),
            "input_max_value": int(net.input_max_value)}
    return ir, pools, meta


def _ir_meta(ir: Network) -> tuple[list, dict]:
    pools = [float(layer.synapse.weight) if isinstance(layer.synapse, ir_nodes.SumPool2d)
             else None for layer in ir.layers]
    meta = {"format": NIR_FORMAT, "rewire_version": __version__, "dt": float(ir.dt),
            "time_unit": "s", "steps": int(ir.steps), "encoding": ir.encoding,
            "input_gain": float(ir.input_gain)}
    return pools, meta


def to_nir(net: CompiledNetwork | Network) -> nir.NIRGraph:
    """The NIR graph of ``net``'s float model (see the module docstring): a compiled
    network's, or an IR :class:`~rewire.ir.network.Network` written as it stands (a NIR file
    is a float model: pieces the compiler does not map yet, such as biases and the spike
    fields, are written too).

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, then per layer ``fc<k>`` (``nir.Linear``, weight
        ``(out, in)`` float64; ``nir.Affine`` with its ``bias`` for a layer with one),
        ``conv<k>`` (``nir.Conv2d``, weight ``(C_out, C_in/groups, kH, kW)`` float64, its bias
        or zeros, dilation 1) or ``pool<k>`` (``nir.SumPool2d``), each followed by ``lif<k>``
        (the layer's neuron node, :func:`neuron_node`, parameters of the layer's output shape
        ``(out,)`` or ``(C, H, W)``; a recurrent layer's :func:`recurrent_subgraph`),
        ``skip<k>_<n>`` (``nir.Linear``) from a skip connection's source into ``lif<k>``,
        ``flatten`` (``nir.Flatten``) between a conv and a dense layer, and ``output``;
        ``metadata`` with ``dt``, ``steps``, ``encoding``, ``input_gain``, ``rewire_version``,
        ``format`` (a compiled network also ``input_max_value`` and ``profile``; conv nets
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
    if isinstance(net, CompiledNetwork):
        ir, pools, meta = _compiled_ir(net)
    else:
        ir = net
        pools, meta = _ir_meta(ir)
    names = layer_names(ir.layers)
    conv = any(isinstance(layer.synapse, ir_nodes.Conv2d) for layer in ir.layers)
    in_shape = tuple(ir.input_shape)
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)})}
    edges, prev = [], "input"
    for k, (layer, pool_w) in enumerate(zip(ir.layers, pools)):
        gain = ir.input_gain if k == 0 and ir.encoding == "current" else None
        syn, lif = names[k], f"lif{k + 1}"  # synapses named as the compiled layers
        if layer.flatten and k:
            nodes["flatten"] = nir.Flatten(input_type={"input": np.array(
                ir.layers[k - 1].out_shape)}, start_dim=0, end_dim=-1)
            edges.append((prev, "flatten"))
            prev = "flatten"
        nodes[syn], nodes[lif] = _lookup(layer.synapse)(layer, gain, pool_w)
        edges += [(prev, syn), (syn, lif)]
        for n, skip in enumerate(ir.skips_into(k + 1)):  # NIR sums every edge into a node
            name = f"skip{k + 1}_{n + 1}"
            nodes[name] = nir.Linear(weight=skip.weight.astype(np.float64))
            edges += [("input" if skip.source == 0 else f"lif{skip.source}", name), (name, lif)]
        prev = lif
    nodes["output"] = nir.Output(output_type={"output": np.array(
        [int(np.prod(ir.layers[-1].out_shape))])})
    edges.append((prev, "output"))
    if conv:
        meta["input_shape"] = [int(s) for s in in_shape]
        weights = [p for p in pools if p is not None]
        if weights:
            meta["pool_weight"] = weights[0]
    if getattr(net, "warnings", ()):  # a compiled network's warnings (JSON), when any
        meta["rewire_warnings"] = net.warnings_json
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _lookup(synapse):
    try:
        return LAYER_NODES[type(synapse)]
    except KeyError:
        raise ExportError(f"NIR export: synapse {type(synapse).__name__} has no NIR writer; "
                          f"known: {sorted(c.__name__ for c in LAYER_NODES)}", "nir",
                          type(synapse).__name__) from None


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
