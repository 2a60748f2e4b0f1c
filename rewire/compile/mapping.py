r"""Core mapping: place every neuron and its fan-in synapses on the chip's cores.

Each neuron of each layer is placed on exactly one core. A core ``c`` obeys, for the
profile's :class:`~rewire.hw_profiles.profile.Limits` (0 = no limit):

* **neurons**: neurons on ``c`` <= ``core_neurons(c)``;
* **synapses**: synapse words charged to ``c`` <= ``core_synapses(c)``. A core stores the fan-in
  synapses of its neurons, charged by ``limits.synapse_storage``: ``sparse`` charges one word
  per connected synapse; ``dense`` charges a crossbar, (distinct input axons the layer's part
  uses) x (its neurons); ``dense_pow2`` charges DYNAP-CNN kernel memory,
  :math:`C_\mathrm{in} \cdot 2^{\lceil \log_2 k \rceil}` for ``k`` neurons of a dense layer
  (sinabs ``dynapcnn_layer.py``, a 1x1 convolution);
* **fan-in**: distinct source neurons (input axons) feeding ``c`` <= ``axons_in_per_core``;
* **fan-out**: output routes of ``c``, one per (neuron, destination core) pair, <=
  ``axons_out_per_core``; per neuron, destination cores <= ``dest_cores_per_neuron`` and
  outgoing synapses <= ``fan_out``; per neuron, connected inputs <= ``fan_in``;
* **sharing**: at most ``layers_per_core`` layers per core (0 = any), and a layer stays on one
  core when ``split_layers`` is false.

Packing minimises cores with first-fit decreasing (FFD, Johnson 1974): the neurons of a layer
are taken in order of decreasing fan-in and each goes to the first open core (in opening
order) that still has room for it under every limit; only when none has room is a new core
opened. FFD uses at most :math:`\tfrac{11}{9}\mathrm{OPT} + \tfrac{6}{9}` cores (Dósa 2007), and
exactly the optimum :math:`\lceil \sum s / C \rceil` when the binding sizes divide each other
(Coffman, Garey & Johnson 1987), e.g. neuron counts alone or power-of-two fan-ins. When layers
may not be split and each core holds one layer (DYNAP-CNN), layers are matched to the
heterogeneous cores by an assignment (Hungarian method, ``scipy.optimize.linear_sum_assignment``),
which finds a placement whenever one exists. Dedicated output neurons (Xylo's readout,
``limits.output_neurons``) take the last layer outside the cores.

Any overflow raises :class:`MappingError` (a ``CompileError``) naming the limit, the layer, by
how much it is exceeded and the option that fixes it, before any file is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rewire.compile.quantize import CompileError
from rewire.hw_profiles.profile import HardwareProfile

if TYPE_CHECKING:  # pragma: no cover
    from rewire.compile.network import CompiledLayer

MAPPING_VERSION = 1
OUTPUT_CORE = -1  # ``CoreUsage.core`` of the dedicated output neurons
LIMIT_KEYS = ("neurons", "synapses", "fan_in", "fan_out")


class MappingError(CompileError):
    """The network does not fit the chip's cores.

    Attributes:
        limit: the profile field that overflows (``"limits.neurons_per_core"``, ...).
        layer: the layer that does not fit (``""`` when the whole network is meant).
        needed, allowed: the amount needed and the amount the limit allows.
    """

    def __init__(self, message: str, limit: str, layer: str, needed: int, allowed: int):
        super().__init__(message)
        self.limit, self.layer, self.needed, self.allowed = limit, layer, needed, allowed


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


@dataclass(frozen=True)
class CoreUsage:
    """What one core holds and how full it is.

    Attributes:
        core: physical core number (0-based); ``OUTPUT_CORE`` (-1) for the dedicated output
            neurons.
        layers: ``{layer name: neurons of that layer here}``.
        neurons: neurons on the core.
        synapses: synapse words charged (see the module docstring).
        connected: connected synapses into the core's neurons.
        fan_in: distinct input axons (source neurons) feeding the core.
        fan_out: output routes, one per (neuron, destination core) pair.
        capacity: the core's limit for each of ``neurons, synapses, fan_in, fan_out``
            (0 = no limit).
    """

    core: int
    layers: dict
    neurons: int
    synapses: int
    connected: int
    fan_in: int
    fan_out: int
    capacity: dict

    def utilisation(self) -> dict:
        """``{limit: used / capacity}`` for each of ``neurons, synapses, fan_in, fan_out``;
        ``None`` where the chip sets no limit."""
        return {k: (getattr(self, k) / self.capacity[k] if self.capacity[k] else None)
                for k in LIMIT_KEYS}

    def to_dict(self) -> dict:
        """JSON-ready form (one entry of ``cores.json``)."""
        return {"core": "output" if self.core == OUTPUT_CORE else self.core,
                "layers": dict(self.layers), "neurons": self.neurons,
                "synapses": self.synapses, "connected_synapses": self.connected,
                "fan_in": self.fan_in, "fan_out": self.fan_out,
                "limits": dict(self.capacity), "utilisation": self.utilisation()}


@dataclass(frozen=True)
class CoreMapping:
    """Where every neuron sits: the result of :func:`map_layers`.

    Attributes:
        usage: :class:`CoreUsage` of every core used, in opening order (the output block last).
        placement: per layer, int64 ``(out,)``: index into ``usage`` of each neuron's core.
        layer_names: layer names, input side first.
        neurons_per_layer, synapses_per_layer: neurons and connected synapses of each layer.
        allotted: cores the network was allowed (``--cores``, default the whole chip).
        profile: name of the profile mapped to.
    """

    usage: tuple
    placement: tuple
    layer_names: tuple
    neurons_per_layer: tuple
    synapses_per_layer: tuple
    allotted: int
    profile: str = ""
    algorithm: str = field(default="first-fit decreasing")

    @property
    def cores(self) -> int:
        """Physical cores used (the dedicated output neurons are not a core)."""
        return sum(1 for u in self.usage if u.core != OUTPUT_CORE)

    @property
    def cores_per_layer(self) -> tuple[int, ...]:
        """Cores each layer's neurons occupy (a core shared by two layers counts for both)."""
        return tuple(len(np.unique(p)) for p in self.placement)

    def to_dict(self) -> dict:
        """The ``cores.json`` document."""
        return {"mapping_version": MAPPING_VERSION, "profile": self.profile,
                "algorithm": self.algorithm, "cores_used": self.cores,
                "cores_allotted": self.allotted,
                "layers": [{"name": n, "neurons": int(k), "synapses": int(s),
                            "cores": sorted({_core_label(self.usage[i].core)
                                             for i in np.unique(p)}, key=str)}
                           for n, k, s, p in zip(self.layer_names, self.neurons_per_layer,
                                                 self.synapses_per_layer, self.placement)],
                "cores": [u.to_dict() for u in self.usage]}


