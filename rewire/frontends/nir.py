r"""NIR frontend: lower a NIR graph written by any framework to a :class:`rewire.ir.Network`.

:func:`lower` reads a ``nir.NIRGraph`` (or a ``.nir`` file) from rewire, snnTorch 1.0, Norse
1.1, rockpool 3.1, spyx or any other writer and returns the IR network the compiler reads.
Every node and edge is either lowered or named in a :class:`~rewire.errors.LoweringError`
(its type, its name, why, what to do instead); bad values raise :class:`ValueError` naming the
node and field before anything is built.

**Nodes.** ``Input``, ``Output``, ``Linear``, ``Affine`` (its bias the ``Dense`` node's bias;
an all-zero bias is lowered as ``Dense`` without one, with a note), ``Conv2d`` (dilation 1,
its bias the node's), ``SumPool2d``, ``AvgPool2d`` (a sum pool of weight ``1/(kH kW)``),
``Flatten``, ``Identity`` (dropped), ``Scale`` (folded into the weights of the ``Linear``/``Affine`` it
precedes or follows; a scalar scale also into a ``Conv2d`` or pool), the neurons ``CubaLIF``,
``LIF``, ``IF``, ``CubaLI``, ``LI``, and recurrence: a nested ``NIRGraph``
``{Input, neuron, Linear|Affine w_rec, Output}`` with the back edge ``w_rec -> neuron`` (as
snnTorch's ``RLeaky``/``RSynaptic`` and rockpool write it), or the same cycle in a flat graph
(as ``nirtorch`` 2.6 flattens it), lowered to :class:`~rewire.ir.nodes.RecurrentDense` plus the
neuron; a recurrent ``Affine``'s bias is added to the layer's bias
(``a = W x + b + b_rec + W_rec z``). Synapse nodes in a row without a neuron between them
(``Linear -> Linear``, ``SumPool2d -> Conv2d``, ``Conv2d -> Conv2d``, ``SumPool2d -> Flatten
-> Linear``, with ``Scale`` nodes anywhere among them) are composed exactly into one synapse
(:func:`rewire.ir.fuse.fuse`, named ``"a+b"``), or refused naming the pair where no exact
composition exists.

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
    LIF, LI, IF)},\qquad
    W_\mathrm{IR} = W \cdot w_\mathrm{in}\Delta t/\tau_\mathrm{syn}\ \text{(CubaLIF, CubaLI)},
    \ W_\mathrm{IR} = W \text{ otherwise},

for every voltage (``v_threshold``, ``v_leak``, ``v_reset``): a CubaLIF's current ``I`` is the
IR's ``j``; ``R`` is folded into the voltages so that the weights keep their values, and
``w_in dt / tau_syn`` (exactly 1 in rewire's and snnTorch's files) into the weights of the
synapse before the neuron (for a pool, into its weight). rewire's writer
(:mod:`rewire.export.nir_graph`: CubaLIF ``R = tau_mem/dt``, ``w_in = tau_syn/dt``,
``v_threshold = v_th tau_mem/dt``; LIF, LI, IF ``R = 1``) lowers back to the same weights and
constants, and reads the spike fields it writes into a neuron's metadata
(:mod:`rewire.ir.spike_metadata`); a ``CubaLIF`` whose metadata says ``rewire.kind =
"BitshiftLIF"`` (Xylo's neuron, :meth:`rewire.ir.chip_bitshift.CompiledBitshiftLIF.nir_node`)
is read back as that ``BitshiftLIF``, dash values and spike fields from the metadata, in any
``framework``. IF is read as ``V += R S`` per step, not ``V += dt R S``:
NIR stores no step and every reader integrates IF so (Norse, sinabs and spyx ignore ``R``,
snnTorch 1.0 asserts ``R = 1``); rewire's files before ``R = 1`` (IF ``R = 1/dt``) are read
as written then.

**Per-neuron arrays** that are all equal lower to the scalar; differing values are refused
naming the node and field (the chip has one decay and one threshold per layer).

**What NIR does not record** (nir 1.0.8, ``nir/ir/neuron.py``): the reset, the number of
spikes per step and a voltage floor. ``framework=`` (else ``metadata["framework"]``, else the
source's own) gives the neurons that framework's rule as IR spike fields
(:mod:`rewire.frontends._nir_frameworks`): snnTorch's defaults (subtract, one step late),
rockpool's and sinabs' several spikes per step with subtraction, sinabs' floor; spyx's
spikes one step late are refused by name; ``"nir"``/``"norse"`` keep the IR's default (``v``
set to ``v_reset`` in the step that spikes, Norse and Loihi). ``source=`` (or what
:func:`detect_source` finds in the file) decides how the parameters are read and puts a line
into ``Network.notes``; an unknown source gets a line too:

* **snnTorch 1.0** (``r = tau/1e-4``: its exporter hard-codes ``dt = 1e-4`` s; lower at that
  ``dt``): lowered with snnTorch's default rule (``reset_mechanism='subtract'``,
  ``reset_delay=True``), spike for spike; a model trained with ``reset_mechanism='zero'``
  and ``reset_delay=False`` has Norse's rule: ``framework='norse'``.
* **sinabs 3** (``IF`` nodes with ``r = 1`` only): read as sinabs' ``IAF``, ``v += x`` with the
  threshold as written (not ``V / (r dt)``), several spikes per step, subtraction, the floor
  ``-v_th`` its reader sets.
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

from rewire.errors import SEMANTIC_NOTE, LoweringError
from rewire.io import check_hdf5
from rewire.frontends._nir_graph import (SUPPORTED, _chain, _check_values, _resolve,
                                        check_size)
from rewire.frontends._nir_frameworks import (FRAMEWORKS, apply_framework, framework_note,
                                             pick_framework)
from rewire.frontends._nir_source import (_SOURCE_NOTES, REWIRE_NIR_FORMAT, SNNTORCH_DT, SOURCES,
                                          _semantics, detect_source)
from rewire.frontends._nir_walk import _Lowering
from rewire.frontends.torch_module import to_module
from rewire.ir._checked import check_encoding, check_gain, check_steps
from rewire.ir.network import Network

__all__ = ["SOURCES", "FRAMEWORKS", "SUPPORTED", "REWIRE_NIR_FORMAT", "SNNTORCH_DT", "read", "lower",
           "detect_source", "load"]

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
            RuntimeError, NotImplementedError, AssertionError, RecursionError) as exc:
        raise ValueError(f"{path}: malformed NIR file ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"{path}: holds a {type(graph).__name__}, not a NIR graph")
    return graph


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



def _run_options(steps, encoding, input_gain, meta: dict, origin: str = "NIR graph"):
    """``steps``, ``encoding``, ``input_gain``: the arguments (checked, refused rather than
    coerced: ``TypeError``/``ValueError``), else the graph's metadata (a bad value there is
    the file's fault: ``ValueError`` naming ``metadata['...']``)."""
    given = {"steps": steps, "encoding": encoding, "input_gain": input_gain}
    default = {"steps": 16, "encoding": "rate", "input_gain": 1.0}
    checks = {"steps": check_steps, "encoding": check_encoding, "input_gain": check_gain}
    out = []
    for name, value in given.items():
        if value is not None:
            out.append(checks[name](value, name))
            continue
        value = meta.get(name, default[name])
        if isinstance(value, (bytes, np.bytes_)):
            value = value.decode("utf-8", "replace")
        try:
            out.append(checks[name](value, f"{origin}: metadata['{name}']"))
        except TypeError as exc:
            raise ValueError(str(exc)) from None
    return tuple(out)


