r"""NeuroBench-style metrics of a compiled network, counted on rewire's own integer model.

The definitions follow NeuroBench 2.3.0 (``pip download neurobench==2.3.0``; files under
``neurobench/metrics/``), applied to the chip's integer simulation
(:mod:`rewire.compiler.simulate`) instead of a float PyTorch module. Per sample means are
over the ``B`` samples of the payload; a "call" below is one time step of one layer.

- **Synaptic operations** (``workload/synaptic_operations.py``, ``utils/layers/macs.py``):
  per call, the number of (synapse, input) pairs whose weight *and* input are non-zero,
  :math:`\sum_{j,i} [W_{ji} \ne 0]\,[s_i \ne 0]` (a conv: the same over every output
  position), bias excluded. A layer's operations are ACs when its input holds only
  :math:`\{-1, 0, 1\}` (binary spikes) and MACs otherwise (graded payloads: the
  ``current``-encoded first layer). ``Dense`` counts every weight entry, zeros included,
  against an all-ones input, once per call.
- **Activation sparsity** (``workload/activation_sparsity.py`` and
  ``activation_sparsity_by_layer.py``): the share of zero outputs over every neuron, time
  step and sample of the spiking layers, total and per layer.
- **Membrane updates** (``workload/membrane_updates.py``): every neuron of a layer at its
  first step, then each (step, sample, neuron) whose membrane voltage ``v`` after the step
  differs from ``v`` before it.
- **Footprint** (``static/footprint.py``): bytes of a module's parameters and buffers. rewire
  counts the float32 module NeuroBench would see: every weight entry of every layer (pruned
  zeros included, as ``numel`` counts them) at 4 bytes. Also ``chip_weight_bytes``: the
  connected synapses at the profile's weight width, what the chip stores.
- **Connection sparsity** (``static/connection_sparsity.py``): zero weights over all weights
  of the connection layers (Linear/Conv), rounded to 4 decimals there; unrounded here.

Where rewire differs (docs/metrics.md lists the measured effect): the classification AC/MAC
is decided per layer over the whole run (NeuroBench decides per call, on the whole batch); a
recurrent layer adds its recurrent synapses' operations (NeuroBench 2.3 counts no recurrent
spiking layer); a sum pool is counted as the conv the chip runs (NeuroBench counts only
Linear/Conv modules); a leaky-integrator readout has no activations (its output is ``v``);
weights and inputs are the chip's integers, so a float weight that quantizes to 0 is a
pruned synapse here and a float input that rounds to payload 0 sends no event.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.compiler.simulate import NumpyOps, synaptic_input
from rewire.hw_profiles.sections import EnergyModel
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledLayer
from rewire.ir.input_layout import flatten_samples

__all__ = ["workload_metrics", "static_metrics", "network_metrics", "energy_estimate"]

FLOAT32_BYTES = 4


def _binary(layer: CompiledLayer, all_ones: bool = False) -> CompiledLayer:
    """The layer with weights 1 where non-zero (every entry when ``all_ones``), as
    NeuroBench's ``make_binary_copy``."""
    w = layer.weight_int
    ones = np.ones_like(w) if all_ones else (w != 0).astype(w.dtype)
    return dataclasses.replace(layer, weight_int=ones)


def _ops(layer: CompiledLayer, active: np.ndarray, binary: CompiledLayer) -> int:
    """Effective operations of one call batch: non-zero input ``active`` ``(B, n_in)`` 0/1
    times non-zero weights, summed over outputs and samples."""
    if isinstance(layer, CompiledConv):
        return int(synaptic_input(binary, active).sum())
    fan_out = binary.weight_int.sum(0).astype(np.int64)      # (n_in,)
    return int(active.sum(0) @ fan_out)


