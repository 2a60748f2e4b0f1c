"""The resource report: a JSON document and the table printed at the end of the main job."""

from __future__ import annotations

import dataclasses
import json

from rewire import __version__
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledSumPool
from rewire.training.budget import SynapseBudget
from rewire.training.train import TrainResult

REPORT_VERSION = 1


def build_report(net: CompiledNetwork, budget: SynapseBudget, result: TrainResult,
                 quantized_accuracy: float, files: dict, timings: dict, lava: dict,
                 dataset: str, config) -> dict:
    """Assemble the report dict (JSON-ready). Accuracies are fractions in [0, 1].

    ``result.synapses`` counts every chip synapse; the budget constrains the trained ones
    (``trained_synapses``: a sum pool's constant kernel is ``fixed_synapses``, not prunable), so
    ``connectivity`` and ``within_budget`` read those (and the trained layers' fan-in).
    """
    prof = net.profile
    trained = [l for l in net.layers if not isinstance(l, CompiledSumPool)]
    n_trained = sum(l.synapses for l in trained)
    fan_in = max((l.max_fan_in for l in trained), default=0)
    within = n_trained <= budget.max_synapses and (not budget.max_fan_in
                                                    or fan_in <= budget.max_fan_in)
    return {
        **_header(prof, dataset, net.sizes, net.steps, net.encoding, net.neurons,
                  net.total_synapses),
        **_training(budget, result),
        "result": {"synapses": net.synapses, "trained_synapses": n_trained,
                   "fixed_synapses": net.synapses - n_trained,
                   "connectivity": n_trained / budget.total_synapses,
                   "max_fan_in": max(l.max_fan_in for l in net.layers),
                   "neurons": net.neurons, "cores": net.mapping.cores,
                   "cores_per_layer": list(net.mapping.cores_per_layer),
                   "mapping_algorithm": net.mapping.algorithm,
                   "float_accuracy": result.accuracy,
                   "quantized_accuracy": quantized_accuracy,
                   "quantization_drop": result.accuracy - quantized_accuracy,
                   "within_budget": within},
        "layers": [{"name": l.name, "shape": list(l.shape), "synapses": l.synapses,
                    "max_fan_in": l.max_fan_in, "iDecay": l.i_decay, "vDecay": l.v_decay,
                    "vThMant": l.v_th_mant, "scale": l.scale,
                    "scale_limited_by": l.scale_limited_by,
                    "weight_range": [int(l.weight_int.min()), int(l.weight_int.max())],
                    "float_synapses": l.float_synapses, "notes": list(l.notes)}
                   for l in net.layers],
        "input_payload": {"max_value": net.input_max_value,
                          "message_bits": net.input_message_bits},
        **_footer(prof, lava, files, timings, result, config),
    }


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


def _footer(prof, lava, files, timings, result, config) -> dict:
    return {"profile_limits": dataclasses.asdict(prof.limits), "lava_check": lava,
            "files": files, "timings": timings, "history": result.history,
            "config": {"epochs": config.train.epochs, "batch_size": config.train.batch_size,
                       "lr": config.train.lr, "alpha0": config.train.alpha,
                       "target_sparsity": config.train.sparsity, "seed": config.train.seed,
                       "input_gain": config.input_gain}}


def build_float_report(profile, sizes: tuple, steps: int, encoding: str, cores, budget,
                       result: TrainResult, files: dict, timings: dict, reason: str,
                       dataset: str, config) -> dict:
    """The report of a run that trained and mapped a network but compiled nothing (the chip's
    neuron model has no fixed-point compiler in rewire): same layout as :func:`build_report`,
    with ``quantized_accuracy`` ``None`` and the per-layer fixed-point fields left out.

    Args:
        cores: the :class:`rewire.compiler.mapping.CoreMapping` of the trained float network.
        reason: why nothing was compiled (shown for the quantized accuracy and Lava check).
    """
    neurons, synapses = sum(cores.neurons_per_layer), sum(cores.synapses_per_layer)
    total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return {
        **_header(profile, dataset, sizes, steps, encoding, neurons, total),
        **_training(budget, result),
        "result": {"synapses": synapses, "connectivity": synapses / total,
                   "max_fan_in": result.max_fan_in, "neurons": neurons, "cores": cores.cores,
                   "cores_per_layer": list(cores.cores_per_layer),
                   "mapping_algorithm": cores.algorithm, "float_accuracy": result.accuracy,
                   "quantized_accuracy": None, "quantization_drop": None,
                   "not_compiled": reason, "within_budget": synapses <= budget.max_synapses},
        "layers": [{"name": n, "shape": [k, n_in], "synapses": int(s)} for n, k, n_in, s in
                   zip(cores.layer_names, cores.neurons_per_layer, sizes[:-1],
                       cores.synapses_per_layer)],
        **_footer(profile, {"skipped": reason}, files, timings, result, config),
    }


