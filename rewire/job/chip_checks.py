"""The main job's checks of a chip's own file against rewire's integer model, and the
fan-out table of a compiled network.

* :func:`xylo_check`: the written Xylo specification run in SynSense's XyloSim
  (:mod:`rewire.export.xylo_run`) on every test sample, compared state for state
  (``Vmem``, ``Isyn``, spikes) with rewire's integer model; the Lava check of a netx file is
  :func:`rewire.job.runner.lava_check`.
* :func:`fan_out_rows`: per source layer, the largest number of connected synapses out of one
  of its neurons into the next layer, with the profile's ``limits.fan_out`` where it applies:
  every weight matrix fed by chip neurons, the readout's included (on Xylo a hidden neuron's
  outgoing synapses into the next hidden layer, ``weights_rec``, or into the 8 readout
  neurons, ``weights_out``; the budget does not steer the latter,
  :attr:`rewire.training.budget.SynapseBudget.fan_out_skip_last`, since 8 outputs cannot
  exceed the limit of 64, but the table shows it against the limit all the same).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rewire.ir.compiled import CompiledNetwork

__all__ = ["fan_out_rows", "xylo_check"]


def fan_out_rows(net: CompiledNetwork) -> list[dict]:
    """The fan-out of every source of ``net``'s dense layers: the input channels and each
    layer but the last.

    Returns:
        One dict per weight matrix, in order: ``source`` (``"input"`` or the layer's name),
        ``into`` (the next layer), ``max_fan_out`` (the largest count of non-zero integer
        weights in one column, i.e. out of one source neuron or channel), ``limit`` (the
        profile's ``limits.fan_out``, or ``None`` for the input channels and a profile
        without the limit) and ``within`` (bool).
    """
    limits = net.profile.limits
    rows, source = [], "input"
    for k, layer in enumerate(net.layers):
        weight = np.asarray(layer.weight_int)
        fan = int(np.count_nonzero(weight.reshape(len(weight), -1), axis=0).max()) \
            if weight.size and weight.ndim == 2 else 0
        limit = limits.fan_out if limits.fan_out and k > 0 else None
        rows.append({"source": source, "into": layer.name, "max_fan_out": fan,
                     "limit": limit, "within": limit is None or fan <= limit})
        source = layer.name
    return rows


def xylo_check(net: CompiledNetwork, path: Path, payload: np.ndarray) -> dict:
    """Run every test input of ``payload`` ``(T, N, 16)`` (integer events per channel and
    step) through XyloSim from the written specification at ``path`` and compare every
    recorded state (``Vmem``, ``Isyn``, spikes, of every neuron and step) with rewire's
    integer model (:func:`rewire.export.xylo_run.xylo_check`).

    Returns:
        :func:`rewire.export.xylo_run.compare`'s dict (``samples``, ``samples_equal``,
        ``states_compared``, ``states_equal``, ``output_spikes``, ``hidden_spikes``,
        ``steps``, ``first_mismatch``) with ``passed``, ``seconds`` and ``compared`` (at
        least one output spike and one state were compared: a check of silence proves
        nothing), or ``{"skipped": why}`` where xylosim is not installed.
    """
    from rewire.export import xylo_run

    result = xylo_run.xylo_check(net, path, payload, int(np.shape(payload)[1]))
    if "samples" in result:
        result["compared"] = bool(result["output_spikes"] > 0 and result["states_compared"] > 0)
    return result
