"""The compiled network: the IR after the compiler, the one object every exporter reads.

A :class:`CompiledNetwork` holds, per layer, both the float parameters of the IR
(:mod:`rewire.ir.nodes`: synapse weights and the layer's own neuron node) and their
fixed-point image on the chip (REFERENCE §3), plus how the input is encoded and which profile
it was compiled for. It is frozen: exporters never change it. :meth:`CompiledNetwork.to_dict`
/ :meth:`CompiledNetwork.from_dict` save and reload it (versioned).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir import nodes as ir_nodes
from rewire.ir.network import Network

if TYPE_CHECKING:  # pragma: no cover - the mapping module imports quantize, which imports this
    from rewire.compiler.mapping import CoreMapping

FORMAT_VERSION = 2
#: ``to_dict`` versions :meth:`CompiledNetwork.from_dict` reads.
READABLE_VERSIONS = (2,)


@dataclass(frozen=True)
class CompiledLayer:
    """One layer (synapses and the neurons they drive), float and fixed point.

    Attributes:
        name: layer name (``"fc1"``, ``"conv1"``, ``"pool1"``, numbered per kind).
        weight: float32 ``(out, in)``: the trained weight ``s * relu(theta)``.
        weight_int: int32 ``(out, in)``: chip weights, multiples of the profile's step.
        scale: ``S``, the factor from float voltage to the chip's voltage mantissa:
            ``vThMant = round(v_th * S)``, ``weight_int ~= weight * dt/tau_mem * S * input_scale``.
        input_scale: float value of one unit of input payload (1 for binary spikes).
        i_decay: ``iDecay`` in [0, 4096] (current decay per step, in 1/4096).
        v_decay: ``vDecay`` in [0, 4096] (voltage decay per step, in 1/4096).
        v_th_mant: ``vThMant`` (threshold mantissa; threshold is ``vThMant << 6``).
        scale_limited_by: which constraint set ``S`` (``"weight bits"``, ``"threshold bits"``,
            ``"activation bits"`` or ``"current bits"``).
        kind: ``"dense"`` (``weight`` is ``(out, in)``) or ``"conv"``: a 2-D convolution whose
            ``weight``/``weight_int`` are torch's ``(C_out, C_in / groups, kH, kW)`` kernel
            (sum pooling is a ``conv`` with ``groups = C`` and a constant kernel, see
            :mod:`rewire.training.conv`). The fields below describe conv layers only.
        in_shape, out_shape: ``(C, H, W)`` of the layer's input and output feature maps, in
            torch order; neurons are numbered as ``x.flatten()`` of a ``(C, H, W)`` map.
        stride, padding: ``(y, x)`` convolution stride and zero padding, in torch order.
        groups: convolution groups (``C`` for a pooling layer).
        notes: what the compiler had to do to this layer beyond the plain mapping, for the
            report (e.g. every synapse pruned, weights put on netx's coarser grid).
        neuron: the layer's IR neuron node (:mod:`rewire.ir.nodes`: ``CubaLIF``, ``LIF``,
            ``IF``, ``CubaLI``, ``LI``) with its float parameters; ``i_decay``, ``v_decay``
            and ``v_th_mant`` are its chip image (``iDecay = 4096`` for ``LIF``/``IF``/``LI``,
            ``vDecay = 0`` for ``IF``; a leaky integrator never spikes and has
            ``v_th_mant = 0``).
        weight_rec, weight_rec_int: a recurrent dense layer's float32 and int32
            ``(out, out)`` recurrent weights (row = target), else ``None``.
        pool_weight: the synaptic weight of a sum-pooling layer (its constant kernel),
            else ``None``.
        source: the layer's name in the source model (module path or NIR node).
    """

    name: str
    weight: np.ndarray
    weight_int: np.ndarray
    scale: float
    input_scale: float
    i_decay: int
    v_decay: int
    v_th_mant: int
    scale_limited_by: str
    kind: str = "dense"
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    notes: tuple[str, ...] = ()
    neuron: object = None
    weight_rec: np.ndarray | None = None
    weight_rec_int: np.ndarray | None = None
    pool_weight: float | None = None
    source: str = ""

    @property
    def spiking(self) -> bool:
        """Whether the layer's neurons spike (``False`` for a leaky-integrator readout)."""
        return self.neuron is None or self.neuron.spiking

    @property
    def recurrent(self) -> bool:
        """Whether the layer has recurrent weights (netx ``dense_rec``)."""
        return self.weight_rec is not None

    @property
    def all_zero(self) -> bool:
        """Every synapse of the layer is pruned (its neurons can never spike)."""
        return not np.any(self.weight_int) and not (self.recurrent and
                                                    np.any(self.weight_rec_int))

    @property
    def float_synapses(self) -> int:
        """Connected synapses of the float model (non-zero trained weights), before rounding."""
        rec = int(np.count_nonzero(self.weight_rec)) if self.recurrent else 0
        return int(np.count_nonzero(self.weight)) + rec

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` neurons (for a conv layer the flattened feature-map sizes)."""
        if self.kind == "conv":
            return (int(np.prod(self.out_shape)), int(np.prod(self.in_shape)))
        return tuple(self.weight.shape)

    @property
    def synapses(self) -> int:
        """Connected synapses (non-zero chip weights, recurrent ones included)."""
        rec = int(np.count_nonzero(self.weight_rec_int)) if self.recurrent else 0
        return int(np.count_nonzero(self.weight_int)) + rec

    @property
    def dense_synapses(self) -> int:
        """Synapses of the dense layer (all entries of ``weight`` and ``weight_rec``)."""
        return self.weight.size + (self.weight_rec.size if self.recurrent else 0)

    @property
    def fan_in_matrix(self) -> np.ndarray:
        """``weight_int`` with the recurrent weights appended as extra inputs, rows flat:
        ``(out, in [+ out])`` (what one neuron's fan-in counts)."""
        rows = self.weight_int.reshape(len(self.weight_int), -1)
        return np.hstack([rows, self.weight_rec_int]) if self.recurrent else rows

    @property
    def max_fan_in(self) -> int:
        """Most connected synapses into one neuron of this layer, recurrent ones included (for
        a conv layer: the most connected entries of one output channel's kernel, the fan-in of
        an interior neuron)."""
        return int(np.count_nonzero(self.fan_in_matrix, axis=1).max())

    def to_dict(self) -> dict:
        """JSON-ready dict of every field (arrays as nested lists, the neuron as its dict)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = {"dtype": str(value.dtype), "shape": list(value.shape),
                         "data": value.reshape(-1).tolist()}
            elif f.name == "neuron" and value is not None:
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "CompiledLayer":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: unknown fields or malformed arrays (named).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(data) - names
        if extra:
            raise ValueError(f"CompiledLayer: unknown fields {sorted(extra)}")
        kw = {}
        for key, value in data.items():
            if isinstance(value, dict) and "data" in value:
                arr = np.asarray(value["data"], dtype=value["dtype"])
                value = arr.reshape(value["shape"])
            elif key == "neuron" and value is not None:
                value = ir_nodes.neuron_from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kw[key] = value
        return cls(**kw)


@dataclass(frozen=True)
class CompiledNetwork:
    """A pruned SNN compiled for one chip: what the netx, ONNX and report writers read.

    Attributes:
        layers: :class:`CompiledLayer` in order, input side first (each with its own neuron).
        steps: time steps ``T`` one sample is presented for.
        encoding: ``"current"`` (graded spikes carrying the integer pixel value every step)
            or ``"rate"`` (binary spikes).
        input_gain: float input current per unit of ``x`` (current encoding).
        input_max_value: integer payload that stands for ``x = 1`` (16 for digits).
        profile: the :class:`HardwareProfile` compiled for.
        mapping: the :class:`rewire.compiler.mapping.CoreMapping` (where every neuron sits).
        format_version: version of this representation and of the files written from it.
        notes: the frontend's notes on the source model (semantics that differ, ...).
        source: where the IR came from (``"norse"``, ``"nir"``, ...).
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
        """Versioned, JSON-ready dict of the whole compiled network (the core mapping is
        recomputed by :meth:`from_dict`, being a function of the layers and the profile)."""
        return {"format": "rewire-compiled", "version": self.format_version,
                "layers": [l.to_dict() for l in self.layers], "steps": self.steps,
                "encoding": self.encoding, "input_gain": self.input_gain,
                "input_max_value": self.input_max_value, "profile": self.profile.to_dict(),
                "cores": self.mapping.allotted, "notes": list(self.notes),
                "source": self.source}

    @classmethod
    def from_dict(cls, data: dict) -> "CompiledNetwork":
        """Reload :meth:`to_dict`.

        Raises:
            ValueError: not a compiled network, or a version this rewire does not read (the
                message says which it reads and what to do).
        """
        if not isinstance(data, dict) or data.get("format") != "rewire-compiled":
            raise ValueError("not a rewire compiled network (format must be 'rewire-compiled')")
        if data.get("version") not in READABLE_VERSIONS:
            raise ValueError(f"compiled network version {data.get('version')!r}: this rewire "
                             f"reads versions {list(READABLE_VERSIONS)}; version 1 files held "
                             f"one shared LIF neuron and no neuron node per layer: compile "
                             f"the model again")
        from rewire.compiler.mapping import map_cores
        from rewire.hw_profiles.profile import HardwareProfile

        layers = tuple(CompiledLayer.from_dict(l) for l in data["layers"])
        profile = HardwareProfile.from_dict(data["profile"])
        return cls(layers=layers, steps=int(data["steps"]), encoding=data["encoding"],
                   input_gain=float(data["input_gain"]),
                   input_max_value=int(data["input_max_value"]), profile=profile,
                   mapping=map_cores(layers, profile, data.get("cores")),
                   notes=tuple(data.get("notes", ())), source=data.get("source", ""))

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


def float_network(net: CompiledNetwork) -> Network:
    """The float IR :class:`~rewire.ir.network.Network` of a compiled network: its float
    weights and neuron nodes, as :mod:`rewire.ir.dynamics` runs them (what the float
    exporters write and the equivalence report compares the integer model with).

    Raises:
        ValueError: a layer without a neuron node (built by hand, not by the compiler).
    """
    nodes, names = [], []
    for k, layer in enumerate(net.layers):
        if layer.neuron is None:
            raise ValueError(f"layer {layer.name} has no neuron node; compile it with "
                             f"rewire.compiler.quantize.compile_network")
        if layer.kind == "conv":
            if layer.pool_weight is not None:
                nodes.append(ir_nodes.SumPool2d(kernel=layer.weight.shape[2:],
                                                stride=layer.stride, padding=layer.padding,
                                                weight=layer.pool_weight))
            else:
                nodes.append(ir_nodes.Conv2d(layer.weight, layer.stride, layer.padding,
                                             layer.groups))
        else:
            if k and net.layers[k - 1].kind == "conv":
                nodes.append(ir_nodes.Flatten())
            nodes.append(ir_nodes.RecurrentDense(layer.weight, layer.weight_rec)
                         if layer.recurrent else ir_nodes.Dense(layer.weight))
        nodes.append(layer.neuron)
        names.append(layer.name)
    first = net.layers[0]
    in_shape = first.in_shape if first.kind == "conv" else (first.shape[1],)
    return Network(nodes=tuple(nodes), input_shape=in_shape, steps=net.steps,
                   encoding=net.encoding, input_gain=net.input_gain, names=tuple(names),
                   source=net.source, notes=net.notes)
