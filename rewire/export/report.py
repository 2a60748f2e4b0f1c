"""The resource report: a JSON document and the table printed at the end of the main job."""

from __future__ import annotations

import dataclasses
import json

from rewire import __version__
from rewire.compile.network import CompiledNetwork
from rewire.training.budget import SynapseBudget
from rewire.training.train import TrainResult

REPORT_VERSION = 1


def build_report(net: CompiledNetwork, budget: SynapseBudget, result: TrainResult,
                 quantized_accuracy: float, files: dict, timings: dict, lava: dict,
                 dataset: str, config) -> dict:
    """Assemble the report dict (JSON-ready). Accuracies are fractions in [0, 1]."""
    prof = net.profile
    return {
        "report_version": REPORT_VERSION,
        "rewire_version": __version__,
        "profile": prof.name,
        "dataset": dataset,
        "network": {"sizes": list(net.sizes), "steps": net.steps, "encoding": net.encoding,
                    "neurons": net.neurons, "total_synapses": net.total_synapses},
        "budget": {"max_synapses": budget.max_synapses, "max_fan_in": budget.max_fan_in,
                   "connectivity": budget.connectivity, "source": budget.source},
        "gradr": {"synapses": result.gradr_synapses,
                  "connectivity": result.gradr_synapses / budget.total_synapses,
                  "accuracy": result.gradr_accuracy,
                  "met_budget": result.projected_away == 0},
        "projection": {"removed_synapses": result.projected_away,
                       "accuracy_cost": result.gradr_accuracy - result.accuracy},
        "result": {"synapses": net.synapses, "connectivity": net.synapses / net.total_synapses,
                   "max_fan_in": max(l.max_fan_in for l in net.layers),
                   "neurons": net.neurons, "cores": net.mapping.cores,
                   "cores_per_layer": list(net.mapping.cores_per_layer),
                   "mapping_algorithm": net.mapping.algorithm,
                   "float_accuracy": result.accuracy,
                   "quantized_accuracy": quantized_accuracy,
                   "quantization_drop": result.accuracy - quantized_accuracy,
                   "within_budget": net.synapses <= budget.max_synapses},
        "layers": [{"name": l.name, "shape": list(l.shape), "synapses": l.synapses,
                    "max_fan_in": l.max_fan_in, "iDecay": l.i_decay, "vDecay": l.v_decay,
                    "vThMant": l.v_th_mant, "scale": l.scale,
                    "scale_limited_by": l.scale_limited_by,
                    "weight_range": [int(l.weight_int.min()), int(l.weight_int.max())]}
                   for l in net.layers],
        "profile_limits": dataclasses.asdict(prof.limits),
        "lava_check": lava,
        "files": files,
        "timings": timings,
        "history": result.history,
        "config": {"epochs": config.train.epochs, "batch_size": config.train.batch_size,
                   "lr": config.train.lr, "alpha0": config.train.alpha,
                   "target_sparsity": config.train.sparsity, "seed": config.train.seed,
                   "input_gain": config.input_gain},
    }


def to_json(report: dict) -> str:
    """Pretty JSON text of a report."""
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def format_report(report: dict) -> str:
    """The human-readable table printed at the end of the main job."""
    r, g, b, t = report["result"], report["gradr"], report["budget"], report["timings"]
    lim = report["profile_limits"]
    rows = [
        ("profile", report["profile"]),
        ("dataset / network", f"{report['dataset']} {report['network']['sizes']} "
                              f"T={report['network']['steps']} ({report['network']['encoding']})"),
        ("budget", f"{b['max_synapses']} synapses ({b['connectivity']:.2%}; {b['source']})"),
        ("GradR alone", f"{g['synapses']} synapses ({g['connectivity']:.2%}), accuracy "
                        f"{g['accuracy']:.2%}, {'met' if g['met_budget'] else 'missed'} budget"),
        ("projection", f"removed {report['projection']['removed_synapses']} synapses"),
        ("connectivity", f"{r['connectivity']:.2%} ({r['synapses']} / "
                         f"{report['network']['total_synapses']} synapses)"),
        ("max fan-in", f"{r['max_fan_in']}" + (f" / {lim['fan_in']}" if lim["fan_in"] else "")),
        ("neurons", f"{r['neurons']}"),
        ("cores used", f"{r['cores']} of {lim['cores']} {r['cores_per_layer']}"),
        ("float accuracy", f"{r['float_accuracy']:.2%}"),
        ("quantized accuracy", f"{r['quantized_accuracy']:.2%} (integer chip model; "
                               f"drop {100 * r['quantization_drop']:+.2f} points)"),
    ]
    lava = report["lava_check"]
    if "samples" in lava:
        rows.append(("Lava check", f"{lava['spike_exact']}/{lava['samples']} samples "
                                   f"spike-exact vs integer model"))
    else:
        rows.append(("Lava check", f"skipped: {lava['skipped']}"))
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
    return "\n".join([line] + [f"{k:<{width}}  {v}" for k, v in rows] + [line])
