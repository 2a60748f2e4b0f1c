"""The main job's report: ``report.json``, built by one function, :func:`build_report`.

The layout (``report_version`` 1) is documented in docs/formats.md ("report.json"); the table
printed at the end of a run is :func:`rewire.job.table.format_report`.
"""

from __future__ import annotations

import dataclasses
import json

from rewire._version import __version__
from rewire.compiler.metrics import energy_estimate, network_metrics
from rewire.errors import WarningRecord
from rewire.hw_profiles.profile import KNOWN_FORMATS, HardwareProfile
from rewire.ir.compiled_layers import CompiledSumPool
from rewire.job import health
from rewire.job.chip_checks import fan_out_rows
from rewire.training.budget import SynapseBudget
from rewire.training.train import TrainResult

REPORT_VERSION = 1


def build_report(prep, result: TrainResult, files: dict, timings: dict, lava: dict,
                 formats=(), *, net=None, equivalence=None, cores=None, reason: str = "",
                 activity: list[dict] | None = None, payload=None,
                 checks: dict | None = None) -> dict:
    """The whole ``report.json`` of a run (JSON-ready; accuracies are fractions in [0, 1]).

    A compiled run gives ``net`` (the :class:`~rewire.ir.compiled.CompiledNetwork`) and
    ``equivalence`` (:func:`rewire.compiler.equivalence.compare`'s result: the quantized
    accuracy and the per-layer activity come from it). A run on a chip whose neurons rewire
    cannot compile gives ``cores`` (the trained float network's
    :class:`~rewire.compiler.mapping.CoreMapping`), ``reason`` (why nothing was compiled) and
    ``activity`` (:func:`rewire.job.health.float_activity`); its fixed-point fields are
    ``None`` or left out. ``compiler_warnings`` are the compiled network's typed warnings
    (:mod:`rewire.compiler.diagnostics`: ``code``, ``layer``, ``message``, ``figures``; ``[]``
    when uncompiled); ``warnings`` are sentences: those of the compiler (``[code] layer:
    message``) first, then :func:`rewire.job.health.warnings`, read from the finished report.

    Args:
        prep: the :class:`~rewire.job.preparation.Prepared` job.
        result: what training reached.
        files: final path of every file, ``report`` included (key -> str).
        timings: ``train_s``, ``compile_s``, ``export_s``, ``total_s`` in seconds.
        lava: the Lava check's result (:func:`rewire.job.runner.lava_check`).
        formats: the export formats written (:func:`export_formats`).
        payload: the integer test input ``(T, N, n_in)`` of a compiled run; with it the
            report holds ``metrics`` (:func:`rewire.compiler.metrics.network_metrics`,
            NeuroBench 2.3 definitions) and ``energy`` (a modelled estimate from the
            profile's published figures, or why there is none).
        checks: the checks of the chip's own file in its own simulator, report key ->
            result (``{"xylo_check": ...}``, :func:`rewire.job.chip_checks.xylo_check`).

    Raises:
        ValueError: the test set is empty (a check of nothing is a failed check).
    """
    profile, spec, budget = prep.profile, prep.spec, prep.budget
    if net is not None:
        equiv = equivalence.to_dict()
        report = {**_header(profile, prep.split.name, net.sizes, net.steps, net.encoding,
                            net.neurons, net.total_synapses),
                  **_training(budget, result),
                  **_compiled(net, budget, result, equivalence.integer_accuracy)}
        activity = health.activity_from_equivalence(equiv)
    else:
        sizes = tuple(prep.model.sizes)
        neurons = sum(cores.neurons_per_layer)
        report = {**_header(profile, prep.split.name, sizes, spec.steps, spec.encoding, neurons,
                            sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))),
                  **_training(budget, result),
                  **_uncompiled(cores, sizes, budget, result, reason)}
    report.update({
        "profile_limits": dataclasses.asdict(profile.limits), "lava_check": lava,
        "files": files, "timings": timings, "history": result.history,
        "config": {"epochs": spec.train.epochs, "batch_size": spec.train.batch_size,
                   "lr": spec.train.lr, "alpha0": spec.train.alpha,
                   "target_sparsity": spec.train.sparsity, "seed": spec.train.seed,
                   "input_gain": spec.input_gain, "controller": dict(spec.train.controller)},
        "formats": export_formats(profile, formats, reason),
    })
    report.update(checks or {})
    if net is not None:
        report["equivalence"] = equiv
        report["fan_out"] = fan_out_rows(net)
    if net is not None and payload is not None:
        report["metrics"] = network_metrics(net, payload)
        report["energy"] = energy_estimate(net, report["metrics"], profile.energy)
    labels = prep.split.y_test.cpu().numpy()
    majority, threshold = health.chance_threshold(labels)
    report["test_set"] = {"samples": int(len(labels)), "classes": int(labels.max()) + 1,
                          "majority_share": majority, "chance_threshold": threshold}
    report["activity"] = activity
    records = net.warnings if net is not None else ()
    report["compiler_warnings"] = [w.to_dict() for w in records]
    report["warnings"] = [w.text for w in records] + health.warnings(report)
    return report