def workload_metrics(net: CompiledNetwork, payload: np.ndarray) -> dict:
    """Synaptic operations, activation sparsity and membrane updates of ``net`` on
    ``payload`` (module docstring: NeuroBench 2.3 definitions), one integer run.

    The run is :func:`rewire.compiler.simulate.simulate` step for step (no Lava delay),
    counting as it goes instead of keeping the spike trains.

    Args:
        net: the compiled network.
        payload: integer input ``(T, B, n_in)`` (:func:`rewire.compiler.simulate.encode_input`)
            or ``(T, B, *net.input_shape)``.

    Returns:
        ``{"samples", "synaptic_operations": {"effective_macs", "effective_acs", "dense"},
        "activation_sparsity", "membrane_updates", "layers": [{"name", "input": "spikes"|
        "graded", "effective_ops", "dense_ops", "activation_sparsity" (None for a
        leaky-integrator readout), "membrane_updates", "spikes"}]}``; operations and
        updates are means per sample (floats).

    Raises:
        ValueError: ``payload`` is in neither layout, ``(T, B, n_in)`` with ``n_in`` the
            first layer's inputs or ``(T, B, *net.input_shape)``, or has ``B = 0``.
    """
    try:
        payload = flatten_samples(np.asarray(payload), net.sizes[0], net.input_shape, 2)
    except ValueError:
        raise ValueError(f"payload must have shape (T, B, {net.sizes[0]}) or (T, B, "
                         f"*{net.input_shape}), got {np.shape(payload)}") from None
    if payload.shape[1] < 1:
        raise ValueError(f"payload must have B >= 1 samples, got {payload.shape}")
    steps, batch = payload.shape[:2]
    ops = NumpyOps(net.profile.neuron)
    layers = net.layers
    binary = [_binary(l) for l in layers]
    per_call_dense = [int(synaptic_input(_binary(l, True), np.ones((1, l.shape[1]),
                                                                   np.int64)).sum())
                      + (l.weight_rec_int.size if l.recurrent else 0) for l in layers]
    rec_fan_out = [(l.weight_rec_int != 0).sum(0).astype(np.int64) if l.recurrent else None
                   for l in layers]
    count = {k: [0] * len(layers) for k in ("ops", "updates", "spikes", "active")}
    graded = [False] * len(layers)
    u = [np.zeros((batch, l.shape[0]), np.int64) for l in layers]
    v = [np.zeros((batch, l.shape[0]), np.int64) for l in layers]
    z_prev = [np.zeros((batch, l.shape[0]), np.int64) for l in layers]
    for t in range(steps):
        s = payload[t].astype(np.int64)
        for k, layer in enumerate(layers):
            active = (s != 0).astype(np.int64)
            graded[k] = graded[k] or bool(np.any(np.abs(s) > 1))
            count["ops"][k] += _ops(layer, active, binary[k])
            a = synaptic_input(layer, s)
            if layer.recurrent:
                count["ops"][k] += int(z_prev[k].sum(0) @ rec_fan_out[k])
                a = a + z_prev[k] @ layer.weight_rec_int.astype(np.int64).T
            u[k], v_new, _, fire = layer.chip.int_step(ops, u[k], v[k], a, z_prev[k])
            count["updates"][k] += v_new.size if t == 0 else int((v_new != v[k]).sum())
            v[k] = v_new
            if fire is not None:
                s = z_prev[k] = fire.astype(np.int64)
                count["spikes"][k] += int(s.sum())  # spike events (counts on Xylo)
                count["active"][k] += int(np.count_nonzero(s))  # non-zero activations
    rows, macs, acs, dense, nnz, size = [], 0, 0, 0, 0, 0
    for k, layer in enumerate(layers):
        entries = steps * batch * layer.shape[0]
        # NeuroBench counts non-zero activations; a neuron sending several spikes in one
        # step (Xylo's hidden layers) is one non-zero activation
        sparsity = 1.0 - count["active"][k] / entries if layer.spiking else None
        if layer.spiking:
            nnz, size = nnz + count["active"][k], size + entries
        if graded[k]:
            macs += count["ops"][k]
        else:
            acs += count["ops"][k]
        dense += per_call_dense[k] * steps * batch
        rows.append({"name": layer.name, "input": "graded" if graded[k] else "spikes",
                     "effective_ops": count["ops"][k] / batch,
                     "dense_ops": per_call_dense[k] * steps,
                     "activation_sparsity": sparsity,
                     "membrane_updates": count["updates"][k] / batch,
                     "spikes": count["spikes"][k] / batch if layer.spiking else None})
    return {"samples": int(batch),
            "synaptic_operations": {"effective_macs": macs / batch, "effective_acs": acs / batch,
                                    "dense": dense / batch},
            "activation_sparsity": 1.0 - nnz / size if size else None,
            "membrane_updates": sum(count["updates"]) / batch,
            "layers": rows}


