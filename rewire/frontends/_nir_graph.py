"""NIR frontend, part 1: the graph as a chain (see :mod:`rewire.frontends.nir`).

Value checks of every node (``_check_values``), nested recurrent subgraphs and flat
neuron <-> Linear cycles folded into ``_Recurrent`` nodes (``_resolve``), and the one path
from the Input to the Output (``_chain``), refusing branches, merges, several inputs
and nodes off the path by name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import nir
import numpy as np

from rewire.errors import LoweringError
from rewire.ir import nodes as irn

SUPPORTED = ("Input, Output, Linear, Affine, Conv2d (dilation 1), SumPool2d, AvgPool2d, "
             "Flatten, Identity, Scale (next to a Linear/Affine), CubaLIF, LIF, IF, CubaLI, LI, "
             "a recurrent subgraph {Input, neuron, Linear|Affine w_rec, Output}, and synapse "
             "nodes in a row (fused exactly)")

_NEURONS = (nir.CubaLIF, nir.LIF, nir.IF, nir.CubaLI, nir.LI)
_DENSE = (nir.Linear, nir.Affine)
_SYNAPSES = (nir.Linear, nir.Affine, nir.Conv2d, nir.SumPool2d, nir.AvgPool2d)
_TAUS = {"CubaLIF": ("tau_syn", "tau_mem"), "CubaLI": ("tau_syn", "tau_mem"), "LIF": ("tau",),
         "LI": ("tau",), "IF": ()}
_ADVICE = {
    "Conv1d": "the IR has no 1-D convolution; write it as a Conv2d with a (1, k) kernel on a "
              "(C, 1, W) map",
    "Delay": "the IR has no synaptic delays; remove the delay (or train without it)",
    "Threshold": "a bare threshold has no state; use an IF or LIF neuron node",
    "I": "a pure integrator never spikes; use an LI readout or an IF neuron",
    "NIRGraph": "only the recurrent subgraph {Input, neuron, Linear|Affine w_rec, Output} "
                "(snnTorch RLeaky/RSynaptic, rockpool) is lowered",
}



def _arr(value) -> np.ndarray:
    """A NIR field (numpy, torch tensor, number, None) as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def _bias(node, n: int) -> np.ndarray | None:
    """A NIR node's bias as float64 ``(n,)`` (a scalar broadcast), ``None`` when all zero."""
    b = np.broadcast_to(_arr(node.bias).ravel(), (n,)) if np.size(node.bias) in (1, n) \
        else _arr(node.bias)
    return None if not np.any(b != 0) else np.array(b, dtype=np.float64)


def _scaled(node, factor: float):
    """A fused synapse node with its weights and bias times ``factor``."""
    if isinstance(node, irn.SumPool2d):
        return replace(node, weight=float(f"{node.weight * factor:.15g}"))
    def f(a):
        return None if a is None else (a.astype(np.float64) * factor).astype(np.float32)

    extra = {"weight_rec": f(node.weight_rec)} if isinstance(node, irn.RecurrentDense) else {}
    return replace(node, weight=f(node.weight), bias=f(node.bias), **extra)


def _kind(node) -> str:
    return type(node).__name__


def _refuse(name: str, node, why: str, instead: str = "") -> LoweringError:
    instead = instead or _ADVICE.get(_kind(node), f"supported nodes: {SUPPORTED}")
    return LoweringError(f"NIR node {name!r} ({_kind(node)}): {why}; {instead}", piece=name)


# --------------------------------------------------------------------------- value checks


def _check_array(name: str, node, fld: str, positive: bool = False, ndim: int | None = None):
    value = getattr(node, fld, None)
    if value is None:
        if fld == "v_reset":
            return
        raise ValueError(f"NIR node {name!r} ({_kind(node)}): field {fld} is missing")
    try:
        a = _arr(value)
    except (TypeError, ValueError):
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld}: not numeric "
                         f"({value!r})") from None
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld} must have {ndim} dimensions, "
                         f"got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld}: {int(bad.sum())} entries "
                         f"are NaN or infinite")
    if positive and a.size and not np.all(a > 0):
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld} must be > 0, got "
                         f"{a.min():g}")