def warning_records(report: dict) -> list[WarningRecord]:
    """Every warning of a finished report as a :class:`~rewire.errors.WarningRecord`: the
    compiler's as they are, the run's (:func:`rewire.job.health.warnings`) with code
    ``"run"`` (what ``strict`` names in its :class:`~rewire.errors.StrictError`)."""
    typed = [WarningRecord.from_dict(w) for w in report.get("compiler_warnings", [])]
    texts = {w.text for w in typed}
    return typed + [WarningRecord("run", "", w) for w in report.get("warnings", [])
                    if w not in texts]


def export_formats(profile: HardwareProfile, written, reason: str = "") -> dict:
    """Which export formats apply to ``profile``'s chip, which were written, and why the
    others were skipped: ``{"chip": [...], "written": [...], "skipped": {format: reason}}``.

    Args:
        written: the format names written (any container).
        reason: why nothing could be compiled, if so (the chip's formats say it).
    """
    skipped = {f: (f"not a format of {profile.name} (profile formats: {list(profile.formats)})"
                   if f not in profile.formats else
                   f"needs a compiled network: {reason}" if reason else
                   "no writer for this network in the pipeline")
               for f in KNOWN_FORMATS if f not in written}
    return {"chip": list(profile.formats), "written": [f for f in KNOWN_FORMATS if f in written],
            "skipped": skipped}


def _header(prof, dataset, sizes, steps, encoding, neurons, total_synapses) -> dict:
    return {"report_version": REPORT_VERSION, "rewire_version": __version__,
            "profile": prof.name, "dataset": dataset,
            "network": {"sizes": list(sizes), "steps": steps, "encoding": encoding,
                        "neurons": neurons, "total_synapses": total_synapses}}


def missed_limits(budget: SynapseBudget, result: TrainResult) -> list[str]:
    """The limits GradR alone (before the projection) did not meet, in words (``[]``: none)."""
    missed = []
    if result.gradr_synapses > budget.max_synapses:
        missed.append(f"synapses {result.gradr_synapses} > {budget.max_synapses} "
                      f"({budget.source})")
    if budget.max_fan_in and result.gradr_max_fan_in > budget.max_fan_in:
        missed.append(f"fan-in {result.gradr_max_fan_in} > {budget.max_fan_in}")
    if budget.max_fan_out and result.gradr_max_fan_out > budget.max_fan_out:
        missed.append(f"fan-out {result.gradr_max_fan_out} > {budget.max_fan_out} "
                      f"(limits.fan_out)")
    return missed


