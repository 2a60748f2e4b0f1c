"""The machinery of :mod:`rewire.compiler.mapping`: layer connectivity, the first-fit decreasing
packer, the whole-layer assignment, the network-level checks and the overflow errors.

See :mod:`rewire.compiler.mapping` for what is counted against which limit and why the packing
is what it is; this module holds the parts, :func:`rewire.compiler.mapping.map_layers` puts
them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rewire.errors import MappingError
from rewire.hw_profiles.profile import HardwareProfile




@dataclass(frozen=True)
class LayerConnectivity:
    """What the mapper needs from one layer.

    Attributes:
        name: layer name (``"fc1"``).
        fan_in: int64 ``(out,)``: connected synapses into each neuron.
        n_in: inputs of the layer (neurons of the previous layer, or input channels).
        mask: bool ``(out, n_in)`` connected synapses, or ``None`` when the input sets are not
            known per neuron (convolutions): every neuron is then assumed to use all inputs.
    """

    name: str
    fan_in: np.ndarray
    n_in: int
    mask: np.ndarray | None = None

    @classmethod
    def from_mask(cls, name: str, mask: np.ndarray) -> "LayerConnectivity":
        """From a ``(out, in)`` connectivity (any array; non-zero = connected)."""
        mask = np.asarray(mask) != 0
        return cls(name, mask.sum(axis=1).astype(np.int64), mask.shape[1], mask)

    @classmethod
    def dense(cls, name: str, n_out: int, n_in: int) -> "LayerConnectivity":
        """A layer whose synapses are not known yet (before training): no mask, fan-in 0."""
        return cls(name, np.zeros(n_out, np.int64), n_in, None)

    @property
    def neurons(self) -> int:
        """Neurons of the layer."""
        return len(self.fan_in)


# ----------------------------------------------------------------------------- packing

class CoreBin:
    """One core being filled (mutable; :func:`rewire.compiler.mapping.map_layers` turns it into
    a ``CoreUsage``).

    Attributes:
        core: physical core number; cap_neurons, cap_synapses: its limits.
        neurons, words, connected: neurons, synapse words and connected synapses placed so far.
        parts: layer index -> ``[neurons of that layer here, bool (n_in,) union of their
            connected inputs or None]``.
    """

    def __init__(self, core: int, neurons: int, synapses: int):
        self.core, self.cap_neurons, self.cap_synapses = core, neurons, synapses
        self.neurons, self.words, self.connected = 0, 0, 0
        self.parts: dict[int, list] = {}  # layer index -> [count, axon union or None]



def dense_words(storage: str, n_in: int, k: int, axons: int) -> int:
    """Synapse words of ``k`` neurons of one layer on one core under a dense storage rule:
    ``axons * k`` (``dense``, a crossbar of the used input axons) or ``n_in * 2**ceil(log2 k)``
    (``dense_pow2``, DYNAP-CNN kernel memory of a 1x1 convolution, sinabs dynapcnn_layer.py).

    Example:
        >>> dense_words("dense_pow2", 64, 200, 64), dense_words("dense", 64, 200, 30)
        (16384, 6000)
    """
    if storage == "dense":
        return axons * k
    return n_in * (1 << math.ceil(math.log2(k))) if k else 0  # dense_pow2


class Packer:
    """First-fit decreasing over the profile's cores (:mod:`rewire.compiler.mapping`).

    ``open`` lists the cores opened so far, in opening order; cores past ``limits.cores`` are
    still opened (with the uniform capacity) so that an overflow error can say how many would
    be needed. ``structural=True`` ignores what pruning can fix (sparse and crossbar memory,
    axons).
    """

    def __init__(self, profile: HardwareProfile, layers: Sequence[LayerConnectivity],
                 allotted: int, structural: bool):
        self.p, self.lim, self.layers = profile, profile.limits, list(layers)
        self.allotted, self.structural = allotted, structural
        self.open: list[CoreBin] = []
        self.next_core = 0

    def _new_core(self) -> CoreBin:
        c = self.next_core
        self.next_core += 1
        if c < self.lim.cores:
            core = CoreBin(c, self.p.core_neurons(c), self.p.core_synapses(c))
        else:  # beyond the chip: keep counting how many would be needed, for the error
            core = CoreBin(c, self.lim.neurons_per_core, self.p.core_synapses(0))
        self.open.append(core)
        return core

    def _axons(self, part, layer: LayerConnectivity) -> int:
        return layer.n_in if part[1] is None else int(part[1].sum())

    def _part_words(self, layer: LayerConnectivity, k: int, axons: int) -> int:
        storage = self.lim.synapse_storage
        if storage == "sparse" or (self.structural and storage == "dense"):
            return 0
        return dense_words(storage, layer.n_in, k, axons)

    def fits(self, core: CoreBin, li: int, layer: LayerConnectivity, idx: np.ndarray) -> bool:
        """Could neurons ``idx`` of layer ``li`` join ``core`` under every per-core limit?"""
        lim = self.lim
        part = core.parts.get(li)
        if part is None and lim.layers_per_core and len(core.parts) >= lim.layers_per_core:
            return False
        k_old = part[0] if part else 0
        if core.neurons + len(idx) > core.cap_neurons:
            return False
        if layer.mask is None or self.structural:
            union, axons_new = None, layer.n_in
        else:
            union = layer.mask[idx].any(axis=0)
            if part is not None and part[1] is not None:
                union |= part[1]
            axons_new = int(union.sum())
        axons_old = self._axons(part, layer) if part else 0
        if lim.axons_in_per_core and not self.structural:
            total = sum(self._axons(q, self.layers[j]) for j, q in core.parts.items())
            if total - axons_old + axons_new > lim.axons_in_per_core:
                return False
        words = core.words - (self._part_words(layer, k_old, axons_old) if part else 0) \
            + self._part_words(layer, k_old + len(idx), axons_new)
        if not self.structural and lim.synapse_storage == "sparse":
            words += int(layer.fan_in[idx].sum())
        return words <= core.cap_synapses

    def add(self, core: CoreBin, li: int, layer: LayerConnectivity, idx: np.ndarray) -> None:
        part = core.parts.setdefault(li, [0, None])
        k_old, axons_old = part[0], self._axons(part, layer) if part[0] else 0
        if layer.mask is not None and not self.structural:
            union = layer.mask[idx].any(axis=0)
            part[1] = union if part[1] is None else (part[1] | union)
        core.words -= self._part_words(layer, k_old, axons_old) if k_old else 0
        part[0] += len(idx)
        core.words += self._part_words(layer, part[0], self._axons(part, layer))
        connected = int(layer.fan_in[idx].sum())
        if not self.structural and self.lim.synapse_storage == "sparse":
            core.words += connected
        core.connected += connected
        core.neurons += len(idx)

    def place_split(self, li: int, layer: LayerConnectivity) -> np.ndarray:
        """FFD placement of one layer's neurons; returns each neuron's index into ``open``."""
        if (layer.mask is None or self.structural) and (layer.fan_in == layer.fan_in[0]).all():
            return self._place_equal(li, layer)
        where = np.empty(layer.neurons, np.int64)
        order = np.argsort(-layer.fan_in, kind="stable")
        first = 0  # cores full for this layer's (decreasing) neurons are skipped
        for n in order:
            idx = np.array([n])
            for ci in range(first, len(self.open)):
                if self.fits(self.open[ci], li, layer, idx):
                    break
            else:
                ci = len(self.open)
                core = self._new_core()
                if not self.fits(core, li, layer, idx):
                    raise single_neuron_error(self.p, core, layer, int(n), self.structural)
            self.add(self.open[ci], li, layer, idx)
            where[n] = ci
            if self.open[first].neurons >= self.open[first].cap_neurons:
                first = min(first + 1, len(self.open))
        return where

    def _place_equal(self, li: int, layer: LayerConnectivity) -> np.ndarray:
        """FFD for interchangeable neurons (same fan-in, no per-neuron inputs): each core in
        turn takes the largest run that fits (found by doubling, then bisection), which is
        exactly what neuron-by-neuron first fit would place there."""
        where = np.empty(layer.neurons, np.int64)
        pos, ci = 0, 0
        while pos < layer.neurons:
            if ci == len(self.open):
                self._new_core()
            core = self.open[ci]
            lo, hi = 0, 1  # fits(lo) holds; find the largest k <= remaining that fits
            rest = layer.neurons - pos
            while hi <= rest and self.fits(core, li, layer, np.arange(pos, pos + hi)):
                lo, hi = hi, hi * 2
            hi = min(hi, rest + 1)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if self.fits(core, li, layer, np.arange(pos, pos + mid)) \
                    else (lo, mid)
            if lo == 0 and ci == len(self.open) - 1 and core.neurons == 0:
                raise single_neuron_error(self.p, core, layer, pos, self.structural)
            if lo:
                self.add(core, li, layer, np.arange(pos, pos + lo))
                where[pos:pos + lo] = ci
                pos += lo
            ci += 1
        return where

    def place_whole(self, li: int, layer: LayerConnectivity) -> np.ndarray:
        """First-fit placement of a layer that may not be split."""
        idx = np.arange(layer.neurons)
        for ci, core in enumerate(self.open):
            if self.fits(core, li, layer, idx):
                break
        else:
            ci = len(self.open)
            core = self._new_core()
            while not self.fits(core, li, layer, idx) and self.next_core < self.lim.cores:
                self.open.pop()
                core = self._new_core()
            if not self.fits(core, li, layer, idx):
                raise whole_layer_error(self.p, layer, self._need(layer))
        self.add(self.open[ci], li, layer, idx)
        return np.full(layer.neurons, ci, np.int64)

    def _need(self, layer: LayerConnectivity) -> tuple[int, int]:
        k = layer.neurons
        if self.structural and self.lim.synapse_storage != "dense_pow2":
            return k, 0
        return k, self._part_words(layer, k, layer.n_in) or int(layer.fan_in.sum())


def single_neuron_error(profile, core, layer, n, structural) -> MappingError:
    """The error for neuron ``n`` of ``layer`` that does not fit even an empty core."""
    lim = profile.limits
    fan = int(layer.fan_in[n])
    if lim.synapse_storage == "sparse" and fan > core.cap_synapses:
        return MappingError(
            f"layer {layer.name}: neuron {n} has {fan} synapses but a core of {profile.name!r} "
            f"stores {core.cap_synapses} (limits.synapses_per_core; over by "
            f"{fan - core.cap_synapses}): train with --max-fan-in {core.cap_synapses}",
            "limits.synapses_per_core", layer.name, fan, core.cap_synapses)
    axons = layer.n_in if layer.mask is None else int(layer.mask[n].sum())
    if lim.axons_in_per_core and axons > lim.axons_in_per_core:
        return MappingError(
            f"layer {layer.name}: neuron {n} has {axons} input axons but a core of "
            f"{profile.name!r} accepts {lim.axons_in_per_core} (limits.axons_in_per_core; over by "
            f"{axons - lim.axons_in_per_core}): train with --max-fan-in {lim.axons_in_per_core}",
            "limits.axons_in_per_core", layer.name, axons, lim.axons_in_per_core)
    return MappingError(
        f"layer {layer.name}: neuron {n} does not fit an empty core of {profile.name!r} "
        f"(limits.synapses_per_core = {core.cap_synapses}, storage {lim.synapse_storage!r}): "
        f"shrink the layer's inputs or train with a lower --max-fan-in",
        "limits.synapses_per_core", layer.name, fan, core.cap_synapses)


def _largest_core(profile) -> tuple[int, int]:
    """(neurons, synapse words) of the largest core; O(1) when the cores are uniform, so the
    cost follows the cores used, not the cores the chip has."""
    lim = profile.limits
    n_cores = range(lim.cores) if lim.core_neurons else range(1)
    s_cores = range(lim.cores) if lim.core_synapses else range(1)
    return (max(profile.core_neurons(c) for c in n_cores),
            max(profile.core_synapses(c) for c in s_cores))


def whole_layer_error(profile, layer, need) -> MappingError:
    """The error for an unsplittable layer larger than the largest core; ``need`` is
    ``(neurons, synapse words)``."""
    neurons, words = need
    biggest_n, biggest_s = _largest_core(profile)
    if neurons > biggest_n:
        return MappingError(
            f"layer {layer.name} needs {neurons} neurons on one core (limits.split_layers = "
            f"false) but the largest core of {profile.name!r} holds {biggest_n} "
            f"(limits.neurons_per_core; over by {neurons - biggest_n}): shrink the layer "
            f"(--hidden) to <= {biggest_n}", "limits.neurons_per_core", layer.name, neurons,
            biggest_n)
    return MappingError(
        f"layer {layer.name} needs {words} synapse words on one core (storage "
        f"{profile.limits.synapse_storage!r}, limits.split_layers = false) but the largest core of "
        f"{profile.name!r} holds {biggest_s} (limits.synapses_per_core; over by "
        f"{words - biggest_s}): shrink the layer or its inputs (--hidden)",
        "limits.synapses_per_core", layer.name, words, biggest_s)


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


def output_routes(profile: HardwareProfile, layers, placement, usage_cores) -> np.ndarray:
    """Output routes per core (index into ``usage_cores``): one per (neuron, destination core)
    pair; checks ``limits.dest_cores_per_neuron``.

    Raises:
        MappingError: a neuron reaches more destination cores than allowed.
    """
    lim = profile.limits
    routes = np.zeros(len(usage_cores), np.int64)
    for li in range(len(layers) - 1):
        nxt, src = layers[li + 1], layers[li]
        dest = placement[li + 1]
        cores_next = np.unique(dest)
        if nxt.mask is None:
            count = np.full(src.neurons, len(cores_next), np.int64)
        else:
            count = np.zeros(src.neurons, np.int64)
            for c in cores_next:
                count += nxt.mask[dest == c].any(axis=0)
        if lim.dest_cores_per_neuron and count.max(initial=0) > lim.dest_cores_per_neuron:
            worst = int(count.max())
            raise MappingError(
                f"layer {src.name}: neuron {int(count.argmax())} reaches {worst} cores of "
                f"{nxt.name} but {profile.name!r} allows {lim.dest_cores_per_neuron} "
                f"(limits.dest_cores_per_neuron; over by {worst - lim.dest_cores_per_neuron}): "
                f"keep {nxt.name} on fewer cores (shrink it) or prune each neuron's targets "
                f"into one core", "limits.dest_cores_per_neuron", src.name, worst,
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


