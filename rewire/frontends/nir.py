r"""NIR frontend: lower a NIR graph written by any framework to a :class:`rewire.ir.Network`.

:func:`lower` reads a ``nir.NIRGraph`` (or a ``.nir`` file) from rewire, snnTorch 1.0, Norse
1.1, rockpool 3.1, spyx or any other writer and returns the IR network the compiler reads.
Every node and edge is either lowered or named in a :class:`~rewire.errors.LoweringError`
(its type, its name, why, what to do instead); bad values raise :class:`ValueError` naming the
node and field before anything is built.

**Nodes.** ``Input``, ``Output``, ``Linear``, ``Affine`` (zero bias: lowered as ``Dense`` with a
note; a non-zero bias is refused, rewire has no bias path yet), ``Conv2d`` (zero bias,
dilation 1), ``SumPool2d``, ``AvgPool2d`` (a sum pool of weight ``1/(kH kW)``), ``Flatten``,
``Identity`` (dropped), ``Scale`` (folded into the weights of the ``Linear``/``Affine`` it
precedes or follows; a scalar scale also into a ``Conv2d`` or pool), the neurons ``CubaLIF``,
``LIF``, ``IF``, ``CubaLI``, ``LI``, and recurrence: a nested ``NIRGraph``
``{Input, neuron, Linear|Affine w_rec, Output}`` with the back edge ``w_rec -> neuron`` (as
snnTorch's ``RLeaky``/``RSynaptic`` and rockpool write it), or the same cycle in a flat graph
(as ``nirtorch`` 2.6 flattens it), lowered to :class:`~rewire.ir.nodes.RecurrentDense` plus the
neuron.

**Equations.** NIR's neurons are continuous (nir 1.0 docs):

.. math::
    \text{CubaLIF:}\quad \tau_\mathrm{syn}\dot I = -I + w_\mathrm{in} S,\quad
        \tau_\mathrm{mem}\dot V = (V_\mathrm{leak} - V) + R I \qquad
    \text{LIF:}\quad \tau\dot V = (V_\mathrm{leak} - V) + R S \qquad
    \text{IF:}\quad \dot V = R S

(``CubaLI``, ``LI``: the same without threshold), with ``S`` the value a synapse delivers in
one step. Integrated with forward Euler at ``dt``, the current updated before ``V`` (as
snnTorch's and Norse's readers and rewire's writer do), they are the IR's nodes
(:mod:`rewire.ir.nodes`) with

.. math::
    \tau^{-1}_\mathrm{IR} = 1/\tau,\qquad v_\mathrm{IR} = V / R \ \text{(CubaLIF, CubaLI,
    LIF, LI)},\quad v_\mathrm{IR} = V / (R\,\Delta t)\ \text{(IF)},\qquad
    W_\mathrm{IR} = W \cdot w_\mathrm{in}\Delta t/\tau_\mathrm{syn}\ \text{(CubaLIF, CubaLI)},
    \ W_\mathrm{IR} = W \text{ otherwise},

for every voltage (``v_threshold``, ``v_leak``, ``v_reset``): a CubaLIF's current ``I`` is the
IR's ``j``; ``R`` is folded into the voltages so that the weights keep their values, and
``w_in dt / tau_syn`` (exactly 1 in rewire's and snnTorch's files) into the weights of the
synapse before the neuron (for a pool, into its weight). rewire's writer
(:mod:`rewire.export.nir_graph`: ``R = tau_mem/dt``, ``w_in = tau_syn/dt``,
``v_threshold = v_th tau_mem/dt``) lowers back to the same weights and constants.

**Per-neuron arrays** that are all equal lower to the scalar; differing values are refused
naming the node and field (the chip has one decay and one threshold per layer).

**What NIR does not record** (REFERENCE §6): the reset and the number of spikes per step.
The IR resets ``v`` to ``v_reset`` in the step that spikes (Norse, Loihi). ``source=`` (or
what :func:`detect_source` finds in the file) puts a line into ``Network.notes`` saying what
the source framework does differently; an unknown source gets a line too:

* **snnTorch 1.0** (``r = tau/1e-4``: its exporter hard-codes ``dt = 1e-4`` s; lower at that
  ``dt``): Leaky/Synaptic/RLeaky equal the IR spike for spike with ``reset_mechanism='zero'``
  and ``reset_delay=False``; the defaults (subtract, reset one step late) differ, and the note
  says so.
* **Norse 1.1** ``to_nir`` writes ``tau = dt * tau_true`` (τ⁻¹ ``1/dt`` times too large,
  norse #411/#412), no ``v_reset``, and its cells' own parameters with ``r = w_in = 1``
  (``LIFCell`` adds its input to the current in one step; NIR's equations would need
  ``w_in = tau_syn/dt``). A graph with ``r = w_in = 1`` and a time constant below ``dt`` is
  read as such a file: the time constants divided by ``dt`` (the step it was exported at must
  be the ``dt`` given), weights and voltages as written, with a note; ``source='norse'`` reads
  a graph with correct time constants the same way. A time constant below ``dt`` in any other
  graph is refused.
* **rockpool 3.1** (``r = tau_mem e^{-dt/tau_mem}/dt``): its ``CubaLIF`` nodes are lowered
  as ``LIFTorch``'s own step (exact decays, weights times ``e^{-dt/tau_syn}/(1 -
  e^{-dt/tau_mem})``, :func:`_rockpool_cuba`); its several spikes per step and subtractive
  reset are named in the notes.
* **spyx** (declared only): subtractive reset from the pre-update ``v``, named in the notes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import nir
import numpy as np
from nir.ir.graph import Identity as _Identity

from rewire.errors import LoweringError
from rewire.ir import nodes as irn
from rewire.ir.network import ENCODINGS, Network

__all__ = ["SOURCES", "read", "lower", "detect_source", "from_nir", "neuron_config"]

#: Frameworks :func:`lower` knows the semantics of (``source=``).
SOURCES = ("snntorch", "rockpool", "norse", "spyx", "rewire")
REWIRE_NIR_FORMAT = "rewire-nir-1"  # metadata["format"] of rewire's writer
SNNTORCH_DT = 1e-4  # snnTorch 1.0's export_to_nir hard-codes dt = 1e-4 s
SUPPORTED = ("Input, Output, Linear, Affine (zero bias), Conv2d (zero bias, dilation 1), "
             "SumPool2d, AvgPool2d, Flatten, Identity, Scale (next to a Linear/Affine), CubaLIF, "
             "LIF, IF, CubaLI, LI, and a recurrent subgraph {Input, neuron, Linear w_rec, "
             "Output}")

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


# --------------------------------------------------------------------------- reading


def read(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` a graph (rewire's or another tool's).

    A file that fails nir's own type inference is read again without it (nirtorch writes the
    ``Input`` type with the traced sample's batch dimension, ``[1, n]``, which nir 1.0.8 then
    refuses to read); :func:`lower` checks every width itself.

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    try:
        return nir.read(str(path))
    except ValueError as exc:
        if "type" not in str(exc).lower():
            raise
        return nir.read(str(path), type_check=False)


def _arr(value) -> np.ndarray:
    """A NIR field (numpy, torch tensor, number, None) as a float64 numpy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


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