def _core_label(core: int):
    return "output" if core == OUTPUT_CORE else int(core)


# ----------------------------------------------------------------------------- packing

class _Core:
    """A core being filled (mutable; becomes a :class:`CoreUsage`)."""

    def __init__(self, core: int, neurons: int, synapses: int):
        self.core, self.cap_neurons, self.cap_synapses = core, neurons, synapses
        self.neurons, self.words, self.connected = 0, 0, 0
        self.parts: dict[int, list] = {}  # layer index -> [count, axon union or None]



def _dense_words(storage: str, n_in: int, k: int, axons: int) -> int:
    """Synapse words of ``k`` neurons of one layer on one core under a dense storage rule."""
    if storage == "dense":
        return axons * k
    return n_in * (1 << math.ceil(math.log2(k))) if k else 0  # dense_pow2


class _Packer:
    """First-fit decreasing over the profile's cores (see the module docstring)."""

    def __init__(self, profile: HardwareProfile, layers: Sequence[LayerConnectivity],
                 allotted: int, structural: bool):
        self.p, self.lim, self.layers = profile, profile.limits, list(layers)
        self.allotted, self.structural = allotted, structural
        self.open: list[_Core] = []
        self.next_core = 0

    def _new_core(self) -> _Core:
        c = self.next_core
        self.next_core += 1
        if c < self.lim.cores:
            core = _Core(c, self.p.core_neurons(c), self.p.core_synapses(c))
        else:  # beyond the chip: keep counting how many would be needed, for the error
            core = _Core(c, self.lim.neurons_per_core, self.p.core_synapses(0))
        self.open.append(core)
        return core

    def _axons(self, part, layer: LayerConnectivity) -> int:
        return layer.n_in if part[1] is None else int(part[1].sum())

    def _part_words(self, layer: LayerConnectivity, k: int, axons: int) -> int:
        storage = self.lim.synapse_storage
        if storage == "sparse" or (self.structural and storage == "dense"):
            return 0
        return _dense_words(storage, layer.n_in, k, axons)

    def fits(self, core: _Core, li: int, layer: LayerConnectivity, idx: np.ndarray) -> bool:
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

    def add(self, core: _Core, li: int, layer: LayerConnectivity, idx: np.ndarray) -> None:
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
                    raise _single_neuron_error(self.p, core, layer, int(n), self.structural)
            self.add(self.open[ci], li, layer, idx)
            where[n] = ci
            if self.open[first].neurons >= self.open[first].cap_neurons:
                first = min(first + 1, len(self.open))
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
                raise _whole_layer_error(self.p, layer, self._need(layer))
        self.add(self.open[ci], li, layer, idx)
        return np.full(layer.neurons, ci, np.int64)

    def _need(self, layer: LayerConnectivity) -> tuple[int, int]:
        k = layer.neurons
        if self.structural and self.lim.synapse_storage != "dense_pow2":
            return k, 0
        return k, self._part_words(layer, k, layer.n_in) or int(layer.fan_in.sum())


