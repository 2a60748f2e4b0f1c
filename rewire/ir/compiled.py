"""The compiled network: the IR after the compiler, the one object every exporter reads.

A :class:`CompiledNetwork` holds, per layer, both the float parameters of the IR
(:mod:`rewire.ir.nodes`: synapse weights and the layer's own neuron node) and their
fixed-point image on the chip (Lava's CUBA neuron, lava-nc 0.10 ``lava/proc/lif/models.py``;
docs/compiler.md), one typed layer per IR synapse (:mod:`rewire.ir.compiled_layers`), plus how
the input is encoded, which profile it was compiled for and where each neuron sits
(:class:`~rewire.ir.cores.CoreMapping`). It is frozen: exporters never change it.
:meth:`CompiledNetwork.to_dict` / :meth:`CompiledNetwork.from_dict` save and reload it
(versioned).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from rewire.errors import WarningRecord
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir import nodes as ir_nodes
from rewire.ir._checked import MALFORMED
from rewire.ir.compiled_check import check_chain, check_layer, check_placement, check_run_fields
from rewire.ir.compiled_layers import (CompiledConv, CompiledDense, CompiledLayer,  # noqa: F401
                                       CompiledRecurrentDense, CompiledSumPool, lookup)
from rewire.ir.cores import CoreMapping
from rewire.ir.input_layout import layouts
from rewire.ir.network import Network, Skip

#: Version of the compiled network's ``to_dict`` and of the files written from it. Kept at 2
#: (the files' bytes must not change): version 2 dicts of the previous rewire (one
#: ``CompiledLayer`` with a ``kind`` string, no saved placement) still load, their core
#: mapping then given to :meth:`CompiledNetwork.from_dict` by the caller
#: (:func:`rewire.compiler.mapping.load_compiled` recomputes it).
FORMAT_VERSION = 2
#: ``to_dict`` versions :meth:`CompiledNetwork.from_dict` reads.
READABLE_VERSIONS = (2,)


@dataclass(frozen=True)
class CompiledNetwork:
    """A pruned SNN compiled for one chip: what the netx, ONNX and report writers read.

    Attributes:
        layers: typed compiled layers (:mod:`rewire.ir.compiled_layers`) in order, input side first (each with its own neuron).
        steps: time steps ``T`` one sample is presented for.
        encoding: ``"current"`` (graded spikes carrying the integer pixel value every step)
            or ``"rate"`` (binary spikes).
        input_gain: float input current per unit of ``x`` (current encoding).
        input_max_value: integer payload that stands for ``x = 1`` (16 for digits).
        profile: the :class:`HardwareProfile` compiled for.
        mapping: the :class:`~rewire.ir.cores.CoreMapping` (where every neuron sits).
        format_version: version of this representation and of the files written from it.
        notes: the frontend's notes on the source model (semantics that differ, ...).
        source: where the IR came from (``"norse"``, ``"nir"``, ...).
        input_layout: the per-sample shape the source model's input takes where it is not
            the first layer's own (an MLP whose forward flattens a ``(1, 8, 8)`` image);
            ``()`` otherwise (normalized so). :attr:`input_shape` reads it.
        warnings: the :class:`~rewire.errors.WarningRecord` s the compiler issued (semantic
            differences from the source model, quantization losses:
            :mod:`rewire.compiler.diagnostics`); ``()`` when there are none.

    Raises:
        ValueError: an ``input_layout`` that does not hold the first layer's inputs.
    """

    layers: tuple[CompiledLayer, ...]
    steps: int
    encoding: str
    input_gain: float
    input_max_value: int
    profile: HardwareProfile
    mapping: CoreMapping
    format_version: int = FORMAT_VERSION
    notes: tuple[str, ...] = ()
    source: str = ""
    input_layout: tuple[int, ...] = ()
    warnings: tuple[WarningRecord, ...] = ()

    def __post_init__(self):
        layout = tuple(int(s) for s in self.input_layout)
        if layout and self.layers:
            layouts(self.sizes[0], layout)  # ValueError: not the first layer's inputs
            layout = () if layout == self._own_shape() else layout
        object.__setattr__(self, "input_layout", layout)

    def _own_shape(self) -> tuple[int, ...]:
        first = self.layers[0]
        return tuple(first.in_shape) if isinstance(first, CompiledConv) else (first.shape[1],)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape of the source model: :attr:`input_layout`, else the first
        layer's own (``(C, H, W)`` for a conv layer, ``(n_in,)`` for a dense one). Every
        entry point that takes input takes ``(B, *input_shape)`` or the flat ``(B, n_in)``
        (:mod:`rewire.ir.input_layout`)."""
        return self.input_layout or self._own_shape()

    @property
    def warnings_json(self) -> str:
        """The warnings as compact JSON (a list of :meth:`~rewire.errors.WarningRecord.to_dict`),
        the ``rewire_warnings`` metadata entry every writer adds when there are warnings."""
        return json.dumps([w.to_dict() for w in self.warnings], separators=(",", ":"))

    @property
    def dt(self) -> float:
        """The time step in s (every layer's neuron shares it)."""
        return float(self.layers[0].neuron.dt)

    @property
    def neuron(self):
        """The IR neuron node every layer shares (networks of one neuron setting, as rewire's
        own ``SpikingMLP``).

        Raises:
            ValueError: the layers have different neurons: read ``layers[k].neuron``.
        """
        first = self.layers[0].neuron
        if any(l.neuron != first for l in self.layers[1:]):
            raise ValueError("the layers have different neurons; read layers[k].neuron")
        return first

    @property
    def readout(self) -> str:
        """``"spikes"`` or ``"voltage"`` (a leaky-integrator last layer)."""
        return "spikes" if self.layers[-1].spiking else "voltage"

    def to_dict(self) -> dict:
        """Versioned, JSON-ready dict of the whole compiled network, the core mapping with
        its placement included (``"mapping"``); ``"warnings"`` only when there are some (a
        network without warnings gives the dict, and the files, of earlier rewire)."""
        out = {"format": "rewire-compiled", "version": self.format_version,
               "layers": [l.to_dict() for l in self.layers], "steps": self.steps,
               "encoding": self.encoding, "input_gain": self.input_gain,
               "input_max_value": self.input_max_value, "profile": self.profile.to_dict(),
               "cores": self.mapping.allotted, "mapping": self.mapping.to_dict(placement=True),
               "notes": list(self.notes), "source": self.source,
               **({"input_layout": list(self.input_layout)} if self.input_layout else {})}
        if self.warnings:
            out["warnings"] = [w.to_dict() for w in self.warnings]
        return out

    @classmethod
    def from_dict(cls, data: dict, mapping: CoreMapping | None = None) -> "CompiledNetwork":
        """Reload :meth:`to_dict`.

        Args:
            data: the dict.
            mapping: the core mapping, for a dict without one (written by rewire before the
                mapping was saved: :func:`rewire.compiler.mapping.load_compiled` recomputes
                it).

        Raises:
            ValueError: not a compiled network, a version this rewire does not read (the
                message says which it reads and what to do), no core mapping, or a missing,
                malformed or out-of-range field (named: a weight that does not fit the
                profile's weight bits, a decay or threshold beyond its bits, shapes that do
                not chain, ...; :mod:`rewire.ir.compiled_check`).
        """
        if not isinstance(data, dict) or data.get("format") != "rewire-compiled":
            raise ValueError("not a rewire compiled network (format must be 'rewire-compiled')")
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"compiled network version {data.get('version')!r}: this rewire "
                             f"reads versions {list(READABLE_VERSIONS)}; version 1 files held "
                             f"one shared LIF neuron and no neuron node per layer: compile "
                             f"the model again")
        if mapping is None and "mapping" not in data:
            raise ValueError("compiled network without its core mapping (saved by an earlier "
                             "rewire): load it with rewire.compiler.mapping.load_compiled, "
                             "which maps the cores again")
        check_run_fields(data)
        warned = data.get("warnings", [])
        if not isinstance(warned, list):
            raise ValueError("compiled network: warnings must be a list")
        warned = tuple(WarningRecord.from_dict(w) for w in warned)
        layers = []
        for k, entry in enumerate(data["layers"]):
            try:
                layers.append(CompiledLayer.from_dict(entry))
            except MALFORMED as exc:
                raise ValueError(f"compiled network: layers[{k}]: {_why(exc)}") from None
        try:
            profile = HardwareProfile.from_dict(data["profile"])
        except MALFORMED as exc:
            raise ValueError(f"compiled network: profile: {_why(exc)}") from None
        for k, layer in enumerate(layers):
            try:
                check_layer(layer, k, profile)
            except MALFORMED as exc:
                raise ValueError(f"compiled network: layers[{k}]: {_why(exc)}") from None
        check_chain(layers)
        try:
            if mapping is None:
                mapping = CoreMapping.from_dict(data["mapping"])
            check_placement(mapping, layers)
        except MALFORMED as exc:
            raise ValueError(f"compiled network: mapping: {_why(exc)}") from None
        return cls(layers=tuple(layers), steps=data["steps"], encoding=data["encoding"],
                   input_gain=float(data["input_gain"]),
                   input_max_value=data["input_max_value"], profile=profile,
                   mapping=mapping,
                   notes=tuple(data.get("notes", ())), source=data.get("source", ""),
                   input_layout=_layout(data.get("input_layout", [])), warnings=warned)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Layer sizes, input first."""
        return (self.layers[0].shape[1],) + tuple(l.shape[0] for l in self.layers)

    @property
    def input_message_bits(self) -> int:
        """Bits of the graded input payload (0 = binary spikes), as Lava's Network expects."""
        if self.encoding == "rate":
            return 0
        return max(1, int(self.input_max_value).bit_length())

    @property
    def synapses(self) -> int:
        """Connected synapses over all layers."""
        return sum(l.synapses for l in self.layers)

    @property
    def total_synapses(self) -> int:
        """Synapses of the dense network (recurrent weights included)."""
        return sum(l.dense_synapses for l in self.layers)

    @property
    def neurons(self) -> int:
        """Neurons (compartments) over all layers."""
        return sum(l.shape[0] for l in self.layers)


