"""NIR frontend, part 3: which framework wrote a graph, and what its semantics mean for the
IR (see :mod:`rewire.frontends.nir` for the conventions; the patterns are those of the
writers named: snnTorch 1.0 ``snntorch/export_nir.py``, Norse 1.1
``norse/torch/utils/export_nir.py``, rockpool 3.1 ``rockpool/nn/modules/torch/nir.py``,
spyx 1.0's ``to_nir``).
"""

from __future__ import annotations

import math

import nir
import numpy as np

from rewire.errors import LoweringError, SEMANTIC_NOTE
from rewire.frontends._nir_graph import _TAUS, _all_neurons, _arr, _kind, _resolve

#: Frameworks :func:`rewire.frontends.nir.lower` knows the semantics of (``source=``);
#: ``"nir"``: plain NIR equations, nothing detected.
SOURCES = ("snntorch", "rockpool", "norse", "spyx", "rewire", "nir")
REWIRE_NIR_FORMAT = "rewire-nir-1"  # metadata["format"] of rewire's writer
SNNTORCH_DT = 1e-4  # snnTorch 1.0's export_to_nir hard-codes dt = 1e-4 s


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

#: Sources whose note in :data:`_SOURCE_NOTES` names spike trains that differ from the IR's
#: (marked :data:`rewire.errors.SEMANTIC_NOTE`: the compiler turns them into warnings).
_DIFFERS = ("snntorch", "rockpool", "spyx")


def _semantics(graph: nir.NIRGraph, nodes: dict, dt: float, source: str | None):
    """``(source, mode, tau_scale, notes)``: the framework (declared, else detected), how the
    neurons are read (``"nir"``, ``"norse"``, ``"rockpool"``, ``"spyx"``: see
    ``rewire.frontends._nir_neurons._lower_neuron``), the factor the time constants are too small
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
        notes.append(f"NIR voltages divided by r (IF: v += r S) and w_in*dt/tau_syn folded "
                     f"into the weights before each CubaLIF/CubaLI, so the IR's Euler step is "
                     f"NIR's at dt{other}")
    # a source whose spike trains differ from the IR's: marked, the compiler warns
    notes.append((SEMANTIC_NOTE if source in _DIFFERS else "") + _SOURCE_NOTES[source])
    if source == "snntorch" and not math.isclose(dt, SNNTORCH_DT, rel_tol=1e-9):
        notes.append(f"{SEMANTIC_NOTE}snnTorch's exporter writes tau = 1e-4 s / (1 - beta); "
                     f"at dt = {dt:g} s the decays are 1 - dt/tau, not snnTorch's beta")
    mode = "norse" if norse else source if source in ("rockpool", "spyx") else "nir"
    if source == "rewire" and any(_kind(node) == "IF" and np.any(_arr(node.r) != 1)
                                  for _, node in _all_neurons(nodes)):
        mode = "rewire-1"  # rewire's IF before r = 1: r = weight/dt, v += dt r S
    return source, mode, tau_scale, notes

