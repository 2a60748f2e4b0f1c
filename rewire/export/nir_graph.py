r"""NIR export and import (neuromorphic intermediate representation, ``nir`` 1.0).

:func:`to_nir` turns a :class:`~rewire.compile.network.CompiledNetwork` into a ``nir.NIRGraph``
``input -> fc1 -> lif1 -> fc2 -> lif2 -> ... -> output`` (``nir.Linear`` + ``nir.CubaLIF``);
:func:`write` / :func:`read` go through ``nir.write`` / ``nir.read``; :func:`from_nir` builds
the Norse model (:class:`rewire.training.model.SpikingMLP`) back from a graph.

**Time constants and scales.** NIR's CubaLIF is continuous:

.. math::
    \tau_\mathrm{syn}\dot I = -I + w_\mathrm{in} S, \qquad
    \tau_\mathrm{mem}\dot v = (v_\mathrm{leak} - v) + R I,

and readers integrate it with forward Euler at their step :math:`\Delta t`, the input ``S``
being the value arriving in one step (snnTorch's and Norse's importers do). Norse's LIF
(REFERENCE §3) is exactly that Euler step with ``I`` = Norse's current ``j`` when

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

**dt and input.** NIR has no time step: the graph's ``metadata`` carries ``dt`` (s), ``steps``,
``encoding``, ``input_gain`` and the rewire/profile versions, and :func:`from_nir` reads it
back. For ``current`` encoding the input gain is folded into the first ``Linear`` (stored in
float64, so dividing it out again restores the float32 weight exactly): the graph's input is
the pixel value in [0, 1], presented every step; for ``rate`` encoding it is the spike.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from rewire import __version__
from rewire.compile.network import CompiledNetwork
from rewire.export.atomic import atomic_path
from rewire.training.model import NeuronConfig, SpikingMLP

NIR_FORMAT = "rewire-nir-1"


def _full(value: float, n: int) -> np.ndarray:
    return np.full(n, float(value), dtype=np.float64)


def cuba_lif(neuron: NeuronConfig, n: int) -> nir.CubaLIF:
    """The ``nir.CubaLIF`` of ``n`` Norse LIF neurons (module docstring), full-shape float64."""
    dt = neuron.dt
    tau_syn, tau_mem = 1.0 / neuron.tau_syn_inv, 1.0 / neuron.tau_mem_inv
    v_unit = tau_mem / dt  # NIR v = Norse v * tau_mem / dt
    return nir.CubaLIF(tau_syn=_full(tau_syn, n), tau_mem=_full(tau_mem, n),
                       r=_full(tau_mem / dt, n), v_leak=_full(neuron.v_leak * v_unit, n),
                       v_threshold=_full(neuron.v_th * v_unit, n),
                       v_reset=_full(neuron.v_reset * v_unit, n),
                       w_in=_full(tau_syn / dt, n))


def to_nir(net: CompiledNetwork) -> nir.NIRGraph:
    """The NIR graph of ``net``'s float model (see the module docstring).

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, ``fc<k>`` (``nir.Linear``, weight ``(out, in)``
        float64), ``lif<k>`` (``nir.CubaLIF``, parameters of shape ``(out,)``), ``output``;
        ``metadata`` with ``dt``, ``steps``, ``encoding``, ``input_gain``, ``input_max_value``,
        ``profile``, ``rewire_version``, ``format``.

    Raises:
        ValueError: ``net`` has a conv layer (named in the message).

    Example:
        >>> from rewire.hw_profiles.profile import load_profile
        >>> from rewire.compile.quantize import compile_network
        >>> net = compile_network(SpikingMLP((4, 3, 2)), load_profile("loihi2"), 16)
        >>> g = to_nir(net)
        >>> list(g.nodes), g.metadata["dt"], g.nodes["lif1"].tau_mem.shape
        (['input', 'fc1', 'lif1', 'fc2', 'lif2', 'output'], 0.0001, (3,))
    """
    net.require_dense("NIR export")
    nodes = {"input": nir.Input(input_type={"input": np.array([net.sizes[0]])})}
    edges, prev = [], "input"
    for k, layer in enumerate(net.layers):
        weight = layer.weight.astype(np.float64)
        if k == 0 and net.encoding == "current":
            weight = weight * net.input_gain
        lin, lif = f"fc{k + 1}", f"lif{k + 1}"
        nodes[lin] = nir.Linear(weight=weight)
        nodes[lif] = cuba_lif(net.neuron, layer.shape[0])
        edges += [(prev, lin), (lin, lif)]
        prev = lif
    nodes["output"] = nir.Output(output_type={"output": np.array([net.sizes[-1]])})
    edges.append((prev, "output"))
    meta = {"format": NIR_FORMAT, "rewire_version": __version__, "profile": net.profile.name,
            "dt": float(net.neuron.dt), "time_unit": "s", "steps": int(net.steps),
            "encoding": net.encoding, "input_gain": float(net.input_gain),
            "input_max_value": int(net.input_max_value)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write(net: CompiledNetwork, path: str | Path) -> Path:
    """Write :func:`to_nir` of ``net`` with ``nir.write``, atomically; return the path."""
    graph = to_nir(net)
    with atomic_path(path) as tmp:
        nir.write(str(tmp), graph)
    return Path(path)


def read(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` a graph (rewire's or another tool's).

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    return nir.read(str(path))


def _scalar(node: nir.CubaLIF, field: str) -> float:
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1:
        raise NotImplementedError(f"CubaLIF.{field} differs between neurons ({values.size} "
                                  f"values); rewire's SpikingMLP shares one LIF setting")
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


def from_nir(graph: nir.NIRGraph | str | Path, dt: float | None = None) -> SpikingMLP:
    """Build the Norse model of a NIR graph ``Input -> (Linear|Affine -> CubaLIF)+ -> Output``.

    Args:
        graph: a graph or the path of a NIR file.
        dt: Euler step in s; default the graph's ``metadata["dt"]`` (NIR itself has none).

    Returns:
        :class:`~rewire.training.model.SpikingMLP` with the graph's weights and LIF constants,
        ``steps``, ``encoding`` and ``input_gain`` from the metadata (defaults: 16 steps,
        ``rate`` encoding, i.e. the graph's input is the layer input as is).

    Raises:
        ValueError: no ``dt`` in the metadata nor the argument; not exactly one input.
        NotImplementedError: a node other than Linear/Affine (zero bias)/CubaLIF, branches,
            recurrence, or LIF parameters that differ between neurons or layers.
    """
    if not isinstance(graph, nir.NIRGraph):
        graph = read(graph)
    meta = dict(graph.metadata or {})
    dt = dt if dt is not None else meta.get("dt")
    if dt is None:
        raise ValueError("the NIR graph has no metadata['dt'] (NIR stores no time step); "
                         "pass dt= (seconds)")
    dt = float(dt)
    encoding = str(meta.get("encoding", "rate"))
    gain = float(meta.get("input_gain", 1.0))
    weights, neurons = [], []
    for name in _chain(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        if isinstance(node, (nir.Linear, nir.Affine)):
            if isinstance(node, nir.Affine) and np.any(np.asarray(node.bias) != 0):
                raise NotImplementedError(f"node {name!r}: Affine with a non-zero bias")
            weights.append(np.asarray(node.weight, dtype=np.float64))
        elif isinstance(node, nir.CubaLIF):
            neurons.append(neuron_config(node, dt))
        else:
            raise NotImplementedError(f"node {name!r}: {type(node).__name__} is not imported "
                                      f"(supported: Linear, Affine, CubaLIF)")
    if not weights or len(weights) != len(neurons) or len(set(neurons)) != 1:
        raise NotImplementedError(f"expected alternating Linear/CubaLIF layers sharing one LIF "
                                  f"setting; found {len(weights)} weights and "
                                  f"{len(set(neurons))} distinct LIF settings")
    sizes = (weights[0].shape[1],) + tuple(w.shape[0] for w in weights)
    model = SpikingMLP(sizes, steps=int(meta.get("steps", 16)), encoding=encoding,
                       neuron=neurons[0], input_gain=gain if encoding == "current" else 1.0)
    import torch

    with torch.no_grad():
        for k, (lin, w) in enumerate(zip(model.linears, weights)):
            if k == 0 and encoding == "current":
                w = w / gain
            lin.weight.copy_(torch.as_tensor(w.astype(np.float32)))
    return model