# --------------------------------------------------------------------------- sources


def _all_neurons(nodes: dict):
    for name, node in nodes.items():
        if isinstance(node, _Recurrent):
            yield node.neuron_name, node.neuron
        elif isinstance(node, _NEURONS):
            yield name, node


def _norse_pattern(nodes: dict) -> bool:
    """``r == 1`` and (where it has one) ``w_in == 1`` for every neuron: what Norse writes."""
    found = False
    for _, node in _all_neurons(nodes):
        found = True
        if not np.all(_arr(node.r) == 1):
            return False
        if hasattr(node, "w_in") and not np.all(_arr(node.w_in) == 1):
            return False
    return found


def _short_tau(nodes: dict, dt: float):
    """The first ``(node, field, tau)`` with ``tau < dt`` (Euler decay ``1 - dt/tau < 0``)."""
    for name, node in _all_neurons(nodes):
        for fld in _TAUS[_kind(node)]:
            tau = _arr(getattr(node, fld))
            if tau.size and tau.min() < dt:
                return name, fld, float(tau.min())
    return None


def _matches(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size > 0 and bool(np.allclose(a, b, rtol=1e-5, atol=0))


def detect_source(graph: nir.NIRGraph, dt: float | None = None) -> str | None:
    """The framework that most likely wrote ``graph`` (one of :data:`SOURCES`), or ``None``.

    rewire: ``metadata["format"] == "rewire-nir-1"``; Norse 1.1: ``r = w_in = 1`` with a time
    constant below ``dt`` (its τ bug); snnTorch 1.0: ``r = tau/1e-4`` (and ``w_in =
    tau_syn/1e-4``) in every neuron; rockpool 3.1: ``r = tau_mem exp(-dt/tau_mem)/dt`` at the
    given ``dt``. Nothing else is recognisable (spyx writes plain NIR).
    """
    meta = dict(graph.metadata or {})
    if meta.get("format") == REWIRE_NIR_FORMAT:
        return "rewire"
    nodes, _ = _resolve(graph)
    neurons = list(_all_neurons(nodes))
    if not neurons:
        return None
    if dt is not None and _norse_pattern(nodes) and _short_tau(nodes, dt):
        return "norse"

    def tau_mem(node):
        return _arr(node.tau_mem if hasattr(node, "tau_mem") else getattr(node, "tau", 1.0))

    with_tau = [(n, node) for n, node in neurons if _kind(node) != "IF"]
    if with_tau and all(_matches(_arr(node.r), tau_mem(node) / SNNTORCH_DT)
                        and (not hasattr(node, "w_in")
                             or _matches(_arr(node.w_in), _arr(node.tau_syn) / SNNTORCH_DT))
                        for _, node in with_tau):
        return "snntorch"
    if dt is not None and with_tau and all(
            _matches(_arr(node.r), tau_mem(node) * np.exp(-dt / tau_mem(node)) / dt)
            for _, node in with_tau):
        return "rockpool"
    return None


_SOURCE_NOTES = {
    "rewire": "source rewire (its own NIR writer): the semantics are the IR's (Norse 1.1 "
              "order, reset to v_reset in the step that spikes); nothing differs",
    "snntorch": "source snnTorch 1.0: NIR does not record snnTorch's reset. Its Leaky, "
                "Synaptic, RLeaky and RSynaptic reset by subtracting the threshold by default "
                "(reset_mechanism='subtract') and, with reset_delay=True (the default), from "
                "the previous step's spike, one step late. The IR resets v to v_reset in the "
                "step that spikes (Norse/Loihi): it equals snnTorch for "
                "reset_mechanism='zero' with reset_delay=False; other settings give "
                "different spike trains",
    "rockpool": "source rockpool 3.1: its CubaLIF nodes are lowered as rockpool's LIFTorch "
                "step (exact decays exp(-dt/tau), the current decayed before it enters v, "
                "weights times exp(-dt/tau_syn)/(1 - exp(-dt/tau_mem)), thresholds as "
                "written), not by Euler-integrating the file's r and w_in, which do not "
                "describe LIFTorch; NIR does not record that LIFTorch emits several spikes per "
                "step (max_spikes_per_dt, default 2**16) and resets by subtracting the "
                "threshold, where the IR emits one and resets to v_reset: spike trains "
                "differ wherever a neuron crosses its threshold by more than once per step",
    "norse": "source Norse: Norse's cells reset to v_reset in the step that spikes, as the IR "
             "does",
    "spyx": "source spyx: NIR does not record that spyx resets by subtracting the threshold, "
            "with the spike taken from the pre-update v; the IR takes the spike from the "
            "updated v and resets to v_reset: spike trains differ",
    None: "source unknown: lowered with NIR's equations (forward Euler at dt, the current "
          "updated before v), one spike per step and reset to v_reset in the step that "
          "spikes; a framework that resets by subtraction, late or with several spikes per "
          "step (snnTorch, rockpool, spyx) gives other spike trains: pass source= to be told",
}


# --------------------------------------------------------------------------- neurons


def _one(name: str, node, fld: str, n: int, default: float = 0.0) -> float:
    """The one value of a per-neuron field (a scalar, or ``n`` equal entries)."""
    value = getattr(node, fld, None)
    if value is None:
        return default
    a = _arr(value).ravel()
    if a.size == 0:
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld} is empty")
    if a.size not in (1, n):
        raise ValueError(f"NIR node {name!r} ({_kind(node)}).{fld} has {a.size} entries for "
                         f"a layer of {n} neurons")
    values = np.unique(a)
    if values.size != 1:
        raise LoweringError(f"NIR node {name!r} ({_kind(node)}).{fld} differs between neurons "
                            f"({values.size} values, {values.min():g} to {values.max():g}); "
                            f"the chip has one {fld} per layer: train with one value per "
                            f"layer or split the layer", piece=name)
    return float(values[0])


