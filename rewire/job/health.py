"""Is the result any good? The warnings of the main job's report.

A run can meet every budget and still be useless: a dead network, a check that compared
nothing, an accuracy no better than guessing, a projection that cut what training built.
:func:`warnings` reads a finished report and names each of these, so the printed table shows
them at the end and ``--strict`` can fail the run (exit code 3). Each rule:

* **projection cost**: the end-of-training projection lowered the float test accuracy by
  more than :data:`PROJECTION_COST` (1 point): the limits were not steered during training.
* **silent output**: the output layer emitted no spike on the whole test set.
* **dead layer**: fewer than :data:`ACTIVE_SHARE` (1 %) of a layer's neurons ever fired
  on the test set (float model, and the integer chip model where there is one).
* **empty check**: a Lava or float-vs-integer check compared no output spike, so its
  "spike-exact" proves nothing.
* **chance level**: an accuracy not above the chance threshold of :func:`chance_threshold`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

PROJECTION_COST = 0.01  # fraction: one point of accuracy
ACTIVE_SHARE = 0.01     # fraction of a layer's neurons that must ever fire


def chance_threshold(labels) -> tuple[float, float]:
    r"""``(majority share, threshold)`` of a labelled test set.

    Guessing the most frequent class scores the majority share :math:`m`; an accuracy at or
    under :math:`m + 3\sqrt{m(1-m)/n}` (three binomial standard errors over it, :math:`n`
    test samples) is at chance level.

    Args:
        labels: ``(n,)`` integer classes.

    Raises:
        ValueError: no labels (an empty test set proves nothing).
    """
    labels = np.asarray(labels).reshape(-1)
    if labels.size == 0:
        raise ValueError("chance_threshold: the test set is empty")
    m = float(np.bincount(labels.astype(np.int64)).max() / labels.size)
    return m, m + 3.0 * math.sqrt(m * (1.0 - m) / labels.size)


@torch.no_grad()
def float_activity(network, inputs) -> list[dict]:
    """Spikes and active neurons of every layer of an IR network on encoded inputs.

    Args:
        network: a :class:`rewire.ir.network.Network`.
        inputs: an iterable of per-step input batches ``(T, B, *input_shape)`` (float32).

    Returns:
        One dict per layer, input side first: ``name``, ``neurons``, ``float_spikes`` (total
        over the set), ``float_active`` (neurons that spiked at least once), ``spiking``.
    """
    from rewire.compiler.equivalence import as_rows
    from rewire.ir import dynamics

    layers = network.layers
    active = [None] * len(layers)
    spikes = [0] * len(layers)
    for x in inputs:
        outs = dynamics.run(network, torch.as_tensor(x), record_all=True)
        for k, out in enumerate(outs):
            rows = as_rows(out.numpy(), layers[k].neuron.spiking)   # (T, B, n) 0/1
            fired = rows.any(axis=(0, 1))
            active[k] = fired if active[k] is None else active[k] | fired
            spikes[k] += int(rows.sum())
    return [{"name": layer.name, "neurons": int(a.size), "float_spikes": spikes[k],
             "float_active": int(a.sum()), "spiking": bool(layer.neuron.spiking)}
            for k, (layer, a) in enumerate(zip(layers, active)) if a is not None]


def activity_from_equivalence(equivalence: dict) -> list[dict]:
    """The per-layer activity of an ``equivalence`` report entry, in :func:`float_activity`'s
    layout plus ``integer_spikes`` and ``integer_active``."""
    return [{"name": l["name"], "neurons": l["neurons"], "float_spikes": l["float_spikes"],
             "float_active": l["float_active"], "integer_spikes": l["integer_spikes"],
             "integer_active": l["integer_active"], "spiking": l["spiking"]}
            for l in equivalence["layers"]]


def warnings(report: dict) -> list[str]:
    """Every warning a finished report deserves (module docstring), as sentences that name
    the figure, the threshold and what to do; ``[]`` for a healthy run.

    Reads ``projection``, ``result``, ``activity``, ``lava_check``, ``xylo_check``,
    ``fan_out``, ``equivalence`` and ``test_set`` of the report (each optional).
    """
    out = []
    proj = report.get("projection", {})
    cost = proj.get("accuracy_cost")
    if cost is not None and cost > PROJECTION_COST:
        out.append(f"the end-of-training projection removed {proj['removed_synapses']} "
                   f"synapses and cost {100 * cost:.2f} points of float accuracy (more than "
                   f"{100 * PROJECTION_COST:.0f}): a limit was not met during training; train "
                   f"longer or give the limit as a budget option")
    activity = report.get("activity") or []
    silent = bool(activity) and activity[-1]["spiking"] and activity[-1]["float_spikes"] == 0
    if silent:
        out.append(f"dead network: the output layer {activity[-1]['name']} emitted no spike "
                   f"on the {report.get('test_set', {}).get('samples', '')} test samples; "
                   f"raise the input gain (input_gain), the learning rate (lr) or the budget, "
                   f"or train longer")
    for layer in activity[:-1] if silent else activity:
        low = [f"{layer[f'{model}_active']} in the {model} model"
               for model in ("float", "integer")
               if layer["spiking"] and layer.get(f"{model}_active") is not None
               and layer[f"{model}_active"] < ACTIVE_SHARE * layer["neurons"]]
        if low:
            out.append(f"nearly dead layer: of the {layer['neurons']} neurons of "
                       f"{layer['name']}, under {100 * ACTIVE_SHARE:.0f} % ever fired on the "
                       f"test set ({', '.join(low)}); raise the input gain (input_gain) or the "
                       f"budget")
    lava = report.get("lava_check", {})
    if "samples" in lava and not lava.get("output_spikes"):
        out.append(f"the Lava check compared no output spike ({lava['samples']} silent "
                   f"samples): it proves nothing about the export")
    xylo = report.get("xylo_check", {})
    if "samples" in xylo and not xylo.get("compared"):
        out.append(f"the XyloSim check compared no output spike or no state "
                   f"({xylo['samples']} samples, {xylo.get('output_spikes', 0)} output spikes): "
                   f"it proves nothing about the export")
    elif "samples" in xylo and xylo.get("samples_equal") != xylo["samples"]:
        out.append(f"XyloSim differs from rewire's integer model on "
                   f"{xylo['samples'] - xylo.get('samples_equal', 0)} of {xylo['samples']} "
                   f"test samples: the specification does not run the compiled network")
    for row in report.get("fan_out") or []:
        if not row["within"]:
            out.append(f"fan-out {row['max_fan_out']} of {row['source']} into {row['into']} "
                       f"is above the chip's {row['limit']} (limits.fan_out)")
    eq = report.get("equivalence")
    if eq and eq.get("layers"):
        last = eq["layers"][-1]
        if last.get("spiking", True) and last["float_spikes"] + last["integer_spikes"] == 0:
            out.append(f"the float-vs-integer check compared no output spike on "
                       f"{eq['samples']} test samples: it proves nothing about the compiler")
    test = report.get("test_set", {})
    if "chance_threshold" in test:
        r = report.get("result", {})
        low = [f"{name.split('_')[0]} {100 * r[name]:.2f} %"
               for name in ("float_accuracy", "quantized_accuracy")
               if r.get(name) is not None and r[name] <= test["chance_threshold"]]
        if low:
            out.append(f"accuracy at chance level ({', '.join(low)}; the most frequent class "
                       f"alone scores {100 * test['majority_share']:.2f} %, threshold "
                       f"{100 * test['chance_threshold']:.2f} %): the network did not learn")
    return out
