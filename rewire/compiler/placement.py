"""Network-level placement for :mod:`rewire.compiler.mapping`: whole layers matched to cores
(Hungarian method), the per-neuron limits checked before packing, the output routes counted
after it, and the error of a layer that overflows the allotted cores. See
:mod:`rewire.compiler.mapping` (and docs/mapping.md) for what is counted against which limit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from rewire.compiler.packing import CoreBin, LayerConnectivity, Packer, whole_layer_error
from rewire.errors import MappingError
from rewire.hw_profiles.profile import HardwareProfile

__all__ = ["assign_whole_layers", "check_neuron_limits", "output_routes", "too_many_cores"]


def assign_whole_layers(packer: Packer, layers: Sequence[LayerConnectivity]) -> list:
    """One layer per core, layers unsplit (DYNAP-CNN): match layers to the allotted cores with
    the Hungarian method (``scipy.optimize.linear_sum_assignment``), preferring small cores, so
    that a placement is found whenever one exists.

    Returns:
        per layer, int64 ``(out,)`` indices into ``packer.open``.

    Raises:
        MappingError: more layers than cores, a layer larger than every core, or no assignment.
    """
    from scipy.optimize import linear_sum_assignment

    p, allotted = packer.p, packer.allotted
    if len(layers) > allotted:
        extra = layers[allotted]
        more = (f" or pass --cores {len(layers)} (<= limits.cores {p.limits.cores})"
                if len(layers) <= p.limits.cores else "")
        raise MappingError(
            f"layer {extra.name}: the network has {len(layers)} layers on cores but "
            f"{p.name!r} holds one layer per core and {allotted} core(s) are allotted (over by "
            f"{len(layers) - allotted}): use fewer layers{more}", "limits.cores", extra.name,
            len(layers), allotted)
    need = [packer._need(layer) for layer in layers]
    # identical cores: any distinct ones do, so only as many as there are layers are tried
    uniform = not p.limits.core_neurons and not p.limits.core_synapses
    candidates = range(min(allotted, len(layers)) if uniform else allotted)
    ok = np.array([[k <= p.core_neurons(c) and w <= p.core_synapses(c) for c in candidates]
                   for k, w in need])
    for li, layer in enumerate(layers):
        if not ok[li].any():
            raise whole_layer_error(p, layer, need[li])
    # Prefer small cores (cost by capacity) so that large ones stay free for large layers.
    cost = np.where(ok, 0.0, 1e9) + 1e-9 * np.array(
        [p.core_neurons(c) + p.core_synapses(c) for c in candidates])[None, :]
    rows, cols = linear_sum_assignment(cost)
    if not ok[rows, cols].all():
        li = int(rows[~ok[rows, cols]][0])
        raise MappingError(
            f"layer {layers[li].name}: no assignment of the {len(layers)} layers to distinct "
            f"cores of {p.name!r} gives every layer a core large enough (limits.core_neurons / "
            f"limits.core_synapses): shrink the largest layers", "limits.core_synapses",
            layers[li].name, need[li][1], max(p.core_synapses(c) for c in candidates))
    where = []
    for li, c in sorted(zip(rows, cols), key=lambda rc: rc[1]):
        core = CoreBin(int(c), p.core_neurons(int(c)), p.core_synapses(int(c)))
        packer.open.append(core)
        packer.add(core, int(li), layers[int(li)], np.arange(layers[int(li)].neurons))
        where.append((int(li), len(packer.open) - 1))
    out = [None] * len(layers)
    for li, ci in where:
        out[li] = np.full(layers[li].neurons, ci, np.int64)
    return out


# ----------------------------------------------------------------------------- checks

def check_neuron_limits(profile: HardwareProfile, layers: Sequence[LayerConnectivity],
                         structural: bool) -> None:
    """Network-level limits: input channels, dedicated output neurons and, unless
    ``structural``, per-neuron fan-in and fan-out (synapses out of a hidden neuron).

    Raises:
        MappingError: naming the limit, the layer, the excess and the fix.
    """
    lim = profile.limits
    if lim.max_inputs and layers[0].n_in > lim.max_inputs:
        raise MappingError(
            f"layer {layers[0].name}: the network has {layers[0].n_in} inputs but "
            f"{profile.name!r} accepts {lim.max_inputs} input channels (limits.max_inputs; over "
            f"by {layers[0].n_in - lim.max_inputs}): use a data set or encoding with <= "
            f"{lim.max_inputs} input features", "limits.max_inputs", layers[0].name,
            layers[0].n_in, lim.max_inputs)
    last = layers[-1]
    if lim.output_neurons and last.neurons > lim.output_neurons:
        raise MappingError(
            f"layer {last.name}: the output layer has {last.neurons} neurons but {profile.name!r} "
            f"has {lim.output_neurons} output neurons (limits.output_neurons; over by "
            f"{last.neurons - lim.output_neurons}): use a task with <= {lim.output_neurons} "
            f"classes", "limits.output_neurons", last.name, last.neurons, lim.output_neurons)
    if structural:
        return
    for li, layer in enumerate(layers):
        worst = int(layer.fan_in.max(initial=0))
        if lim.fan_in and worst > lim.fan_in:
            raise MappingError(
                f"layer {layer.name}: a neuron has fan-in {worst} but {profile.name!r} allows "
                f"{lim.fan_in} (limits.fan_in; over by {worst - lim.fan_in}): train with "
                f"--max-fan-in {lim.fan_in}", "limits.fan_in", layer.name, worst, lim.fan_in)
        if lim.fan_out and li >= 1 and layer.mask is not None and not (
                lim.output_neurons and li == len(layers) - 1):
            out = int(layer.mask.sum(axis=0).max(initial=0))
            if out > lim.fan_out:
                src = layers[li - 1].name
                raise MappingError(
                    f"layer {src}: a neuron has {out} outgoing synapses into {layer.name} but "
                    f"{profile.name!r} allows {lim.fan_out} (limits.fan_out; over by "
                    f"{out - lim.fan_out}): train with a lower --connectivity (fan-out is not "
                    f"budgeted separately yet)", "limits.fan_out", src, out, lim.fan_out)


def _reached(layer, dest, src_neurons: int, cols: slice | None) -> dict:
    """Destination core -> bool ``(src_neurons,)``: which source neurons ``layer`` (placed
    on ``dest``) reads through the mask columns ``cols``, on that core (all of them without a
    mask: a convolution's input sets are not known per neuron)."""
    out = {}
    for c in np.unique(dest):
        if layer.mask is None or cols is None:
            out[int(c)] = np.ones(src_neurons, bool)
        else:
            out[int(c)] = layer.mask[dest == c][:, cols].any(axis=0)
    return out


def output_routes(profile: HardwareProfile, layers, placement, usage_cores) -> np.ndarray:
    """Output routes per core (index into ``usage_cores``): one per (neuron, destination core)
    pair, the destinations being the cores of the next layer the neuron feeds and those of
    every later layer it feeds through a skip connection (:attr:`LayerConnectivity.skips`;
    a core reached both ways counts once); checks ``limits.dest_cores_per_neuron``.

    Raises:
        MappingError: a neuron reaches more destination cores than allowed.
    """
    lim = profile.limits
    routes = np.zeros(len(usage_cores), np.int64)
    for li in range(len(layers) - 1):
        nxt, src = layers[li + 1], layers[li]
        # the first src.neurons columns are src's spikes; a recurrent layer's own spikes
        # and skip connections follow them
        reach = _reached(nxt, placement[li + 1], src.neurons, slice(0, src.neurons))
        via = []
        for lj in range(li + 2, len(layers)):
            for source, first in layers[lj].skips:
                if source != li + 1:
                    continue
                via.append(layers[lj].name)
                cols = None if first is None else slice(first, first + src.neurons)
                for c, hit in _reached(layers[lj], placement[lj], src.neurons, cols).items():
                    reach[c] = reach[c] | hit if c in reach else hit
        count = sum((hit.astype(np.int64) for hit in reach.values()),
                    np.zeros(src.neurons, np.int64))
        if lim.dest_cores_per_neuron and count.max(initial=0) > lim.dest_cores_per_neuron:
            worst = int(count.max())
            where = nxt.name + "".join(f" and, through a skip connection, {n}"
                                       for n in dict.fromkeys(via))
            fix = ("keep those layers on fewer cores (shrink them) or move the skip "
                   "connection" if via else f"keep {nxt.name} on fewer cores (shrink it) or "
                   f"prune each neuron's targets into one core")
            raise MappingError(
                f"layer {src.name}: neuron {int(count.argmax())} reaches {worst} cores of "
                f"{where} but {profile.name!r} allows {lim.dest_cores_per_neuron} "
                f"(limits.dest_cores_per_neuron; over by {worst - lim.dest_cores_per_neuron}): "
                f"{fix}", "limits.dest_cores_per_neuron", src.name, worst,
                lim.dest_cores_per_neuron)
        np.add.at(routes, placement[li], count)
    return routes


def too_many_cores(profile, li, layer, packer, before, allotted, structural) -> MappingError:
    """The error for layer ``li`` overflowing the allotted cores: how many cores it needs alone,
    the binding limit (neurons or synapses), how many cores were left, the excess and the fix
    (``--cores``, ``--hidden`` or ``--connectivity``)."""
    lim = profile.limits
    used_before = min(before, allotted)
    # Count how many cores the layer would need alone, on fresh cores.
    alone = Packer(profile, packer.layers, lim.cores, structural)
    (alone.place_split if lim.split_layers else alone.place_whole)(li, layer)
    need, left = len(alone.open), allotted - used_before
    total = len(packer.open) if lim.split_layers else used_before + need
    over = total - allotted
    k_neurons = math.ceil(layer.neurons / lim.neurons_per_core)
    words = int(layer.fan_in.sum())
    if k_neurons >= need or lim.synapse_storage != "sparse":
        binding = (f"{layer.neurons} neurons at limits.neurons_per_core = "
                   f"{lim.neurons_per_core}")
        fix = f"shrink the layer to <= {max(left, 0) * lim.neurons_per_core} neurons (--hidden)"
        limit = "limits.neurons_per_core"
    else:
        binding = (f"{words} synapses at limits.synapses_per_core = "
                   f"{profile.core_synapses(0)}")
        dense = layer.neurons * layer.n_in
        x = max(left, 0) * profile.core_synapses(0) / dense if dense else 0.0
        fix = f"train with --connectivity <= {x:.4g}" if x > 0 else "shrink the network"
        limit = "limits.synapses_per_core"
    cores_fix = (f"pass --cores {total} (<= limits.cores {lim.cores}) or "
                 if total <= lim.cores and allotted < lim.cores else "")
    return MappingError(
        f"layer {layer.name} needs {need} cores ({binding}); {profile.name!r} allows {allotted} "
        f"cores in total and {left} are left after earlier layers (over by {over}): "
        f"{cores_fix}{fix}", limit, layer.name, total, allotted)