def _invert(stored: float, forward, approx: float, forward32=None) -> float:
    """The value ``c`` with ``forward(c) == stored`` that has the shortest decimal form:
    ``approx`` to 15 significant digits when that maps to ``stored`` exactly (so the 1.0 that
    rewire's writer scaled reads back as 1.0, not 0.9999999999999999), else to the fewest digits (up to
    7) that map to ``stored`` in float32 when it is a float32 (Norse and snnTorch write float32:
    Norse's ``dt / 200.0`` reads back as 200.0), else ``approx``."""
    forward32 = forward32 or forward
    if float(np.float32(stored)) == stored:
        for digits in range(1, 8):
            short = float(f"{approx:.{digits}g}")
            if np.float32(forward32(short)) == stored or np.float32(forward(short)) == stored:
                return short
    tidy = float(f"{approx:.15g}")
    return tidy if forward(tidy) == stored else approx


def _tidy_one(x: float) -> float:
    """``x`` as 1.0 when within 1e-12 of it (the ``w_in dt / tau_syn`` of rewire's and
    snnTorch's files is 1 up to float64 rounding)."""
    return 1.0 if abs(x - 1.0) < 1e-12 else x


def _inv_tau(tau: float, scale: float = 1.0) -> float:
    """``scale / tau`` in 1/s, tidied as :func:`_invert` does."""
    return _invert(tau, lambda c: scale / c, scale / tau,
                   lambda c: np.float32(scale) / np.float32(c))


def _rockpool_cuba(name: str, node, n: int, dt: float):
    r"""rockpool 3.1's ``LIFTorch`` step, which its ``to_nir`` writes as a ``CubaLIF``
    (``tau_syn``, ``tau_mem`` in s, ``r = tau_mem e^{-dt/tau_mem}/dt``, ``w_in = 1``):
    ``J = I + x; v = a v + b J; I = b J`` with the exact decays ``a = e^{-dt/tau_mem}``,
    ``b = e^{-dt/tau_syn}``. It is the IR's CubaLIF with ``dt tau_mem_inv = 1 - a``,
    ``dt tau_syn_inv = 1 - b``, voltages as written and the weights times ``b / (1 - a)``;
    only rockpool's several spikes per step and subtractive reset differ."""
    one = lambda fld, default=0.0: _one(name, node, fld, n, default)  # noqa: E731
    a, b = math.exp(-dt / one("tau_mem")), math.exp(-dt / one("tau_syn"))
    try:
        neuron = irn.CubaLIF((1 - b) / dt, (1 - a) / dt, v_th=one("v_threshold"),
                             v_leak=one("v_leak"), v_reset=one("v_reset"), dt=dt)
    except ValueError as exc:
        raise ValueError(f"NIR node {name!r} (CubaLIF): {exc}") from None
    return neuron, b / (1 - a)


