"""The core mapping's data: where every neuron of a compiled network sits and how full each
core is (:class:`CoreMapping`, the ``cores.json`` document). :mod:`rewire.compiler.mapping`
computes it (see docs/mapping.md for the limits); it lives here, with the compiled network
(:mod:`rewire.ir.compiled`), so that it saves and reloads without the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["MAPPING_VERSION", "OUTPUT_CORE", "LIMITS", "LIMIT_KEYS", "CoreUsage",
           "CoreMapping", "core_label"]

MAPPING_VERSION = 1
OUTPUT_CORE = -1  # ``CoreUsage.core`` of the dedicated output neurons
#: ``(limit key, CoreUsage attribute)``: what each core figure is held against. ``fan_in`` is
#: the largest per-neuron fan-in on the core (``limits.fan_in``); ``input_axons`` the distinct
#: sources feeding the core (``limits.axons_in_per_core``), a different thing.
LIMITS = (("neurons", "neurons"), ("synapses", "synapses"), ("input_axons", "input_axons"),
          ("output_routes", "output_routes"), ("fan_in", "max_fan_in"))
LIMIT_KEYS = tuple(k for k, _ in LIMITS)


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
        input_axons: distinct input axons (source neurons) feeding the core.
        output_routes: output routes, one per (neuron, destination core) pair.
        max_fan_in: the largest number of connected synapses into one neuron of the core.
        capacity: the limit each figure is held against, per :data:`LIMIT_KEYS`
            (``neurons``, ``synapses``, ``input_axons``: ``limits.axons_in_per_core``,
            ``output_routes``: ``limits.axons_out_per_core``, ``fan_in``:
            ``limits.fan_in``); 0 = the chip sets no limit.
    """

    core: int
    layers: dict
    neurons: int
    synapses: int
    connected: int
    input_axons: int
    output_routes: int
    max_fan_in: int
    capacity: dict

    def utilisation(self) -> dict:
        """``{limit: used / capacity}`` for each of :data:`LIMIT_KEYS`; ``None`` where the
        chip sets no limit."""
        return {k: (getattr(self, a) / self.capacity[k] if self.capacity[k] else None)
                for k, a in LIMITS}

    def to_dict(self) -> dict:
        """JSON-ready form (one entry of ``cores.json``): every figure, and beside it in
        ``limits`` the chip's limit it is held against (``null``: the chip sets none)."""
        return {"core": "output" if self.core == OUTPUT_CORE else self.core,
                "layers": dict(self.layers), "neurons": self.neurons,
                "synapses": self.synapses, "connected_synapses": self.connected,
                "input_axons": self.input_axons, "output_routes": self.output_routes,
                "max_fan_in": self.max_fan_in,
                "limits": {k: (v or None) for k, v in self.capacity.items()},
                "utilisation": self.utilisation()}

    @classmethod
    def from_dict(cls, data: dict) -> "CoreUsage":
        """Inverse of :meth:`to_dict` (the ``utilisation`` entry is derived, not read)."""
        core = OUTPUT_CORE if data["core"] == "output" else int(data["core"])
        return cls(core=core, layers=dict(data["layers"]), neurons=int(data["neurons"]),
                   synapses=int(data["synapses"]), connected=int(data["connected_synapses"]),
                   input_axons=int(data["input_axons"]),
                   output_routes=int(data["output_routes"]), max_fan_in=int(data["max_fan_in"]),
                   capacity={k: int(v or 0) for k, v in data["limits"].items()})


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

    def to_dict(self, placement: bool = False) -> dict:
        """The ``cores.json`` document; with ``placement`` also each neuron's core index per
        layer (``"placement"``, what :meth:`from_dict` needs)."""
        out = {"mapping_version": MAPPING_VERSION, "profile": self.profile,
                "algorithm": self.algorithm, "cores_used": self.cores,
                "cores_allotted": self.allotted,
                "layers": [{"name": n, "neurons": int(k), "synapses": int(s),
                            "cores": [core_label(c) for c in sorted(
                                {self.usage[i].core for i in np.unique(p)},
                                key=lambda c: (c == OUTPUT_CORE, c))]}
                           for n, k, s, p in zip(self.layer_names, self.neurons_per_layer,
                                                 self.synapses_per_layer, self.placement)],
                "cores": [u.to_dict() for u in self.usage]}
        if placement:
            out["placement"] = [np.asarray(p).tolist() for p in self.placement]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "CoreMapping":
        """Inverse of ``to_dict(placement=True)``.

        Raises:
            ValueError: another ``mapping_version``, or no ``placement`` (a plain
                ``cores.json`` does not say where each neuron sits).
        """
        if data.get("mapping_version") != MAPPING_VERSION:
            raise ValueError(f"core mapping version {data.get('mapping_version')!r}: this "
                             f"rewire reads version {MAPPING_VERSION}")
        if "placement" not in data:
            raise ValueError("core mapping: no 'placement' (cores.json alone does not say "
                             "where each neuron sits); save it with to_dict(placement=True)")
        layers = data["layers"]
        return cls(usage=tuple(CoreUsage.from_dict(u) for u in data["cores"]),
                   placement=tuple(np.asarray(p, dtype=np.int64) for p in data["placement"]),
                   layer_names=tuple(l["name"] for l in layers),
                   neurons_per_layer=tuple(int(l["neurons"]) for l in layers),
                   synapses_per_layer=tuple(int(l["synapses"]) for l in layers),
                   allotted=int(data["cores_allotted"]), profile=data.get("profile", ""),
                   algorithm=data.get("algorithm", "first-fit decreasing"))


def core_label(core: int):
    """A core's label in ``cores.json``: its number, or ``"output"`` for the output block."""
    return "output" if core == OUTPUT_CORE else int(core)