def to_json(report: dict) -> str:
    """Pretty JSON text of a report."""
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def format_report(report: dict) -> str:
    """The human-readable table printed at the end of the main job."""
    r, g, b, t = report["result"], report["gradr"], report["budget"], report["timings"]
    lim = report["profile_limits"]
    p = report["projection"]
    fans = "".join([f", fan-in <= {b['max_fan_in']}" if b["max_fan_in"] else "",
                    f", fan-out <= {b['max_fan_out']}" if b.get("max_fan_out") else ""])
    missed = g.get("missed")
    rows = [
        ("profile", report["profile"]),
        ("dataset / network", f"{report['dataset']} {report['network']['sizes']} "
                              f"T={report['network']['steps']} ({report['network']['encoding']})"),
        ("budget", f"{b['max_synapses']} synapses ({b['connectivity']:.2%}){fans}; binding "
                   f"limit: {b['source']}"),
        ("GradR alone", f"{g['synapses']} synapses ({g['connectivity']:.2%}), accuracy "
                        f"{g['accuracy']:.2%}, "
                        + ("met every limit" if g["met_budget"] else
                           "missed: " + ("; ".join(missed) if missed else "the budget"))),
        ("projection", f"removed {p['removed_synapses']} synapses"
                       + (f" ({p.get('removed_share', 0):.1%} of GradR's), float accuracy "
                          f"{g['accuracy']:.2%} -> {r['float_accuracy']:.2%} (cost "
                          f"{100 * p['accuracy_cost']:+.2f} points)"
                          if p["removed_synapses"] else "")),
        ("connectivity", f"{r['connectivity']:.2%} ({r.get('trained_synapses', r['synapses'])} "
                         f"/ {b['total_synapses']} trainable synapses)"
                         + (f"; plus {r['fixed_synapses']} fixed pooling synapses"
                            if r.get("fixed_synapses") else "")),
        ("max fan-in", f"{r['max_fan_in']}" + (f" / {b['max_fan_in']}" if b["max_fan_in"]
                                               else " (no fan-in limit)")),
        ("neurons", f"{r['neurons']}"),
        ("cores used", f"{r['cores']} of {lim['cores']} {r['cores_per_layer']}"),
        ("float accuracy", f"{r['float_accuracy']:.2%}"),
        ("quantized accuracy", f"skipped: {r.get('not_compiled')}"
                               if r["quantized_accuracy"] is None else
                               f"{r['quantized_accuracy']:.2%} (integer chip model; "
                               f"drop {100 * r['quantization_drop']:+.2f} points)"),
    ]
    lava = report["lava_check"]
    if "samples" in lava and not lava.get("output_spikes", 1):
        rows.append(("Lava check", f"FAILED: compared no output spikes ({lava['samples']} "
                                   f"silent samples prove nothing about the export)"))
    elif "samples" in lava:
        rows.append(("Lava check", f"{lava['spike_exact']}/{lava['samples']} samples "
                                   f"spike-exact vs integer model "
                                   f"({lava['output_spikes']} output spikes)"))
    else:
        rows.append(("Lava check", f"skipped: {lava['skipped']}"))
    eq = report.get("equivalence")
    if eq:
        for l in eq["layers"]:
            first = l["first_divergence"]
            rows.append((f"float vs int {l['name']}",
                         f"{l['spike_agreement']:.2%} spikes agree, "
                         + ("never diverge" if first is None else
                            f"first divergence at step {first}, "
                            f"{l['diverged_samples']:.1%} of samples diverge")))
        rows.append(("float vs int output", f"same class on {eq['prediction_agreement']:.2%} "
                                            f"of {eq['samples']} test samples"))
    fmt = report.get("formats")
    if fmt:
        rows.append(("export formats", f"{report['profile']} takes {fmt['chip']}; written "
                                       f"{fmt['written']}" + "".join(
                                           f"; {k} skipped: {v}" for k, v in fmt["skipped"].items()
                                           if k in fmt["chip"])))
    rows.append(("time", f"train {t['train_s']:.1f} s, compile {t['compile_s']:.1f} s, "
                         f"export {t['export_s']:.2f} s, total {t['total_s']:.1f} s"))
    for name, path in report.get("files", {}).items():
        rows.append((f"file: {name}", path))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 60)
    table = [line] + [f"{k:<{width}}  {v}" for k, v in rows] + [line]
    warned = report.get("warnings") or []
    if warned:
        bar = "!" * (width + 60)
        table += [bar, f"{len(warned)} WARNING(S): this result may be bad"] \
            + [f"WARNING: {w}" for w in warned] + [bar]
    return "\n".join(table)