def _single_neuron_error(profile, core, layer, n, structural) -> MappingError:
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


def _whole_layer_error(profile, layer, need) -> MappingError:
    neurons, words = need
    biggest_n = max(profile.core_neurons(c) for c in range(profile.limits.cores))
    biggest_s = max(profile.core_synapses(c) for c in range(profile.limits.cores))
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


def _assign_whole_layers(packer: _Packer, layers: Sequence[LayerConnectivity]) -> list:
    """One layer per core, layers unsplit: match layers to cores (Hungarian method)."""
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
    ok = np.array([[k <= p.core_neurons(c) and w <= p.core_synapses(c) for c in range(allotted)]
                   for k, w in need])
    for li, layer in enumerate(layers):
        if not ok[li].any():
            raise _whole_layer_error(p, layer, need[li])
    # Prefer small cores (cost by capacity) so that large ones stay free for large layers.
    cost = np.where(ok, 0.0, 1e9) + 1e-9 * np.array(
        [p.core_neurons(c) + p.core_synapses(c) for c in range(allotted)])[None, :]
    rows, cols = linear_sum_assignment(cost)
    if not ok[rows, cols].all():
        li = int(rows[~ok[rows, cols]][0])
        raise MappingError(
            f"layer {layers[li].name}: no assignment of the {len(layers)} layers to distinct "
            f"cores of {p.name!r} gives every layer a core large enough (limits.core_neurons / "
            f"limits.core_synapses): shrink the largest layers", "limits.core_synapses",
            layers[li].name, need[li][1], max(p.core_synapses(c) for c in range(allotted)))
    where = []
    for li, c in sorted(zip(rows, cols), key=lambda rc: rc[1]):
        core = _Core(int(c), p.core_neurons(int(c)), p.core_synapses(int(c)))
        packer.open.append(core)
        packer.add(core, int(li), layers[int(li)], np.arange(layers[int(li)].neurons))
        where.append((int(li), len(packer.open) - 1))
    out = [None] * len(layers)
    for li, ci in where:
        out[li] = np.full(layers[li].neurons, ci, np.int64)
    return out


# ----------------------------------------------------------------------------- checks

def _check_neuron_limits(profile: HardwareProfile, layers: Sequence[LayerConnectivity],
                         structural: bool) -> None:
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


def _routes(profile: HardwareProfile, layers, placement, usage_cores) -> np.ndarray:
    """Per core (index into ``usage_cores``) the output routes; checks the destination limits."""
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


# ----------------------------------------------------------------------------- entry points

