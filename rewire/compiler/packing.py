"""The machinery of :mod:`rewire.compiler.mapping`: layer connectivity, the first-fit decreasing
packer and the errors of a layer that does not fit one core (the whole-layer assignment and
the network-level checks are in :mod:`rewire.compiler.placement`).

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
        skips: the layer's skip connections, ``(source, first column)`` each: ``source`` the
            1-based layer whose spikes it carries (0: the input), its synapses the ``mask``
            columns from ``first column`` on, the source's neurons wide (first column ``None``
            without a mask). Their routes count in :func:`rewire.compiler.placement
            .output_routes`.
    """

    name: str
    fan_in: np.ndarray
    n_in: int
    mask: np.ndarray | None = None
    skips: tuple = ()

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
        if layer.mask is None or self.structural or not self._axons_count():
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

    def _axons_count(self) -> bool:
        """Whether a core's input axons decide what fits (an axon limit or dense storage)."""
        return bool(self.lim.axons_in_per_core) or self.lim.synapse_storage != "sparse"

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
        order = np.argsort(-layer.fan_in, kind="stable")
        if not self._axons_count():
            return self._place_counted(li, layer, order)
        where = np.empty(layer.neurons, np.int64)
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

    def _place_counted(self, li: int, layer: LayerConnectivity, order: np.ndarray) -> np.ndarray:
        """:meth:`place_split` when only neuron and synapse counts decide what fits (sparse
        storage, no axon limit): the first open core with room, found over arrays of the
        cores' room, exactly as :meth:`fits` would find it core by core."""
        lpc, sparse = self.lim.layers_per_core, not self.structural
        where = np.empty(layer.neurons, np.int64)
        room_n = np.array([c.cap_neurons - c.neurons for c in self.open], np.int64)
        room_w = np.array([c.cap_synapses - c.words for c in self.open], np.int64)
        ok = np.array([li in c.parts or not lpc or len(c.parts) < lpc for c in self.open], bool)
        for n in order:
            need = int(layer.fan_in[n]) if sparse else 0
            free = np.flatnonzero(ok & (room_n >= 1) & (room_w >= need))
            if free.size:
                ci = int(free[0])
            else:
                ci = len(self.open)
                core = self._new_core()
                if not self.fits(core, li, layer, np.array([n])):
                    raise single_neuron_error(self.p, core, layer, int(n), self.structural)
                room_n = np.append(room_n, core.cap_neurons - core.neurons)
                room_w = np.append(room_w, core.cap_synapses - core.words)
                ok = np.append(ok, True)
            self.add(self.open[ci], li, layer, np.array([n]))
            room_n[ci] -= 1
            room_w[ci] -= need
            where[n] = ci
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
