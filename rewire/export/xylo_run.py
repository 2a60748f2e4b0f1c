"""Run a Xylo specification (:mod:`rewire.export.xylo_spec`) in XyloSim and compare it with
rewire's integer model state for state. Needs the ``xylo`` extra (``xylosim``, cp310 wheels).

XyloSim 0.1.3's ``xylosim.v2.XyloLayer`` is built with keyword arguments exactly as rockpool
3.1 ``devices/xylo/syns61201/xylo_sim.py`` ``XyloSim.from_specification`` builds it (rockpool's
module itself imports samna, which is not installable here). The layer does not keep its
arguments alive: freeing the synapse lists while the layer lives crashes the process
(measured: a segmentation fault at the next ``evolve``), so :class:`XyloRun` holds them, as
rockpool's ``XyloSim`` holds ``_xylo_sim_params``. With them held, one hidden neuron and a
readout without synapses run as well.

Timing (docs/xylo.md): the input reaches the hidden neurons in the same step, hidden spikes
reach the next hidden layer and the readout one step late, so the output of a chain of ``L``
layers lags ``L - 1`` steps; both models run ``T + L - 1`` steps of zero-padded input
(:func:`rewire.compiler.simulate.pad_for_chip`) and are compared at every step.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rewire.compiler import simulate
from rewire.export.xylo_spec import load_specification
from rewire.ir.compiled import CompiledNetwork

__all__ = ["INSTALL", "STATES", "xylosim_missing", "XyloRun", "run_specification",
           "reference_states", "compare", "xylo_check"]

INSTALL = 'pip install "rewire[xylo]" (xylosim, Python 3.10)'
#: The recorded states compared, named as rockpool's ``XyloSim.evolve(record=True)`` names
#: them (``Spikes_out``: the output spikes ``evolve`` returns).
STATES = ("Isyn", "Vmem", "Spikes", "Isyn_out", "Vmem_out", "Spikes_out")


def xylosim_missing() -> str | None:
    """Why XyloSim cannot run here (``None`` when ``xylosim.v2`` imports)."""
    try:
        import xylosim.v2  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return f"XyloSim is not usable ({type(exc).__name__}: {exc}); {INSTALL}"
    return None


def _synapses(w: np.ndarray, synapse_cls) -> list:
    """Per presynaptic row of ``w``: ``XyloSynapse(post, 0, weight)`` of its non-zero
    entries (rockpool's ``from_specification``)."""
    return [[synapse_cls(int(post), 0, int(row[post])) for post in np.flatnonzero(row)]
            for row in np.asarray(w)]


class XyloRun:
    """A ``xylosim.v2.XyloLayer`` built from a specification, with the arguments it needs
    kept alive as long as it lives.

    Args:
        spec: ``{keyword: array}`` as :func:`rewire.export.xylo_spec.load_specification`
            returns (2-D weights: one synapse per neuron).

    Raises:
        ImportError: XyloSim is not installed (names :data:`INSTALL`).
    """

    def __init__(self, spec: dict):
        try:
            from xylosim.v2 import XyloLayer, XyloSynapse
        except ImportError as exc:
            raise ImportError(f"running a Xylo specification needs XyloSim: {INSTALL}") \
                from exc
        w_in, w_out = np.asarray(spec["weights_in"]), np.asarray(spec["weights_out"])
        n_h, n_out = w_out.shape
        w_rec = np.asarray(spec.get("weights_rec", np.zeros((n_h, n_h), np.int8)))

        def ints(key, n, default=0):
            return [int(x) for x in np.asarray(spec.get(key, np.full(n, default))).ravel()]

        self.n_in = w_in.shape[0]
        self._args = dict(
            synapses_in=_synapses(w_in, XyloSynapse), synapses_rec=_synapses(w_rec, XyloSynapse),
            synapses_out=_synapses(w_out, XyloSynapse), aliases=[[] for _ in range(n_h)],
            threshold=ints("threshold", n_h), threshold_out=ints("threshold_out", n_out),
            has_bias=False, bias=[0] * n_h, bias_out=[0] * n_out,
            weight_shift_inp=int(spec.get("weight_shift_in", 0)),
            weight_shift_rec=int(spec.get("weight_shift_rec", 0)),
            weight_shift_out=int(spec.get("weight_shift_out", 0)),
            dash_mem=ints("dash_mem", n_h), dash_mem_out=ints("dash_mem_out", n_out),
            dash_syns=[[d, 0] for d in ints("dash_syn", n_h)],
            dash_syns_out=[[d] for d in ints("dash_syn_out", n_out)], name="rewire")
        self.layer = XyloLayer(**self._args)

    def run(self, events: np.ndarray) -> dict[str, np.ndarray]:
        """One sample from reset: ``events`` ``(T, n_in)`` integer counts >= 0 (XyloSim
        clips them at 15).

        Returns:
            :data:`STATES` -> int64 ``(T, n)`` (hidden: ``n = N``; ``_out``: the readout).

        Raises:
            ValueError: ``events`` not ``(T, n_in)`` or negative.
        """
        events = np.asarray(events, dtype=np.int64)
        if events.ndim != 2 or events.shape[1] != self.n_in:
            raise ValueError(f"events: expected (T, {self.n_in}), got {events.shape}")
        if events.size and events.min() < 0:
            raise ValueError(f"events: Xylo takes event counts >= 0, got {events.min()}")
        lay = self.layer
        lay.reset_all()
        out = lay.evolve(events.tolist())
        got = {"Isyn": np.array(lay.rec_i_syn).T, "Vmem": np.array(lay.rec_v_mem).T,
               "Spikes": np.array(lay.rec_recurrent_spikes),
               "Isyn_out": np.array(lay.rec_i_syn_out).T,
               "Vmem_out": np.array(lay.rec_v_mem_out).T, "Spikes_out": np.array(out)}
        return {k: v.astype(np.int64).reshape(len(events), -1) for k, v in got.items()}


def run_specification(spec: dict | str | Path, payload: np.ndarray) -> dict[str, np.ndarray]:
    """Run every sample of ``payload`` ``(T, B, n_in)`` (or one ``(T, n_in)``) through XyloSim.

    Returns:
        :data:`STATES` -> int64 ``(T, B, n)`` (``(T, n)`` for one sample).

    Raises:
        as :class:`XyloRun` and :meth:`XyloRun.run`.
    """
    if not isinstance(spec, dict):
        spec = load_specification(spec)
    run, payload = XyloRun(spec), np.asarray(payload)
    if payload.ndim == 2:
        return run.run(payload)
    per = [run.run(payload[:, b]) for b in range(payload.shape[1])]
    return {k: np.stack([p[k] for p in per], axis=1) for k in STATES}


def reference_states(net: CompiledNetwork, payload: np.ndarray) -> dict[str, np.ndarray]:
    """rewire's integer model of ``net`` with Xylo's delays
    (:func:`rewire.compiler.simulate.simulate_states`, ``chip_delay=True``), as
    :data:`STATES` -> ``(T, B, n)``: the hidden layers side by side in their neuron ids.

    Args:
        payload: ``(T, B, n_in)`` input events (already padded where wanted).
    """
    rec = simulate.simulate_states(net, payload, chip_delay=True)
    hidden, readout = rec[:-1], rec[-1]

    def cat(field: str) -> np.ndarray:  # the hidden layers side by side
        return np.concatenate([getattr(r, field) for r in hidden], axis=-1)

    return {"Isyn": cat("u"), "Vmem": cat("v"), "Spikes": cat("out").astype(np.int64),
            "Isyn_out": readout.u, "Vmem_out": readout.v,
            "Spikes_out": readout.out.astype(np.int64)}


def compare(net: CompiledNetwork, spec: dict | str | Path, payload: np.ndarray,
            labels: np.ndarray | None = None) -> dict:
    """Run ``payload`` ``(T, B, n_in)`` padded by ``L - 1`` silent steps through XyloSim and
    rewire's integer model; compare every recorded state of every step.

    Args:
        labels: ``(B,)`` classes; with them the result holds XyloSim's ``"accuracy"``
            (fraction; the class of a sample is the readout neuron with most spikes, ties
            to the lowest index, as :func:`rewire.compiler.simulate.class_scores`).

    Returns:
        ``{"samples", "samples_equal", "states_compared", "states_equal", "output_spikes",
        "hidden_spikes", "steps", "first_mismatch"}``: ``states_*`` count integers (one per
        neuron, step and state of :data:`STATES`), ``output_spikes`` the readout's spikes in
        XyloSim, ``first_mismatch`` ``None`` or ``{"sample", "state", "step", "neuron",
        "xylosim", "rewire"}``.
    """
    padded = simulate.pad_for_chip(net, np.asarray(payload))
    ref = reference_states(net, padded)
    got = run_specification(spec, padded)
    equal_all = np.ones(padded.shape[1], bool)
    states_equal = states = 0
    first = None
    for key in STATES:
        same = got[key] == ref[key]
        states += same.size
        states_equal += int(same.sum())
        equal_all &= same.all(axis=(0, 2))
        if first is None and not same.all():
            t, b, i = (int(x) for x in np.argwhere(~same)[0])
            first = {"sample": b, "state": key, "step": t, "neuron": i,
                     "xylosim": int(got[key][t, b, i]), "rewire": int(ref[key][t, b, i])}
    result = {"samples": int(padded.shape[1]), "samples_equal": int(equal_all.sum()),
              "states_compared": states, "states_equal": states_equal,
              "output_spikes": int(got["Spikes_out"].sum()),
              "hidden_spikes": int(got["Spikes"].sum()), "steps": int(padded.shape[0]),
              "first_mismatch": first}
    if labels is not None:
        scores = got["Spikes_out"].sum(0)
        result["accuracy"] = float(np.mean(scores.argmax(-1) == np.asarray(labels)))
    return result


def xylo_check(net: CompiledNetwork, path: str | Path, payload: np.ndarray,
               samples: int, labels: np.ndarray | None = None) -> dict:
    """The report's XyloSim check (as the Lava check is for Loihi 2): the first ``samples``
    inputs of ``payload`` ``(T, N, n_in)`` through the written specification ``path`` and
    rewire's integer model, every state compared (:func:`compare`; with ``labels`` ``(N,)``
    XyloSim's accuracy on those samples too).

    Returns:
        :func:`compare`'s dict plus ``"passed"`` (every sample equal in every state, at least
        one sample and one output spike: a check that compared silence or nothing fails) and
        ``"seconds"``; or ``{"skipped": why}`` without XyloSim or with ``samples <= 0``.
    """
    if samples <= 0:
        return {"skipped": "xylo_samples 0"}
    missing = xylosim_missing()
    if missing:
        return {"skipped": missing}
    start = time.perf_counter()
    labels = None if labels is None else np.asarray(labels)[:samples]
    result = compare(net, path, np.asarray(payload)[:, :samples], labels)
    result["passed"] = bool(result["samples"] > 0 and result["output_spikes"] > 0
                            and result["samples_equal"] == result["samples"])
    result["seconds"] = time.perf_counter() - start
    return result