def _lower_neuron(name: str, node, n: int, dt: float, norse: bool, tau_scale: float,
                  rockpool: bool = False):
    """``(IR neuron, weight factor)`` of a NIR neuron node of ``n`` neurons (module
    docstring). ``norse``: read Norse's own parameters (r = w_in = 1, voltages and weights as
    written); ``tau_scale``: the time constants are ``tau_scale`` times too small (Norse 1.1:
    ``dt``); ``rockpool``: a CubaLIF is rockpool's ``LIFTorch`` (:func:`_rockpool_cuba`)."""
    kind = _kind(node)
    if rockpool and kind == "CubaLIF":
        return _rockpool_cuba(name, node, n, dt)
    one = lambda fld, default=0.0: _one(name, node, fld, n, default)  # noqa: E731
    r = one("r")

    def volt(fld: str, divisor: float) -> float:
        stored = one(fld)
        return _invert(stored, lambda c: c * divisor, stored / divisor,
                       lambda c: np.float32(c) * np.float32(divisor))

    try:
        if kind in ("CubaLIF", "CubaLI"):
            ts, tm = one("tau_syn"), one("tau_mem")
            tsi, tmi = _inv_tau(ts, tau_scale), _inv_tau(tm, tau_scale)
            factor = 1.0 if norse else _tidy_one(one("w_in", 1.0) * dt / ts * tau_scale)
            div = 1.0 if norse else r
            if kind == "CubaLIF":
                neuron = irn.CubaLIF(tsi, tmi, v_th=volt("v_threshold", div),
                                     v_leak=volt("v_leak", div), v_reset=volt("v_reset", div),
                                     dt=dt)
            else:
                neuron = irn.CubaLI(tsi, tmi, v_leak=volt("v_leak", div), dt=dt)
        elif kind in ("LIF", "LI"):
            tmi, factor = _inv_tau(one("tau"), tau_scale), 1.0
            div = 1.0 if norse else r
            if kind == "LIF":
                neuron = irn.LIF(tmi, v_th=volt("v_threshold", div), v_leak=volt("v_leak", div),
                                 v_reset=volt("v_reset", div), dt=dt)
            else:
                neuron = irn.LI(tmi, v_leak=volt("v_leak", div), dt=dt)
        else:  # IF
            div, factor = (1.0 if norse else r * dt), 1.0
            neuron = irn.IF(v_th=volt("v_threshold", div), v_reset=volt("v_reset", div), dt=dt)
    except ValueError as exc:
        if isinstance(exc, LoweringError):
            raise
        raise ValueError(f"NIR node {name!r} ({kind}): {exc}") from None
    return neuron, factor


# --------------------------------------------------------------------------- synapses


def _pair(name: str, node, fld: str) -> tuple[int, int]:
    value = getattr(node, fld)
    a = np.atleast_1d(_arr(value)).ravel()
    if a.size not in (1, 2) or np.any(a != np.round(a)):
        raise _refuse(name, node, f"{fld} = {value!r} is not one or two integers",
                      "write it as (y, x) integers")
    a = a.astype(int)
    return (int(a[0]), int(a[-1]))


@dataclass
class _Pending:
    """The synapse being assembled before its neuron arrives."""

    flatten: str | None = None
    pre: list = field(default_factory=list)    # (name, scale array) before the synapse
    post: list = field(default_factory=list)   # (name, scale array) after it
    syn_name: str | None = None
    syn: object = None                         # nir node
    op: str = ""                               # dense | conv | sumpool
    in_shape: tuple = ()
    weight: np.ndarray | None = None           # float64, dense/conv
    pool: dict = field(default_factory=dict)   # kernel, stride, padding, weight


def _scale_values(name: str, node, size: int, what: str) -> np.ndarray:
    s = _arr(node.scale).ravel()
    if s.size not in (1, size):
        raise ValueError(f"NIR node {name!r} (Scale).scale has {s.size} entries; {what} has "
                         f"{size}")
    return s