def lower(graph: nir.NIRGraph | str | Path, *, dt: float | None = None,
          steps: int | None = None, encoding: str | None = None,
          input_gain: float | None = None, source: str | None = None,
          framework: str | None = None) -> Network:
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
        framework: whose spike and reset rule the neurons follow (NIR records none):
            ``"nir"``/``"norse"`` (one spike at ``v > v_th``, reset to ``v_reset`` at once),
            ``"snntorch"`` (its defaults: subtract, one step late), ``"rockpool"``,
            ``"sinabs"`` (several spikes per step at ``v >= v_th``, subtract; sinabs also
            reads ``IF`` nodes as ``v += x`` with the threshold as written and a floor at
            ``-v_th``), ``"spyx"`` (refused: its spikes come one step late); see
            :mod:`rewire.frontends._nir_frameworks`. Default: ``metadata["framework"]``,
            else the source's (declared or detected; a graph of ``IF`` nodes with ``r = 1``
            only as sinabs), else ``"nir"``.

    Returns:
        The :class:`~rewire.ir.network.Network`, ``source = "nir:<framework>"`` (or ``"nir"``),
        its ``notes`` saying which semantics of the source differ, what was folded and what
        was dropped, and ``names`` the NIR names of the synapse nodes.

    Raises:
        ValueError: no ``dt`` (named), a bad ``dt``/``steps``/``encoding``/``input_gain``/
            ``source``/``framework``, a non-finite or non-positive field (node and field named), widths
            that do not chain.
        rewire.errors.LoweringError: a node, edge or semantics rewire cannot lower, naming
            the node (``err.piece``), why and what to do instead: Conv1d,
            Delay, Threshold, branches, merges, several inputs, per-neuron parameters that
            differ, a time constant below ``dt`` outside Norse 1.1's pattern, spyx's spike
            rule (``framework="spyx"``, or a file detected as spyx's), ...
        FileNotFoundError: a path that does not exist.

    Example:
        >>> import numpy as np, nir
        >>> g = nir.NIRGraph.from_list(nir.Linear(weight=np.ones((2, 3))), nir.LIF(
        ...     tau=np.full(2, 0.01), r=np.full(2, 10.0), v_leak=np.zeros(2),
        ...     v_threshold=np.full(2, 10.0)))
        >>> net = lower(g, dt=1e-3)
        >>> [(layer.name, layer.synapse.op, layer.neuron.kind, layer.neuron.tau_mem_inv,
        ...   layer.neuron.v_th, layer.neuron.reset) for layer in net.layers]
        [('linear', 'dense', 'LIF', 100.0, 1.0, 'set')]
        >>> net.notes[-1].split(":")[0]
        'source unknown'
    """
    origin = "NIR graph"
    if not isinstance(graph, nir.NIRGraph):
        origin = f"NIR file {graph}"
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
    steps, encoding, gain = _run_options(steps, encoding, input_gain, meta, origin)
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES} or None, got {source!r}")
    check_size(graph)
    try:
        _check_values(graph)
        nodes, edges = _resolve(graph)
        order = _chain(nodes, edges)
        source, mode, tau_scale, notes = _semantics(graph, nodes, dt, source)
        framework, mode, notes = _framework(framework, source, meta, nodes, mode, notes)
        walk = _Lowering(nodes, order, dt, encoding, gain, mode, tau_scale)
        walk.notes = notes
        walk.run()
        walk.ir = apply_framework(framework, walk.ir, walk.names)
        if source is None and framework not in ("nir", "norse"):
            source = framework
    except AssertionError as exc:  # nir's own checks inside its node classes
        raise ValueError(f"{origin}: a node nir itself refuses ({exc or 'AssertionError'}); "
                         f"fix the graph") from None
    except LoweringError:
        raise
    except ValueError as exc:  # an IR node's own check (e.g. a weight that overflows)
        raise ValueError(f"{origin}: {exc}") from None
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


def _framework(framework, source, meta, nodes, mode, notes):
    """``(framework, mode, notes)``: the spike rule (:func:`pick_framework`), the way the
    neurons are read (sinabs: its own reading) and the notes, the source's note on the reset
    replaced by the rule's where the rule is the source's own."""
    framework_arg = framework
    framework, found = pick_framework(framework, source, meta, nodes)
    if framework == "sinabs":
        mode = "sinabs"
        notes = [n for n in notes if not n.startswith("NIR voltages divided by r")]
        notes.append("sinabs' reading (its nir.py): IF is v += x with the threshold as "
                     "written (r = 1 is no resistance), LIF/LI v = exp(-1/tau) v + x with tau "
                     "in steps")
    declared = framework_arg is not None or any("metadata" in n for n in found)
    if framework not in ("nir", "norse"):  # the rule replaces the source's note on resets
        notes = [n for n in notes
                 if n.removeprefix(SEMANTIC_NOTE) != _SOURCE_NOTES.get(source)]
    elif declared:  # the user stated the rule: the source's reset note is information
        notes = [n.removeprefix(SEMANTIC_NOTE) if n.removeprefix(SEMANTIC_NOTE) ==
                 _SOURCE_NOTES.get(source) else n for n in notes]
    note = framework_note(framework)
    if note and not declared:  # a rule read off the file's look, not stated: a warning
        note = SEMANTIC_NOTE + note
    return framework, mode, notes + found + ([note] if note else [])


# --------------------------------------------------------------------------- modules


def load(graph: nir.NIRGraph | str | Path, **options):
    """A runnable torch module of any NIR graph: :func:`lower` (``options`` go there), then
    :func:`rewire.frontends.torch_module.to_module` (float, the IR's semantics).

    Shapes:
        as :class:`rewire.frontends.torch_module.IRModule`: ``(B, *input_shape)`` in for ``current``
        encoding, ``(T, B, *input_shape)`` for ``rate``; ``(T, B, *out_shape)`` out.

    Raises:
        as :func:`lower`.
    """
    return to_module(lower(graph, **options))