def map_layers(layers: Sequence[LayerConnectivity], profile: HardwareProfile,
               cores: int | None = None, structural: bool = False) -> CoreMapping:
    """Place every neuron of ``layers`` on the cores of ``profile`` (module docstring).

    Args:
        layers: :class:`LayerConnectivity` per layer, input side first.
        profile: target chip.
        cores: cores allotted (default ``limits.cores``); the first ``cores`` cores are used.
        structural: check only what pruning cannot fix (neuron counts, input channels, output
            neurons, one-layer-per-core and prune-independent ``dense_pow2`` memory); used
            before training, when the synapses are not known yet.

    Returns:
        The :class:`CoreMapping`.

    Raises:
        MappingError: a limit is exceeded; the message names the limit, the layer, by how
            much, and the option that fixes it.

    Example:
        >>> from rewire.hw_profiles.profile import load_profile
        >>> m = map_layers([LayerConnectivity.from_mask("fc1", np.ones((300, 4)))],
        ...                load_profile("truenorth"))
        >>> m.cores, [u.neurons for u in m.usage]
        (2, [256, 44])
    """
    lim = profile.limits
    allotted = lim.cores if cores is None else int(cores)
    if not 1 <= allotted <= lim.cores:
        raise MappingError(f"--cores must be in [1, {lim.cores}] for profile {profile.name!r}, "
                           f"got {allotted}", "limits.cores", "", allotted, lim.cores)
    if not layers:
        raise ValueError("map_layers: no layers to map")
    _check_neuron_limits(profile, layers, structural)
    on_cores = list(layers[:-1]) if lim.output_neurons else list(layers)
    packer = _Packer(profile, layers, allotted, structural)
    if on_cores and not lim.split_layers and lim.layers_per_core == 1:
        placement = _assign_whole_layers(packer, on_cores)
    else:
        placement = []
        for li, layer in enumerate(on_cores):
            before = len(packer.open)
            where = (packer.place_split if lim.split_layers else packer.place_whole)(li, layer)
            placement.append(where)
            if len(packer.open) > allotted:
                raise _too_many_cores(profile, li, layer, packer, before, allotted, structural)
    usage_cores = list(packer.open)
    if lim.output_neurons:
        out = _Core(OUTPUT_CORE, lim.output_neurons, 0)
        packer.open.append(out)
        packer.add(out, len(layers) - 1, layers[-1], np.arange(layers[-1].neurons))
        placement.append(np.full(layers[-1].neurons, len(packer.open) - 1, np.int64))
        usage_cores = list(packer.open)
    routes = (np.zeros(len(usage_cores), np.int64) if structural
              else _routes(profile, layers, placement, usage_cores))
    usage = []
    for ci, core in enumerate(usage_cores):
        fan_in = sum(packer._axons(q, layers[j]) for j, q in core.parts.items())
        if lim.axons_out_per_core and routes[ci] > lim.axons_out_per_core and not structural:
            names = [layers[j].name for j in core.parts]
            raise MappingError(
                f"layer {names[0]}: core {core.core} needs {int(routes[ci])} output routes but "
                f"{profile.name!r} allows {lim.axons_out_per_core} (limits.axons_out_per_core; "
                f"over by {int(routes[ci]) - lim.axons_out_per_core}): train with a lower "
                f"--connectivity so that fewer neurons reach several cores",
                "limits.axons_out_per_core", names[0], int(routes[ci]), lim.axons_out_per_core)
        capacity = {"neurons": core.cap_neurons, "synapses": core.cap_synapses,
                    "fan_in": lim.axons_in_per_core, "fan_out": lim.axons_out_per_core}
        usage.append(CoreUsage(core=core.core,
                               layers={layers[j].name: q[0] for j, q in core.parts.items()},
                               neurons=core.neurons, synapses=core.words,
                               connected=core.connected, fan_in=int(fan_in),
                               fan_out=int(routes[ci]), capacity=capacity))
    algorithm = ("assignment of whole layers to cores (Hungarian method)"
                 if not lim.split_layers and lim.layers_per_core == 1
                 else "first-fit decreasing by fan-in")
    return CoreMapping(usage=tuple(usage), placement=tuple(placement),
                       layer_names=tuple(l.name for l in layers),
                       neurons_per_layer=tuple(l.neurons for l in layers),
                       synapses_per_layer=tuple(int(l.fan_in.sum()) for l in layers),
                       allotted=allotted, profile=profile.name, algorithm=algorithm)