def _conv_padding(name: str, node, kernel: tuple[int, int]) -> tuple[int, int]:
    pad = node.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        stride = _pair(name, node, "stride")
        if pad == "same" and stride == (1, 1) and all(k % 2 for k in kernel):
            return (kernel[0] // 2, kernel[1] // 2)
        raise _refuse(name, node, f"padding {pad!r} with kernel {kernel} and stride {stride}",
                      "give the padding as integers (symmetric zero padding)")
    return _pair(name, node, "padding")


class _Lowering:
    """One walk along the chain, building the IR nodes."""

    def __init__(self, nodes, order, dt, encoding, gain, norse, tau_scale):
        self.nodes, self.order, self.dt = nodes, order, dt
        self.encoding, self.gain = encoding, gain
        self.norse, self.tau_scale = norse, tau_scale
        self.rockpool = False
        self.ir, self.names, self.notes = [], [], []
        self.pending = _Pending()
        self.shape: tuple | None = None
        self.input_shape: tuple | None = None
        self.weights_seen = 0

    # -- the walk
    def run(self):
        handlers = {nir.Input: self.input, nir.Output: self.output, _Identity: self.identity,
                    nir.Flatten: self.flatten, nir.Scale: self.scale, nir.Linear: self.dense,
                    nir.Affine: self.dense, nir.Conv2d: self.conv, nir.SumPool2d: self.pool,
                    nir.AvgPool2d: self.pool}
        for name in self.order:
            node = self.nodes[name]
            if isinstance(node, _Recurrent):
                self.neuron(name, node.neuron, node)
                continue
            if isinstance(node, _NEURONS):
                self.neuron(name, node, None)
                continue
            handler = handlers.get(type(node))
            if handler is None:
                raise _refuse(name, node, "not lowered to rewire's IR")
            if self.shape is None and not isinstance(node, nir.Input):  # pragma: no cover
                raise _refuse(name, node, "comes before the Input")
            handler(name, node)

    def input(self, name, node):
        shape = None
        types = getattr(node, "input_type", None) or {}
        if types:
            value = next(iter(types.values()))
            if value is not None and np.size(value):
                shape = tuple(int(s) for s in np.asarray(value).ravel())
        if shape is None:
            shape = self._guess_input(name)
        if len(shape) in (2, 4) and shape[0] == 1:
            self.notes.append(f"NIR node {name!r} (Input): type {list(shape)} includes the "
                              f"batch dimension of the sample data nirtorch traced; read as "
                              f"{list(shape[1:])}")
            shape = shape[1:]
        if len(shape) not in (1, 3) or min(shape) < 1:
            raise _refuse(name, node, f"input shape {list(shape)}", "the IR takes (n,) or "
                          "(C, H, W) inputs")
        self.shape = self.input_shape = shape

    def _guess_input(self, name):
        for k in self.order[1:]:
            node = self.nodes[k]
            if isinstance(node, _DENSE):
                return (int(_arr(node.weight).shape[1]),)
            if isinstance(node, nir.Conv2d) and node.input_shape is not None:
                hw = np.atleast_1d(np.asarray(node.input_shape)).ravel()
                return (int(_arr(node.weight).shape[1] * int(node.groups)), int(hw[0]),
                        int(hw[-1]))
            if not isinstance(node, (_Identity, nir.Scale, nir.Flatten)):
                break
        raise _refuse(name, self.nodes[name], "no input type, and none can be read from the "
                      "node after it", "set the Input's input_type")

    def identity(self, name, node):
        self.notes.append(f"NIR node {name!r} (Identity): dropped (no effect)")

    def flatten(self, name, node):
        p = self.pending
        if p.syn is not None:
            raise _refuse(name, node, f"between synapse {p.syn_name!r} and its neuron",
                          "flatten before the Linear")
        if len(self.shape) == 1:
            self.notes.append(f"NIR node {name!r} (Flatten): dropped, its input "
                              f"{list(self.shape)} is already flat")
            return
        total = int(np.prod(self.shape))
        out = getattr(node, "output_type", None) or {}
        out_shape = next(iter(out.values()), None) if out else None
        full = out_shape is not None and np.size(out_shape) == 1 and int(
            np.asarray(out_shape).ravel()[0]) == total
        if not full and not (int(node.start_dim) == 0
                             and int(node.end_dim) in (-1, len(self.shape) - 1)):
            raise _refuse(name, node, f"start_dim {node.start_dim}, end_dim {node.end_dim} on "
                          f"a {list(self.shape)} map is not a full flatten", "flatten the whole "
                          "(C, H, W) map (start_dim 0, end_dim -1 without the batch)")
        if p.flatten is not None:
            raise _refuse(name, node, f"a second Flatten after {p.flatten!r}",
                          "flatten once")
        p.flatten, p.in_shape = name, self.shape
        self.shape = (total,)

    def scale(self, name, node):
        p = self.pending
        if p.syn is None:
            p.pre.append((name, node))
        else:
            p.post.append((name, node))

    def _start(self, name, node, op):
        p = self.pending
        if p.syn is not None:
            raise _refuse(name, node, f"follows synapse {p.syn_name!r} without a neuron node "
                          f"between them", "each synapse node must be followed by a neuron "
                          "node (CubaLIF, LIF, IF, CubaLI, LI)")
        if p.flatten is not None and op != "dense":
            raise _refuse(p.flatten, self.nodes[p.flatten], f"followed by {_kind(node)} "
                          f"{name!r}", "a Flatten must come right before a Linear/Affine")
        if p.flatten is None:
            p.in_shape = self.shape
        p.syn_name, p.syn, p.op = name, node, op

    def dense(self, name, node):
        if isinstance(node, nir.Affine):
            if np.any(_arr(node.bias) != 0):
                raise _refuse(name, node, "a non-zero bias (the chip would add it to v every "
                              "step; rewire has no bias path yet)", "train without bias "
                              "(bias=False) or fold a constant input into an extra input "
                              "channel")
            self.notes.append(f"NIR node {name!r} (Affine): zero bias, lowered as Dense")
        w = _arr(node.weight)
        if len(self.shape) != 1:
            raise _refuse(name, node, f"takes a {list(self.shape)} map without a Flatten "
                          f"before it", "put a Flatten before the Linear")
        if w.shape[1] != self.shape[0]:
            raise ValueError(f"NIR node {name!r} ({_kind(node)}).weight of shape {w.shape} "
                             f"takes {w.shape[1]} inputs, but the node before gives "
                             f"{self.shape[0]}")
        self._start(name, node, "dense")
        self.pending.weight = w
        self.shape = (int(w.shape[0]),)

    def conv(self, name, node):
        if np.any(_arr(node.bias) != 0):
            raise _refuse(name, node, "a non-zero bias (rewire has no bias path yet)",
                          "train the convolution without bias")
        w = _arr(node.weight)
        kernel = (int(w.shape[2]), int(w.shape[3]))
        if _pair(name, node, "dilation") != (1, 1):
            raise _refuse(name, node, f"dilation {node.dilation}", "use dilation 1")
        if len(self.shape) != 3:
            raise ValueError(f"NIR node {name!r} (Conv2d) takes a (C, H, W) map, the node "
                             f"before gives {list(self.shape)}")
        self._start(name, node, "conv")
        try:
            conv = irn.Conv2d(w, stride=_pair(name, node, "stride"),
                              padding=_conv_padding(name, node, kernel), groups=int(node.groups))
            self.shape = conv.out_shape(self.shape)
        except ValueError as exc:
            raise ValueError(f"NIR node {name!r} (Conv2d): {exc}") from None
        self.pending.weight = w
        self.pending.pool = {"stride": conv.stride, "padding": conv.padding,
                             "groups": conv.groups}

    def pool(self, name, node):
        if len(self.shape) != 3:
            raise ValueError(f"NIR node {name!r} ({_kind(node)}) takes a (C, H, W) map, the "
                             f"node before gives {list(self.shape)}")
        kernel = _pair(name, node, "kernel_size")
        stride = _pair(name, node, "stride") if node.stride is not None else kernel
        padding = _pair(name, node, "padding") if node.padding is not None else (0, 0)
        weight = 1.0
        if isinstance(node, nir.AvgPool2d):
            if padding != (0, 0):
                raise _refuse(name, node, f"padding {padding} (the average at the border is "
                              f"ambiguous)", "use AvgPool2d without padding, or SumPool2d")
            weight = 1.0 / (kernel[0] * kernel[1])
            self.notes.append(f"NIR node {name!r} (AvgPool2d): lowered as SumPool2d with "
                              f"weight 1/{kernel[0] * kernel[1]}")
        self._start(name, node, "sumpool")
        try:
            pool = irn.SumPool2d(kernel, stride, padding, weight)
            self.shape = pool.out_shape(self.shape)
        except ValueError as exc:
            raise ValueError(f"NIR node {name!r} ({_kind(node)}): {exc}") from None
        self.pending.pool = {"kernel": kernel, "stride": stride, "padding": padding,
                             "weight": weight}

    def neuron(self, name, node, rec: _Recurrent | None):
        p = self.pending
        if p.syn is None:
            raise _refuse(name, node, "no synapse node (Linear, Affine, Conv2d, SumPool2d, "
                          "AvgPool2d) before it", "put a Linear before the neuron (the IR "
                          "pairs every neuron layer with its synapses)")
        n = int(np.prod(self.shape))
        neuron, factor = _lower_neuron(name, node, n, self.dt, self.norse, self.tau_scale,
                                       self.rockpool)
        if rec is not None:
            if p.op != "dense":
                raise _refuse(rec.rec_name, rec.rec, f"recurrence on a {p.op} layer",
                              "recurrent layers must be dense")
            if not neuron.spiking:
                raise _refuse(name, node, "a recurrent loop around a non-spiking neuron",
                              "recurrence needs spiking neurons")
        self._emit(neuron, factor, rec)

    def _fold_scales(self, w: np.ndarray | None) -> tuple[np.ndarray | None, float]:
        """Fold the pending Scale nodes into dense weights ``w`` (rows after, columns
        before); for conv/pool only scalar scales: returned as a factor."""
        p, factor = self.pending, 1.0
        for where, items in (("pre", p.pre), ("post", p.post)):
            for sname, snode in items:
                if p.op == "dense":
                    size = w.shape[1] if where == "pre" else w.shape[0]
                    s = _scale_values(sname, snode, size, f"{p.syn_name!r}'s "
                                      f"{'input' if where == 'pre' else 'output'}")
                    w = w * (s[None, :] if where == "pre" else s[:, None])
                else:
                    s = _arr(snode.scale).ravel()
                    if np.unique(s).size != 1:
                        raise _refuse(sname, snode, f"a per-entry scale next to {p.op} "
                                      f"{p.syn_name!r}", "fold it into the weights before "
                                      "export (only a Linear takes per-entry scales)")
                    factor *= float(s[0])
                self.notes.append(f"NIR node {sname!r} (Scale): folded into the weights of "
                                  f"{p.syn_name!r}")
        return w, factor

    def _emit(self, neuron, factor: float, rec: _Recurrent | None):
        p = self.pending
        first = not self.names
        gain = self.gain if (first and self.encoding == "current") else 1.0
        w, scale = self._fold_scales(p.weight)
        total = factor * scale / gain
        if factor != 1.0:
            self.notes.append(f"NIR node {p.syn_name!r}: the next neuron's input weight "
                              f"w_in*dt/tau_syn = {factor:.6g} folded into its weights")
        if p.flatten is not None:
            self.ir.append(irn.Flatten())
        if p.op == "sumpool":
            pool = p.pool
            weight = pool["weight"] * total
            if not weight > 0:
                raise _refuse(p.syn_name, p.syn, f"a pool weight of {weight:g} after folding "
                              f"scales and w_in", "pool weights must be > 0")
            syn = irn.SumPool2d(pool["kernel"], pool["stride"], pool["padding"],
                                float(f"{weight:.15g}"))
        else:
            if total != 1.0:
                w = w * total
            self.weights_seen += w.size
            if p.op == "conv":
                syn = irn.Conv2d(w.astype(np.float32), stride=p.pool["stride"],
                                 padding=p.pool["padding"], groups=p.pool["groups"])
            elif rec is None:
                syn = irn.Dense(w.astype(np.float32))
            else:
                if isinstance(rec.rec, nir.Affine):
                    if np.any(_arr(rec.rec.bias) != 0):
                        raise _refuse(rec.rec_name, rec.rec, "a recurrent Affine with a "
                                      "non-zero bias (a constant input every step; rewire has "
                                      "no bias path yet)", "build the recurrent Linear with "
                                      "bias=False (snnTorch RLeaky: recurrent.bias = None)")
                    self.notes.append(f"NIR node {rec.rec_name!r} (Affine): zero bias, "
                                      f"lowered as the recurrent weights")
                w_rec = _arr(rec.rec.weight) * factor
                n = w.shape[0]
                if w_rec.shape != (n, n):
                    raise ValueError(f"NIR node {rec.rec_name!r} ({_kind(rec.rec)}).weight of "
                                     f"shape {w_rec.shape}: a recurrent weight of {n} neurons "
                                     f"must be ({n}, {n})")
                self.weights_seen += w_rec.size
                syn = irn.RecurrentDense(w.astype(np.float32), w_rec.astype(np.float32))
        self.ir += [syn, neuron]
        self.names.append(p.syn_name)
        self.pending = _Pending()

    def output(self, name, node):
        p = self.pending
        if p.syn is not None:
            raise _refuse(p.syn_name, p.syn, "not followed by a neuron node before the "
                          "Output", "end every layer with a neuron node")
        if p.pre:
            sname, snode = p.pre[0]
            raise _refuse(sname, snode, "a Scale after the last neuron (it scales the output, "
                          "which the chip's spikes cannot carry)", "remove it or fold it into "
                          "the next synapse")
        if p.flatten is not None:
            raise _refuse(p.flatten, self.nodes[p.flatten], "a Flatten right before the Output",
                          "remove it")
        types = getattr(node, "output_type", None) or {}
        value = next(iter(types.values()), None) if types else None
        if value is not None and np.size(value):
            shape = tuple(int(v) for v in np.asarray(value).ravel())
            lead = shape[:len(shape) - len(self.shape)]
            if shape[len(lead):] != tuple(self.shape) or any(d != 1 for d in lead):
                raise ValueError(f"NIR node {name!r} (Output): output_type {list(shape)} does "
                                 f"not match the {list(self.shape)} the last layer gives "
                                 f"(leading batch/time dimensions of 1 are ignored)")


# --------------------------------------------------------------------------- lower


def _positive(name: str, value, integer: bool = False):
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok or (integer and int(value) != value):
        what = "an integer >= 1" if integer else "a finite number > 0"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value) if integer else float(value)