_VALUE_FIELDS = {
    "Linear": (("weight", False, 2),), "Affine": (("weight", False, 2), ("bias", False, None)),
    "Conv2d": (("weight", False, 4), ("bias", False, None)), "Scale": (("scale", False, None),),
    "CubaLIF": (("tau_syn", True, None), ("tau_mem", True, None), ("r", True, None),
                ("w_in", True, None), ("v_leak", False, None), ("v_threshold", False, None),
                ("v_reset", False, None)),
    "CubaLI": (("tau_syn", True, None), ("tau_mem", True, None), ("r", True, None),
               ("w_in", True, None), ("v_leak", False, None)),
    "LIF": (("tau", True, None), ("r", True, None), ("v_leak", False, None),
            ("v_threshold", False, None), ("v_reset", False, None)),
    "LI": (("tau", True, None), ("r", True, None), ("v_leak", False, None)),
    "IF": (("r", True, None), ("v_threshold", False, None), ("v_reset", False, None)),
}


#: Deepest subgraph nesting and most nodes (all levels) a NIR graph may hold: rewire lowers
#: one level of subgraph (a recurrent neuron); the bounds keep the walk linear and shallow.
MAX_NIR_DEPTH = 16
MAX_NIR_NODES = 100_000


def check_size(graph: nir.NIRGraph) -> None:
    """Bound a graph's subgraph nesting and node count before any recursive walk.

    Raises:
        LoweringError: nested deeper than :data:`MAX_NIR_DEPTH` or more than
            :data:`MAX_NIR_NODES` nodes (naming the subgraph where the bound is passed).
    """
    stack, count = [(graph, "", 0)], 0
    while stack:
        g, prefix, depth = stack.pop()
        nodes = getattr(g, "nodes", None)
        if not isinstance(nodes, dict):
            raise LoweringError(f"NIR subgraph {prefix or '<graph>'!r} has no nodes dict",
                                piece=prefix)
        count += len(nodes)
        if count > MAX_NIR_NODES:
            raise LoweringError(f"the NIR graph holds more than {MAX_NIR_NODES:,} nodes",
                                piece=prefix)
        for name, node in nodes.items():
            if isinstance(node, nir.NIRGraph):
                if depth + 1 > MAX_NIR_DEPTH:
                    raise LoweringError(f"NIR subgraph {prefix + str(name)!r} nests deeper "
                                        f"than {MAX_NIR_DEPTH} levels; rewire lowers one "
                                        f"level (a recurrent neuron)", piece=prefix + str(name))
                stack.append((node, f"{prefix}{name}.", depth + 1))


def _check_values(graph: nir.NIRGraph, prefix: str = "") -> None:
    """Every numeric field of every node (subgraphs included) finite, time constants and
    ``r``/``w_in`` > 0, weights of the right rank: ValueError naming node and field."""
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            _check_values(node, f"{prefix}{name}.")
            continue
        for fld, positive, ndim in _VALUE_FIELDS.get(_kind(node), ()):
            _check_array(prefix + name, node, fld, positive, ndim)
        if isinstance(node, nir.Affine):
            b, w = _arr(node.bias), _arr(node.weight)
            if b.size not in (1, w.shape[0]):
                raise ValueError(f"NIR node {prefix + name!r} (Affine).bias has {b.size} "
                                 f"entries for {w.shape[0]} outputs")


# --------------------------------------------------------------------------- structure


@dataclass
class _Recurrent:
    """A neuron with a recurrent ``Linear``/``Affine`` back to itself (lowered as one node)."""

    neuron_name: str
    neuron: object
    rec_name: str
    rec: object


def _subgraph_recurrent(name: str, sub: nir.NIRGraph) -> _Recurrent:
    """The :class:`_Recurrent` of a nested graph ``{Input, neuron, Linear w_rec, Output}``."""
    inputs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in sub.nodes.items() if isinstance(n, nir.Output)]
    neurons = [k for k, n in sub.nodes.items() if isinstance(n, _NEURONS)]
    recs = [k for k, n in sub.nodes.items() if isinstance(n, _DENSE)]
    if not (len(sub.nodes) == 4 and len(inputs) == len(outputs) == len(neurons) == len(recs)
            == 1):
        raise _refuse(name, sub, f"a subgraph of {sorted(_kind(n) for n in sub.nodes.values())}")
    i, o, n, r = inputs[0], outputs[0], neurons[0], recs[0]
    want = {(i, n), (n, r), (r, n), (n, o)}
    got = {tuple(e) for e in sub.edges}
    if got != want:
        raise _refuse(name, sub, f"edges {sorted(got)} are not the recurrent pattern "
                                 f"{sorted(want)}")
    return _Recurrent(f"{name}.{n}", sub.nodes[n], f"{name}.{r}", sub.nodes[r])