def static_metrics(net: CompiledNetwork) -> dict:
    """Footprint and connection sparsity of ``net`` (module docstring: NeuroBench 2.3
    ``Footprint`` and ``ConnectionSparsity``), from its integer weights.

    Returns:
        ``{"footprint_bytes", "chip_weight_bytes", "connection_sparsity",
        "weights": all weight entries, "nonzero_weights"}``: ``footprint_bytes`` = 4 bytes
        (float32) per weight entry, zeros included, recurrent weights too;
        ``chip_weight_bytes`` = connected synapses times ``weights.bits`` / 8.
    """
    entries = nonzero = 0
    for layer in net.layers:
        mats = [layer.weight_int] + ([layer.weight_rec_int] if layer.recurrent else [])
        entries += sum(int(m.size) for m in mats)
        nonzero += sum(int(np.count_nonzero(m)) for m in mats)
    return {"footprint_bytes": FLOAT32_BYTES * entries,
            "chip_weight_bytes": nonzero * net.profile.weights.bits / 8,
            "connection_sparsity": 1.0 - nonzero / entries if entries else 0.0,
            "weights": entries, "nonzero_weights": nonzero}


def energy_estimate(net: CompiledNetwork, workload: dict, energy: EnergyModel) -> dict:
    r"""A *modelled* energy per sample from :func:`workload_metrics` and the profile's
    published per-event figures (``[energy]``; each figure's source is in the profile's
    ``[sources]``), in the event-count model of Davies et al., IEEE Micro 2018 (Table 1):

    .. math::
        E = N_\mathrm{syn} E_\mathrm{syn} + N_\mathrm{act} E_\mathrm{act}
            + (N T - N_\mathrm{act}) E_\mathrm{idle} + N_\mathrm{spk} E_\mathrm{spk}

    with :math:`N_\mathrm{syn}` the effective synaptic operations (ACs and MACs alike: the
    chip spends one synaptic op per synapse an event reaches, whatever its payload),
    :math:`N_\mathrm{act}` the membrane updates, :math:`N T` every neuron update of the run
    (all neurons are updated every step) and :math:`N_\mathrm{spk}` the spikes sent. Input
    delivery, routing hops between tiles, static power and the host are not counted, so the
    figure is a lower bound of the modelled events, never a measurement.

    Returns:
        ``{"label": "modelled", "nj_per_sample", "parts_nj": {...}, "constants_pj", "note"}``,
        or ``{"label": "modelled", "nj_per_sample": None, "reason": energy.note}`` when the
        profile has no published figure (no number is made up).
    """
    if not energy.published:
        return {"label": "modelled", "nj_per_sample": None, "reason": energy.note}
    ops = workload["synaptic_operations"]
    updates = workload["membrane_updates"]
    all_updates = sum(l.shape[0] for l in net.layers) * net.steps
    spikes = sum(l["spikes"] or 0.0 for l in workload["layers"])
    parts = {"synaptic_ops": (ops["effective_acs"] + ops["effective_macs"])
             * energy.synaptic_op_pj,
             "active_neuron_updates": updates * energy.neuron_update_active_pj,
             "idle_neuron_updates": max(all_updates - updates, 0.0)
             * energy.neuron_update_inactive_pj,
             "spikes": spikes * energy.spike_pj}
    return {"label": "modelled", "nj_per_sample": sum(parts.values()) / 1000.0,
            "parts_nj": {k: v / 1000.0 for k, v in parts.items()},
            "constants_pj": {k: v for k, v in dataclasses.asdict(energy).items() if k != "note"},
            "note": energy.note}


def network_metrics(net: CompiledNetwork, payload: np.ndarray) -> dict:
    """:func:`static_metrics` and :func:`workload_metrics` in one dict, labelled with the
    standard they follow (``"definitions": "NeuroBench 2.3.0"``)."""
    return {"definitions": "NeuroBench 2.3.0 (neurobench/metrics/), counted on the integer "
                           "chip model; docs/metrics.md",
            **static_metrics(net), **workload_metrics(net, payload)}