def lower(graph: nir.NIRGraph | str | Path, *, dt: float | None = None,
          steps: int | None = None, encoding: str | None = None,
          input_gain: float | None = None, source: str | None = None) -> Network:
    """Lower a NIR graph to the IR network the compiler reads (module docstring).

    Args:
        graph: a ``nir.NIRGraph`` or the path of a ``.nir`` file.
        dt: Euler step in s; default ``graph.metadata["dt"]`` (NIR itself stores none).
        steps: time steps per sample; default ``metadata["steps"]``, else 16.
        encoding: ``"current"`` or ``"rate"`` (:data:`rewire.ir.network.ENCODINGS`); default
            ``metadata["encoding"]``, else ``"rate"`` (the graph's input is the per-step input).
        input_gain: for ``current`` encoding the IR presents ``input_gain * x``; the first
            synapse's weights are divided by it, so that the network computes what the graph
            computes on ``x``. Default ``metadata["input_gain"]``, else 1.
        source: the framework that wrote the file (:data:`SOURCES`), for the semantics NIR
            does not record; default :func:`detect_source`.

    Returns:
        The :class:`~rewire.ir.network.Network`, ``source = "nir:<framework>"`` (or ``"nir"``),
        its ``notes`` saying which semantics of the source differ, what was folded and what
        was dropped, and ``names`` the NIR names of the synapse nodes.

    Raises:
        ValueError: no ``dt`` (named), a bad ``dt``/``steps``/``encoding``/``input_gain``/
            ``source``, a non-finite or non-positive field (node and field named), widths
            that do not chain.
        rewire.errors.LoweringError: a node, edge or semantics rewire cannot lower, naming
            the node (``err.piece``), why and what to do instead: non-zero biases, Conv1d,
            Delay, Threshold, branches, merges, several inputs, per-neuron parameters that
            differ, a time constant below ``dt`` outside Norse 1.1's pattern, ...
        FileNotFoundError: a path that does not exist.

    Example:
        >>> import numpy as np, nir
        >>> g = nir.NIRGraph.from_list(nir.Linear(weight=np.ones((2, 3))), nir.LIF(
        ...     tau=np.full(2, 0.01), r=np.full(2, 10.0), v_leak=np.zeros(2),
        ...     v_threshold=np.full(2, 10.0)))
        >>> net = lower(g, dt=1e-3)
        >>> [(layer.name, layer.synapse.op, layer.neuron) for layer in net.layers]
        [('linear', 'dense', LIF(tau_mem_inv=100.0, v_th=1.0, v_leak=0.0, v_reset=0.0, dt=0.001))]
        >>> net.notes[-1].split(":")[0]
        'source unknown'
    """
    if not isinstance(graph, nir.NIRGraph):
        graph = read(graph)
    meta = dict(graph.metadata or {})
    if dt is None:
        dt = meta.get("dt")
    if dt is None:
        raise ValueError("dt: the NIR graph has no metadata['dt'] (NIR stores no time step); "
                         "pass dt= in seconds (snnTorch 1.0 files: dt=1e-4, the step its "
                         "exporter assumes; Norse 1.1's to_nir: the dt it was called with, "
                         "default 1e-3)")
    dt = _positive("dt", dt)
    steps = _positive("steps", steps if steps is not None else meta.get("steps", 16), True)
    encoding = encoding if encoding is not None else str(meta.get("encoding", "rate"))
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    gain = _positive("input_gain", input_gain if input_gain is not None
                     else meta.get("input_gain", 1.0))
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES} or None, got {source!r}")
    _check_values(graph)
    nodes, edges = _resolve(graph)
    order = _chain(nodes, edges)

    detected = detect_source(graph, dt)
    notes = []
    if source is None:
        source = detected
        if detected is not None:
            notes.append(f"source {detected} detected from the file")
    short = _short_tau(nodes, dt)
    norse, tau_scale = source == "norse", 1.0
    if short is not None:
        sname, fld, tau = short
        if source in ("norse", None) and _norse_pattern(nodes):
            source, norse, tau_scale = "norse", True, dt
            notes.append(f"Norse 1.1's to_nir writes tau = dt / tau_inv (norse #411/#412; "
                         f"here {fld} = {tau:g} s < dt in {sname!r}): every time constant "
                         f"divided by dt = {dt:g} s, which must be the dt to_nir was called "
                         f"with; it writes no v_reset either (nir's default 0 is used, so a "
                         f"LIFCell with another v_reset is lowered with 0)")
        else:
            raise LoweringError(f"NIR node {sname!r}: {fld} = {tau:g} s is shorter than dt = "
                                f"{dt:g} s (forward Euler would decay by 1 - dt/tau < 0); "
                                f"pass the dt the file was made for, or source='norse' for a "
                                f"file written by Norse 1.1's to_nir (tau = dt/tau_inv)",
                                piece=sname)
    if norse:
        if not _norse_pattern(nodes):
            bad = next(n for n, node in _all_neurons(nodes)
                       if not (np.all(_arr(node.r) == 1)
                               and np.all(_arr(getattr(node, "w_in", 1.0)) == 1)))
            raise LoweringError(f"NIR node {bad!r}: source='norse' but r or w_in is not 1, "
                                f"which Norse's to_nir writes; pass source=None to read it "
                                f"with NIR's equations", piece=bad)
        notes.append("Norse's to_nir writes its cells' own parameters with r = w_in = 1 "
                     "(LIFCell adds its input to the current in one step, which NIR's "
                     "equations would write as w_in = tau_syn/dt; IAFCell adds it to v): "
                     "lowered as Norse's cells, weights and voltages as written")
    else:
        notes.append("NIR voltages divided by r (by r*dt for IF) and w_in*dt/tau_syn folded "
                     "into the weights before each CubaLIF/CubaLI, so the IR's Euler step is "
                     "NIR's at dt")
    notes.append(_SOURCE_NOTES[source])
    if source == "snntorch" and not math.isclose(dt, SNNTORCH_DT, rel_tol=1e-9):
        notes.append(f"snnTorch's exporter writes tau = 1e-4 s / (1 - beta); at dt = {dt:g} s "
                     f"the decays are 1 - dt/tau, not snnTorch's beta")

    walk = _Lowering(nodes, order, dt, encoding, gain, norse, tau_scale)
    walk.rockpool = source == "rockpool"
    walk.notes = notes
    walk.run()
    if not walk.ir:
        raise LoweringError("the NIR graph has no synapse -> neuron layer to lower",
                            piece=order[0])
    try:
        return Network(nodes=tuple(walk.ir), input_shape=walk.input_shape, steps=steps,
                       encoding=encoding, input_gain=gain if encoding == "current" else 1.0,
                       names=tuple(walk.names), source=f"nir:{source}" if source else "nir",
                       notes=tuple(walk.notes))
    except ValueError as exc:
        raise ValueError(f"NIR graph: {exc}") from None