def _resolve(graph: nir.NIRGraph):
    """Nodes and edges with nested recurrent subgraphs and flat neuron <-> Linear cycles
    replaced by :class:`_Recurrent` nodes."""
    nodes = dict(graph.nodes)
    alias = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            nodes[name] = _subgraph_recurrent(name, node)
            for inner in node.nodes:
                alias[f"{name}.{inner}"] = name
    edges = []
    for edge in graph.edges:
        if len(edge) != 2:
            raise LoweringError(f"NIR edge {edge!r} is not a (source, target) pair",
                                piece=str(edge))
        a, b = (alias.get(e, e) for e in edge)
        for end in (a, b):
            if end not in nodes:
                raise LoweringError(f"NIR edge {tuple(edge)!r} names node {end!r}, which the "
                                    f"graph does not hold; fix the graph", piece=str(end))
        edges.append((a, b))
    # flat cycles: neuron -> Linear -> same neuron, the Linear with no other edge
    for a, b in list(edges):
        if (isinstance(nodes.get(a), _NEURONS) and isinstance(nodes.get(b), _DENSE)
                and (b, a) in edges):
            if sum(b in e for e in edges) != 2:
                raise _refuse(b, nodes[b], f"a recurrent weight of neuron {a!r} that also "
                                           f"connects elsewhere", "a recurrent Linear must "
                                           "only feed back to its neuron")
            nodes[a] = _Recurrent(a, nodes[a], b, nodes.pop(b))
            edges.remove((a, b))
            edges.remove((b, a))
    return nodes, edges


def _chain(nodes: dict, edges: list) -> list[str]:
    """Node names in order from the one Input to the Output; refuses branches, merges,
    several inputs, self-loops and nodes off the path, naming them."""
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        piece = inputs[1] if len(inputs) > 1 else ""
        raise LoweringError(f"the NIR graph needs exactly one Input node, found {len(inputs)} "
                            f"({inputs}); rewire lowers single-input chains", piece=piece)
    succ, pred = {}, {}
    for a, b in edges:
        if a == b:
            raise _refuse(a, nodes[a], "an edge from the node to itself", "recurrence is "
                          "lowered for a neuron -> Linear -> neuron loop")
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    order, seen = [inputs[0]], {inputs[0]}
    while True:
        here = order[-1]
        nxt = succ.get(here, [])
        if len(nxt) > 1:
            raise _refuse(here, _node_of(nodes[here]), f"it fans out to {sorted(nxt)} "
                          f"(a branch)", "rewire lowers chains: one edge out of every node")
        if not nxt:
            break
        b = nxt[0]
        if len(pred[b]) > 1:
            raise _refuse(b, _node_of(nodes[b]), f"it has inputs from {sorted(pred[b])} (a "
                          f"merge, or an edge into the middle of the chain)", "rewire lowers "
                          "chains: one edge into every node")
        if b in seen:
            raise _refuse(b, _node_of(nodes[b]), "a cycle through it", "recurrence is lowered "
                          "for a neuron -> Linear -> neuron loop")
        order.append(b)
        seen.add(b)
    if not isinstance(nodes[order[-1]], nir.Output):
        raise _refuse(order[-1], _node_of(nodes[order[-1]]), "the chain ends here without "
                      "an Output node", "end the graph with an Output")
    off = [k for k in nodes if k not in seen]
    if off:
        raise _refuse(off[0], _node_of(nodes[off[0]]), f"not on the path from the Input to "
                      f"the Output (nodes off the chain: {off})", "remove it or connect it")
    return order


def _node_of(node):
    return node.neuron if isinstance(node, _Recurrent) else node


def _all_neurons(nodes: dict):
    for name, node in nodes.items():
        if isinstance(node, _Recurrent):
            yield node.neuron_name, node.neuron
        elif isinstance(node, _NEURONS):
            yield name, node