def _too_many_cores(profile, li, layer, packer, before, allotted, structural) -> MappingError:
    """The error for a layer that overflows the allotted cores, with the numbers and the fix."""
    lim = profile.limits
    used_before = min(before, allotted)
    # Count how many cores the layer would need alone, on fresh cores.
    alone = _Packer(profile, packer.layers, lim.cores, structural)
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


def layer_connectivity(layer: "CompiledLayer") -> LayerConnectivity:
    """The connectivity of a compiled layer (``weight_int != 0``).

    A convolution (``layer.kind == "conv"``) has no per-neuron input sets here: each neuron
    gets the connected entries of its output channel's kernel as fan-in and all inputs as
    axons (an upper bound).
    """
    w = np.asarray(layer.weight_int)
    if getattr(layer, "kind", "dense") == "conv":
        per_channel = np.count_nonzero(w.reshape(len(w), -1), axis=1)
        n_out, n_in = layer.shape
        fan_in = np.repeat(per_channel, n_out // len(w)).astype(np.int64)
        return LayerConnectivity(layer.name, fan_in, n_in, None)
    return LayerConnectivity.from_mask(layer.name, w)


def map_cores(layers: Sequence["CompiledLayer"], profile: HardwareProfile,
              cores: int | None = None) -> CoreMapping:
    """:func:`map_layers` for compiled layers (their chip weights give the connectivity).

    Raises:
        MappingError: see :func:`map_layers`.
    """
    return map_layers([layer_connectivity(l) for l in layers], profile, cores)


def check_network(profile: HardwareProfile, sizes: Sequence[int],
                  cores: int | None = None) -> CoreMapping:
    """Before training: does a fully connected network of ``sizes`` fit at all?

    Checks what pruning cannot fix (``structural=True`` in :func:`map_layers`).

    Raises:
        MappingError: e.g. 64 inputs on Xylo's 16 input channels.
    """
    layers = [LayerConnectivity.dense(f"fc{k + 1}", n_out, n_in)
              for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return map_layers(layers, profile, cores, structural=True)


# ----------------------------------------------------------------------------- outputs

def write_json(mapping: CoreMapping, path: str | Path) -> Path:
    """Write ``cores.json`` (:meth:`CoreMapping.to_dict`) atomically; return the path."""
    from rewire.export.atomic import write_text

    return write_text(path, json.dumps(mapping.to_dict(), indent=2) + "\n")


def write_png(mapping: CoreMapping, path: str | Path) -> Path:
    """Bar chart of each core's utilisation of every limit (``cores.png``), written atomically.

    One group of bars per core (neurons, synapses, fan-in, fan-out as a fraction of the core's
    limit; limits the chip does not set are left out) and a line at 100 %.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rewire.export.atomic import atomic_path

    usage = mapping.usage
    n = len(usage)
    fig = Figure(figsize=(min(max(7.0, 0.5 * n + 3), 24.0), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(LIMIT_KEYS)
    x = np.arange(n)
    smallest = 100.0
    for k, key in enumerate(LIMIT_KEYS):
        util = [u.utilisation()[key] for u in usage]
        if all(v is None for v in util):
            continue
        pct = [100 * (v or 0) for v in util]
        bars = ax.bar(x + (k - 1.5) * width, pct, width, label=key)
        if n <= 16:  # the used amount on top of each bar
            ax.bar_label(bars, [f"{getattr(u, key)}" for u in usage], fontsize=7, rotation=90,
                         padding=2)
        smallest = min([smallest] + [v for v in pct if v > 0])
    ax.axhline(100, color="k", linestyle="--", linewidth=1, label="limit")
    if smallest < 1.0:  # small utilisations stay visible on a log axis
        ax.set_yscale("log")
        ax.set_ylim(max(smallest / 3, 1e-4), 400)
    else:
        ax.set_ylim(0, 135)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{_core_label(u.core)}" + ("" if n > 16 else "\n" + "+".join(u.layers))
                        for u in usage],
                       rotation=90 if n > 20 else 0, fontsize=8 if n > 20 else 9)
    ax.set_xlabel("core (layers)")
    ax.set_ylabel("used / core limit (%)")
    ax.set_title(f"{mapping.profile}: {mapping.cores} of {mapping.allotted} cores "
                 f"({mapping.algorithm})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