# --------------------------------------------------------------------------- compatibility
# from_nir builds rewire's training classes (SpikingMLP / SpikingConvNet) from rewire's own
# graphs, as before the IR; it moves to rewire.frontends.norse.to_module(lower(graph)) when
# that lands.


def _scalar(node, field_: str) -> float:
    values = np.unique(np.asarray(getattr(node, field_), dtype=np.float64))
    if values.size != 1:
        raise NotImplementedError(f"CubaLIF.{field_} differs between neurons ({values.size} "
                                  f"values); rewire's models share one LIF setting")
    return float(values[0])


def neuron_config(node: nir.CubaLIF, dt: float):
    """Norse LIF constants (:class:`rewire.training.model.NeuronConfig`) of a ``nir.CubaLIF``
    integrated with Euler steps of ``dt`` seconds (the module docstring's mapping, with the
    voltages in Norse's units ``v = V tau_syn / (R w_in dt)``).

    Raises:
        NotImplementedError: parameters that differ between neurons.
    """
    from rewire.training.model import NeuronConfig

    tau_syn, tau_mem = _scalar(node, "tau_syn"), _scalar(node, "tau_mem")
    v_scale = tau_syn / (_scalar(node, "r") * _scalar(node, "w_in") * dt)
    v_unit = tau_mem / dt

    def volt(field_: str) -> float:
        stored = _scalar(node, field_)
        return _invert(stored, lambda c: c * v_unit, stored * v_scale)

    return NeuronConfig(tau_syn_inv=_invert(tau_syn, lambda c: 1.0 / c, 1.0 / tau_syn),
                        tau_mem_inv=_invert(tau_mem, lambda c: 1.0 / c, 1.0 / tau_mem),
                        v_th=volt("v_threshold"), v_leak=volt("v_leak"),
                        v_reset=volt("v_reset"), dt=dt)


def from_nir(graph: nir.NIRGraph | str | Path, dt: float | None = None):
    """Build the Norse model (:class:`~rewire.training.model.SpikingMLP` or
    :class:`~rewire.training.conv.SpikingConvNet`) of one of rewire's NIR graphs (kept for
    compatibility; :func:`lower` is the frontend).

    Args:
        graph: a graph or the path of a NIR file.
        dt: Euler step in s; default the graph's ``metadata["dt"]``.

    Raises:
        ValueError: no ``dt``; not exactly one input; weight shapes that do not chain.
        NotImplementedError: anything outside ``Input -> (Linear|Affine -> CubaLIF)+ ->
            Output`` or the conv chain of :data:`rewire.export.nir_graph.CONV_SUPPORTED`,
            naming the node.
    """
    from rewire.frontends import _nir_legacy

    return _nir_legacy.from_nir(graph, dt)