def _training(budget: SynapseBudget, result: TrainResult) -> dict:
    return {"budget": {"max_synapses": budget.max_synapses, "max_fan_in": budget.max_fan_in,
                       "max_fan_out": budget.max_fan_out,
                       "total_synapses": budget.total_synapses,
                       "connectivity": budget.connectivity, "source": budget.source,
                       "binding": budget.source,
                       "limits": [{"synapses": int(c), "limit": src}
                                  for c, src in budget.limits]},
            "gradr": {"synapses": result.gradr_synapses,
                      "connectivity": result.gradr_synapses / budget.total_synapses,
                      "accuracy": result.gradr_accuracy,
                      "max_fan_in": result.gradr_max_fan_in,
                      "max_fan_out": result.gradr_max_fan_out,
                      "missed": missed_limits(budget, result),
                      "met_budget": result.projected_away == 0},
            "projection": {"removed_synapses": result.projected_away,
                           "removed_share": (result.projected_away / result.gradr_synapses
                                             if result.gradr_synapses else 0.0),
                           "accuracy_cost": result.gradr_accuracy - result.accuracy}}


def _compiled(net, budget: SynapseBudget, result: TrainResult, quantized: float) -> dict:
    """``result``, ``layers`` and ``input_payload`` of a compiled network.

    ``net.synapses`` counts every chip synapse; the budget constrains the trained ones
    (``trained_synapses``: a sum pool's constant kernel is ``fixed_synapses``, not prunable), so
    ``connectivity`` and ``within_budget`` read those (and the trained layers' fan-in).
    """
    trained = [l for l in net.layers if not isinstance(l, CompiledSumPool)]
    n_trained = sum(l.synapses for l in trained)
    fan_in = max((l.max_fan_in for l in trained), default=0)
    within = n_trained <= budget.max_synapses and (not budget.max_fan_in
                                                    or fan_in <= budget.max_fan_in)
    return {
        "result": {"synapses": net.synapses, "trained_synapses": n_trained,
                   "fixed_synapses": net.synapses - n_trained,
                   "connectivity": n_trained / budget.total_synapses,
                   "max_fan_in": max(l.max_fan_in for l in net.layers),
                   "neurons": net.neurons, "cores": net.mapping.cores,
                   "cores_per_layer": list(net.mapping.cores_per_layer),
                   "mapping_algorithm": net.mapping.algorithm,
                   "float_accuracy": result.accuracy, "quantized_accuracy": quantized,
                   "quantization_drop": result.accuracy - quantized, "within_budget": within},
        "layers": [{"name": l.name, "shape": list(l.shape), "synapses": l.synapses,
                    "max_fan_in": l.max_fan_in, "iDecay": l.i_decay, "vDecay": l.v_decay,
                    "vThMant": l.v_th_mant, "scale": l.scale,
                    "scale_limited_by": l.scale_limited_by,
                    "weight_range": [int(l.weight_int.min()), int(l.weight_int.max())],
                    "float_synapses": l.float_synapses, "notes": list(l.notes)}
                   for l in net.layers],
        "input_payload": {"max_value": net.input_max_value,
                          "message_bits": net.input_message_bits},
    }


def _uncompiled(cores, sizes: tuple, budget: SynapseBudget, result: TrainResult,
                reason: str) -> dict:
    """``result`` and ``layers`` of a trained float network mapped onto cores but not
    compiled: ``quantized_accuracy`` ``None``, no fixed-point fields."""
    synapses = sum(cores.synapses_per_layer)
    total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return {
        "result": {"synapses": synapses, "connectivity": synapses / total,
                   "max_fan_in": result.max_fan_in, "neurons": sum(cores.neurons_per_layer),
                   "cores": cores.cores, "cores_per_layer": list(cores.cores_per_layer),
                   "mapping_algorithm": cores.algorithm, "float_accuracy": result.accuracy,
                   "quantized_accuracy": None, "quantization_drop": None,
                   "not_compiled": reason, "within_budget": synapses <= budget.max_synapses},
        "layers": [{"name": n, "shape": [k, n_in], "synapses": int(s)} for n, k, n_in, s in
                   zip(cores.layer_names, cores.neurons_per_layer, sizes[:-1],
                       cores.synapses_per_layer)],
    }


def to_json(report: dict) -> str:
    """Pretty JSON text of a report."""
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


__all__ = ["REPORT_VERSION", "build_report", "export_formats", "missed_limits", "to_json",
           "warning_records"]
