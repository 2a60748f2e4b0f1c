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
* **spyx 1.0** (``r = beta = 1 - dt/tau``, ``w_in = 1``; its ``to_nir`` defaults to
  ``dt = 1``): ``r`` is spyx's decay, not a resistance; lowered as spyx's step ``V = beta V +
  x`` (voltages divided by ``tau_mem/dt``, weights as written). Its spike from the
  pre-update ``V`` and subtractive reset are named in the notes.
"""

from __future__ import annotations

import math
from pathlib import Path

import nir
import numpy as np

from rewire.errors import LoweringError
from rewire.io import check_hdf5
from rewire.frontends._nir_graph import (SUPPORTED, _TAUS, _all_neurons, _arr, _chain,
                                         _check_values, _kind, _resolve)
from rewire.frontends._nir_walk import _Lowering
from rewire.ir.network import ENCODINGS, Network

__all__ = ["SOURCES", "SUPPORTED", "read", "lower", "detect_source", "load", "from_nir"]

#: Frameworks :func:`lower` knows the semantics of (``source=``); ``"nir"``: plain NIR
#: equations, nothing detected.
SOURCES = ("snntorch", "rockpool", "norse", "spyx", "rewire", "nir")
REWIRE_NIR_FORMAT = "rewire-nir-1"  # metadata["format"] of rewire's writer
SNNTORCH_DT = 1e-4  # snnTorch 1.0's export_to_nir hard-codes dt = 1e-4 s
# --------------------------------------------------------------------------- reading


def read(path: str | Path) -> nir.NIRGraph:
    """``nir.read`` a graph (rewire's or another tool's), after checking the file.

    A file that fails nir's own type inference is read again without it (nirtorch writes the
    ``Input`` type with the traced sample's batch dimension, ``[1, n]``, which nir 1.0.8 then
    refuses to read); :func:`lower` checks every width itself.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not HDF5, declared data over :data:`rewire.io.MAX_HDF5_BYTES` (checked
            before anything is read), or a layout ``nir.read`` cannot parse (the message
            names the file).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"NIR file {path} does not exist")
    check_hdf5(path, "NIR file")
    try:
        try:
            graph = nir.read(str(path))
        except ValueError as exc:
            if "type" not in str(exc).lower():
                raise
            graph = nir.read(str(path), type_check=False)
    except (OSError, KeyError, AttributeError, TypeError, ValueError, IndexError,
            RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"{path}: malformed NIR file ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"{path}: holds a {type(graph).__name__}, not a NIR graph")
    return graph


# --------------------------------------------------------------------------- sources


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
    given ``dt``; spyx 1.0: ``r = 1 - dt/tau_mem`` (its beta) and ``w_in = 1``.
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
    if dt is not None and with_tau and all(
            _matches(_arr(node.r), 1 - dt / tau_mem(node))
            and np.all(_arr(getattr(node, "w_in", 1.0)) == 1) for _, node in with_tau):
        return "spyx"
    return None


_EVIDENCE = {
    "rewire": "metadata format rewire-nir-1",
    "norse": "r = w_in = 1 with a time constant below dt",
    "snntorch": "r = tau/1e-4 in every neuron, the step snnTorch's exporter assumes",
    "rockpool": "r = tau_mem exp(-dt/tau_mem)/dt in every neuron, as rockpool writes it",
    "spyx": "r = 1 - dt/tau_mem, spyx's beta, and w_in = 1 in every neuron",
}

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


def _semantics(graph: nir.NIRGraph, nodes: dict, dt: float, source: str | None):
    """``(source, mode, tau_scale, notes)``: the framework (declared, else detected), how the
    neurons are read (``"nir"``, ``"norse"``, ``"rockpool"``, ``"spyx"``: see
    ``rewire.frontends._nir_walk._lower_neuron``), the factor the time constants are too small
    by (Norse 1.1: ``dt``) and the notes saying so.

    Raises:
        rewire.errors.LoweringError: a time constant below ``dt`` outside Norse 1.1's pattern,
            or ``source='norse'`` for a graph without ``r = w_in = 1``.
    """
    detected = detect_source(graph, dt)
    notes = []
    plain = source == "nir"
    if source is None:
        source = detected
        if detected is not None:
            notes.append(f"source {detected} detected from the file ({_EVIDENCE[detected]}); "
                         f"pass source='nir' to read it by NIR's equations instead")
    elif plain:
        source = None
    short = _short_tau(nodes, dt)
    norse, tau_scale = source == "norse", 1.0
    if short is not None:
        sname, fld, tau = short
        if source in ("norse", None) and not plain and _norse_pattern(nodes):
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
                                f"which Norse's to_nir writes; pass source='nir' to read it "
                                f"with NIR's equations", piece=bad)
        notes.append("Norse's to_nir writes its cells' own parameters with r = w_in = 1 "
                     "(LIFCell adds its input to the current in one step, which NIR's "
                     "equations would write as w_in = tau_syn/dt; IAFCell adds it to v): "
                     "lowered as Norse's cells, weights and voltages as written")
    elif source == "spyx":
        notes.append("spyx's to_nir writes r = beta (not a resistance) and no w_in: lowered "
                     "as spyx's LIF/CuBaLIF step V = beta V + x (beta = 1 - dt/tau), voltages "
                     "divided by tau_mem/dt, weights as written")
    else:
        other = " (rockpool's CubaLIF nodes: as LIFTorch, below)" if source == "rockpool" \
            else ""
        notes.append(f"NIR voltages divided by r (by r*dt for IF) and w_in*dt/tau_syn folded "
                     f"into the weights before each CubaLIF/CubaLI, so the IR's Euler step is "
                     f"NIR's at dt{other}")
    notes.append(_SOURCE_NOTES[source])
    if source == "snntorch" and not math.isclose(dt, SNNTORCH_DT, rel_tol=1e-9):
        notes.append(f"snnTorch's exporter writes tau = 1e-4 s / (1 - beta); at dt = {dt:g} s "
                     f"the decays are 1 - dt/tau, not snnTorch's beta")
    mode = "norse" if norse else source if source in ("rockpool", "spyx") else "nir"
    return source, mode, tau_scale, notes


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
            does not record; default :func:`detect_source` (its finding is noted; for
            rockpool and spyx it changes how ``r`` is read: ``source="nir"`` reads the file
            by NIR's equations whatever it looks like).

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

    source, mode, tau_scale, notes = _semantics(graph, nodes, dt, source)
    walk = _Lowering(nodes, order, dt, encoding, gain, mode, tau_scale)
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


# --------------------------------------------------------------------------- modules


def load(graph: nir.NIRGraph | str | Path, **options):
    """A runnable torch module of any NIR graph: :func:`lower` (``options`` go there), then
    :func:`rewire.frontends.norse.to_module` (float, the IR's semantics).

    Shapes:
        as :class:`rewire.frontends.norse.IRModule`: ``(B, *input_shape)`` in for ``current``
        encoding, ``(T, B, *input_shape)`` for ``rate``; ``(T, B, *out_shape)`` out.

    Raises:
        as :func:`lower`.
    """
    from rewire.frontends.norse import to_module

    return to_module(lower(graph, **options))


# from_nir keeps building rewire's training classes (SpikingMLP / SpikingConvNet) from
# rewire's own graphs: tests/test_cli.py and tests/test_conv.py read .sizes and isinstance of
# its result. For any other graph use load().


def from_nir(graph: nir.NIRGraph | str | Path, dt: float | None = None):
    """Build the Norse model (:class:`~rewire.training.model.SpikingMLP` or
    :class:`~rewire.training.conv.SpikingConvNet`) of one of rewire's NIR graphs (kept for
    compatibility; :func:`lower` is the frontend, :func:`load` gives a module of any graph).

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