def _layout(value) -> tuple[int, ...]:
    if not isinstance(value, list) or any(isinstance(s, bool) or not isinstance(s, int)
                                          or s < 1 for s in value):
        raise ValueError(f"compiled network: input_layout must be a list of integers >= 1, "
                         f"got {value!r}")
    return tuple(value)


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return str(exc) if isinstance(exc, ValueError) else f"malformed ({type(exc).__name__}: {exc})"


def _dense_node(layer):
    return ir_nodes.Dense(layer.weight, bias=layer.bias)


def _rec_node(layer):
    return ir_nodes.RecurrentDense(layer.weight, layer.weight_rec, bias=layer.bias)


def _conv_node(layer):
    return ir_nodes.Conv2d(layer.weight, layer.stride, layer.padding, layer.groups,
                           bias=layer.bias)


def _pool_node(layer):
    return ir_nodes.SumPool2d(kernel=layer.weight.shape[2:], stride=layer.stride,
                              padding=layer.padding, weight=layer.pool_weight)


#: compiled layer type -> its float IR synapse node.
IR_SYNAPSE = {CompiledDense: _dense_node, CompiledRecurrentDense: _rec_node,
              CompiledConv: _conv_node, CompiledSumPool: _pool_node}


def float_network(net: CompiledNetwork) -> Network:
    """The float IR :class:`~rewire.ir.network.Network` of a compiled network: its float
    weights and neuron nodes, as :mod:`rewire.ir.dynamics` runs them (what the float
    exporters write and the equivalence report compares the integer model with).
    """
    nodes = []
    for k, layer in enumerate(net.layers):
        if isinstance(layer, CompiledDense) and k and isinstance(net.layers[k - 1],
                                                                 CompiledConv):
            nodes.append(ir_nodes.Flatten())
        nodes.append(lookup(IR_SYNAPSE, layer, "float_network")(layer))
        nodes.append(layer.neuron)
    first = net.layers[0]
    in_shape = first.in_shape if isinstance(first, CompiledConv) else (first.shape[1],)
    skips = tuple(Skip(s.source, k + 1, s.weight) for k, layer in enumerate(net.layers)
                  for s in layer.skips)
    return Network(nodes=tuple(nodes), input_shape=in_shape, steps=net.steps,
                   encoding=net.encoding, input_gain=net.input_gain,
                   names=tuple(l.name for l in net.layers), source=net.source, notes=net.notes,
                   skips=skips)
