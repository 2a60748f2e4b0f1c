"""Compiled layers, one class per IR synapse kind: the synapses with their float and integer
weights and the neurons they drive (a :class:`~rewire.ir.chip_neurons.ChipNeuron`).

========================  ==============================  =====================================
IR synapse                compiled layer                  weights
========================  ==============================  =====================================
``Dense``                 :class:`CompiledDense`          ``(out, in)``
``RecurrentDense``        :class:`CompiledRecurrentDense` ``(out, in)`` + ``(out, out)``
``Conv2d``                :class:`CompiledConv`           ``(C_out, C_in / groups, kH, kW)``
``SumPool2d``             :class:`CompiledSumPool`        a constant depthwise kernel
========================  ==============================  =====================================

Writers and the integer simulator dispatch on these types through registries
(:func:`lookup`), never on a kind string. The fixed point is Lava's CUBA neuron (lava-nc 0.10
``lava/proc/lif/models.py``); see docs/compiler.md for the scale ``S``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rewire.ir import nodes as ir_nodes
from rewire.ir._checked import array_from_dict, check_int
from rewire.ir.chip_neurons import ChipNeuron, chip_class
from rewire.ir.compiled_skip import CompiledSkip

__all__ = ["CompiledSkip", "CompiledLayer", "CompiledDense", "CompiledRecurrentDense", "CompiledConv",
           "CompiledSumPool", "LAYER_TYPES", "lookup", "layer_names"]


@dataclass(frozen=True, kw_only=True)
class CompiledLayer:
    """Fields every compiled layer has (base class; build one of its subclasses).

    Attributes:
        name: layer name (``"fc1"``, ``"conv1"``, ``"pool1"``: :func:`layer_names`).
        weight: float32 trained weights (shape per subclass).
        weight_int: int32 chip weights of the same shape, multiples of the profile's step.
        scale: ``S``, the factor from float voltage to the chip's voltage mantissa:
            ``vThMant = round(v_th * S)``, ``weight_int ~= weight * gain * S * input_scale``.
        input_scale: float value of one unit of input payload (1 for binary spikes).
        scale_limited_by: which constraint set ``S`` (``"weight bits"``, ``"threshold bits"``,
            ``"activation bits"``, ``"current bits"`` or ``"relay current"``).
        chip: the neurons' chip image (:class:`~rewire.ir.chip_neurons.ChipNeuron`: the IR
            neuron node, ``iDecay``, ``vDecay``, ``vThMant``).
        notes: what the compiler had to do beyond the plain mapping, for the report.
        source: the layer's name in the source model (module path or NIR node).
        skips: :class:`CompiledSkip` connections into this layer (dense layers only), summed
            with its own synaptic input.
        bias: float32 trained bias, ``(out,)`` (``(C_out,)`` for a conv layer), or ``None``.
        bias_int: int32 chip bias of the same shape, on the weights' grid and scale
            (``bias_int ~= bias * gain * S``: what one input of payload 1 through a weight
            ``bias`` adds), added to the synaptic input ``a`` every step; ``None`` without a
            bias (then neither is written by :meth:`to_dict`).
    """

    name: str
    weight: np.ndarray
    weight_int: np.ndarray
    scale: float
    input_scale: float
    scale_limited_by: str
    chip: ChipNeuron
    notes: tuple[str, ...] = ()
    source: str = ""
    skips: tuple[CompiledSkip, ...] = ()
    bias: np.ndarray | None = None
    bias_int: np.ndarray | None = None
    TYPE: ClassVar[str] = ""
    recurrent: ClassVar[bool] = False  #: netx ``dense_rec``: recurrent weights

    @property
    def neuron(self):
        """The layer's IR neuron node (:mod:`rewire.ir.neurons`)."""
        return self.chip.neuron

    @property
    def i_decay(self) -> int:
        """``iDecay`` of the layer's neurons."""
        return self.chip.i_decay

    @property
    def v_decay(self) -> int:
        """``vDecay`` of the layer's neurons."""
        return self.chip.v_decay

    @property
    def v_th_mant(self) -> int:
        """``vThMant`` of the layer's neurons (0 for a leaky integrator)."""
        return self.chip.v_th_mant

    @property
    def spiking(self) -> bool:
        """Whether the layer's neurons spike (``False`` for a leaky-integrator readout)."""
        return self.chip.spiking

    def bias_per_neuron(self) -> np.ndarray | None:
        """``bias_int`` as int64 ``(n_out,)``, one entry per neuron (a conv layer's channel
        bias repeated over its ``H_out * W_out`` pixels, ``x.flatten()`` order), or ``None``."""
        if self.bias_int is None:
            return None
        b = self.bias_int.astype(np.int64)
        return np.repeat(b, self.shape[0] // len(b)) if len(b) else b

    @property
    def fan_in_matrix(self) -> np.ndarray:
        """``weight_int`` with rows flat, ``(out, fan-in)`` (what one neuron's fan-in counts;
        for a conv layer one row per output channel), then the skip weights' columns."""
        own = self._own_fan_in()
        return np.hstack([own, *(s.weight_int for s in self.skips)]) if self.skips else own

    def _own_fan_in(self) -> np.ndarray:
        return self.weight_int.reshape(len(self.weight_int), -1)

    @property
    def all_zero(self) -> bool:
        """Every synapse of the layer is pruned (its neurons can never spike)."""
        return not np.any(self.fan_in_matrix)

    @property
    def float_synapses(self) -> int:
        """Connected synapses of the float model (non-zero trained weights), before rounding,
        skips included."""
        return int(np.count_nonzero(self.weight)) + self._skip_count(True)

    def _skip_count(self, nonzero: bool) -> int:
        return sum(int(np.count_nonzero(s.weight)) if nonzero else s.weight.size
                   for s in self.skips)

    @property
    def synapses(self) -> int:
        """Connected synapses (non-zero chip weights, recurrent ones included)."""
        return int(np.count_nonzero(self.fan_in_matrix))

    @property
    def dense_synapses(self) -> int:
        """Synapses of the dense layer (every weight entry, recurrent and skip ones
        included)."""
        return self.weight.size + self._skip_count(False)

    @property
    def max_fan_in(self) -> int:
        """Most connected synapses into one neuron, recurrent ones included (for a conv
        layer: the most connected entries of one output channel's kernel)."""
        return int(np.count_nonzero(self.fan_in_matrix, axis=1).max())

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` neurons (for a conv layer the flattened feature-map sizes)."""
        return tuple(self.weight.shape)

    def to_dict(self) -> dict:
        """JSON-ready dict: ``type``, every field (arrays as ``{dtype, shape, data}``), the
        chip image flat (``neuron`` as its dict, ``i_decay``, ``v_decay``, ``v_th_mant``)."""
        out = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("bias", "bias_int"):
                continue  # no bias: the dict (and every file) is what it was before biases
            if f.name == "chip":
                out.update(neuron=value.neuron.to_dict(), i_decay=value.i_decay,
                           v_decay=value.v_decay, v_th_mant=value.v_th_mant)
                continue
            if f.name == "skips":
                if value:  # left out when empty: the dict of a chain is what it was
                    out["skips"] = [skip.to_dict() for skip in value]
                continue
            if isinstance(value, np.ndarray):
                value = {"dtype": str(value.dtype), "shape": list(value.shape),
                         "data": value.reshape(-1).tolist()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @staticmethod
    def from_dict(data: dict) -> "CompiledLayer":
        """Inverse of :meth:`to_dict`; also reads a version-2 layer (one ``CompiledLayer``
        with a ``kind`` string and optional fields: its type follows from them).

        Raises:
            ValueError: an unknown type, unknown fields or malformed arrays (named).
        """
        data = dict(data)
        if "type" in data:
            tag = data.pop("type")
        else:  # version 2
            kind = data.pop("kind", "dense")
            pool, rec = data.pop("pool_weight", None), data.get("weight_rec")
            tag = ("sumpool" if pool is not None else "conv") if kind == "conv" else \
                ("dense_rec" if rec is not None else "dense")
            if pool is not None:
                data["pool_weight"] = pool
            cls = LAYER_TYPES.get(tag)
            keep = {f.name for f in dataclasses.fields(cls)} | {"neuron", "i_decay", "v_decay",
                                                                 "v_th_mant"}
            data = {k: v for k, v in data.items() if k in keep}
        if tag not in LAYER_TYPES:
            raise ValueError(f"compiled layer: unknown type {tag!r}; known: {sorted(LAYER_TYPES)}")
        cls = LAYER_TYPES[tag]
        for key in ("neuron", "i_decay", "v_decay", "v_th_mant", "name", "weight",
                    "weight_int", "scale", "input_scale", "scale_limited_by"):
            if key not in data:
                raise ValueError(f"{cls.__name__}: missing field {key!r}")
        if not isinstance(data["neuron"], dict):
            raise ValueError(f"{cls.__name__}.neuron must be a dict, got "
                             f"{type(data['neuron']).__name__}")
        neuron = ir_nodes.neuron_from_dict(data.pop("neuron"))
        chip = chip_class(neuron)(neuron, *(check_int(f"{cls.__name__}.{k}", data.pop(k), 0,
                                                      2**31 - 1)
                                            for k in ("i_decay", "v_decay", "v_th_mant")))
        extra = set(data) - {f.name for f in dataclasses.fields(cls)}
        if extra:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(extra)}")
        kw = {}
        if "skips" in data:
            skips = data.pop("skips")
            if not isinstance(skips, list):
                raise ValueError(f"{cls.__name__}.skips must be a list")
            kw["skips"] = tuple(CompiledSkip.from_dict(d) for d in skips)
        for key, value in data.items():
            if isinstance(value, dict):
                value = array_from_dict(value, f"{cls.__name__}.{key}")
            elif isinstance(value, list):
                value = tuple(value)
            kw[key] = value
        return cls(chip=chip, **kw)


@dataclass(frozen=True, kw_only=True)
class CompiledDense(CompiledLayer):
    """An IR ``Dense`` layer: ``weight``/``weight_int`` are ``(out, in)``."""

    TYPE: ClassVar[str] = "dense"


@dataclass(frozen=True, kw_only=True)
class CompiledRecurrentDense(CompiledDense):
    """An IR ``RecurrentDense`` layer (netx ``dense_rec``).

    Attributes:
        weight_rec, weight_rec_int: float32 and int32 ``(out, out)`` recurrent weights (row =
            target); they carry the layer's binary spikes of the step before and share its
            scale with ``weight`` (netx optimizes ``[W | W_rec]``'s bits jointly).
    """

    weight_rec: np.ndarray
    weight_rec_int: np.ndarray
    TYPE: ClassVar[str] = "dense_rec"
    recurrent: ClassVar[bool] = True

    def _own_fan_in(self) -> np.ndarray:
        """``[weight_int | weight_rec_int]``, ``(out, in + out)``."""
        return np.hstack([self.weight_int, self.weight_rec_int])

    @property
    def float_synapses(self) -> int:
        """Connected float synapses, recurrent (and skip) ones included."""
        return super().float_synapses + int(np.count_nonzero(self.weight_rec))

    @property
    def dense_synapses(self) -> int:
        """Entries of ``weight`` and ``weight_rec`` (and the skips')."""
        return super().dense_synapses + self.weight_rec.size


@dataclass(frozen=True, kw_only=True)
class CompiledConv(CompiledLayer):
    """An IR ``Conv2d`` layer: ``weight``/``weight_int`` are torch's ``(C_out, C_in / groups,
    kH, kW)`` kernel.

    Attributes:
        in_shape, out_shape: ``(C, H, W)`` of the input and output feature maps, torch order;
            neurons are numbered as ``x.flatten()`` of a ``(C, H, W)`` map.
        stride, padding: ``(y, x)`` convolution stride and zero padding.
        groups: convolution groups.
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    TYPE: ClassVar[str] = "conv"

    @property
    def fan_in_matrix(self) -> np.ndarray:
        """One row per output channel: its kernel (the skips, per neuron, are counted by
        :attr:`synapses` and :attr:`max_fan_in`)."""
        return self._own_fan_in()

    @property
    def synapses(self) -> int:
        """Connected kernel entries plus connected skip synapses."""
        return int(np.count_nonzero(self._own_fan_in())) + \
            sum(int(np.count_nonzero(s.weight_int)) for s in self.skips)

    @property
    def max_fan_in(self) -> int:
        """The most connected entries of one channel's kernel, plus the most connected skip
        synapses into one neuron (an upper bound on one neuron's fan-in)."""
        skip = sum((np.count_nonzero(s.weight_int, axis=1) for s in self.skips),
                   np.zeros(self.shape[0], np.int64))
        return int(np.count_nonzero(self._own_fan_in(), axis=1).max()) + int(skip.max())

    @property
    def shape(self) -> tuple[int, int]:
        """``(C_out H_out W_out, C_in H_in W_in)``: the flattened feature-map sizes."""
        return (int(np.prod(self.out_shape)), int(np.prod(self.in_shape)))


@dataclass(frozen=True, kw_only=True)
class CompiledSumPool(CompiledConv):
    """An IR ``SumPool2d`` layer: the depthwise convolution (``groups = C``) with a constant
    kernel (lava-dl 0.6 netx reads no pool layer).

    Attributes:
        pool_weight: the synaptic weight (every kernel entry).
    """

    pool_weight: float
    TYPE: ClassVar[str] = "sumpool"


#: ``TYPE`` -> compiled layer class (what :meth:`CompiledLayer.from_dict` builds).
LAYER_TYPES: dict[str, type[CompiledLayer]] = {
    cls.TYPE: cls for cls in (CompiledDense, CompiledRecurrentDense, CompiledConv,
                              CompiledSumPool)}


def lookup(registry: dict, obj, what: str):
    """``registry[cls]`` for the first class ``cls`` of ``type(obj)``'s MRO in it: a
    registry keyed by :class:`CompiledDense` serves :class:`CompiledRecurrentDense` too,
    unless it names the subclass.

    Raises:
        TypeError: no entry for ``obj``'s type (``what`` names the registry).
    """
    for cls in type(obj).__mro__:
        if cls in registry:
            return registry[cls]
    raise TypeError(f"{what}: no entry for {type(obj).__name__}")


_PREFIX = {ir_nodes.Dense: "fc", ir_nodes.RecurrentDense: "fc", ir_nodes.Conv2d: "conv",
           ir_nodes.SumPool2d: "pool"}


def layer_names(synapses) -> list[str]:
    """The compiled layers' names, given once: ``fc<k>`` (dense and recurrent dense),
    ``conv<k>``, ``pool<k>``, numbered per kind from 1 in order.

    Args:
        synapses: the IR synapse nodes or their classes (or
            :class:`~rewire.ir.network.Network` layers, whose ``synapse`` is used) in order.

    Example:
        >>> layer_names([ir_nodes.Conv2d, ir_nodes.SumPool2d, ir_nodes.Dense, ir_nodes.Dense])
        ['conv1', 'pool1', 'fc1', 'fc2']
    """
    counts, names = {}, []
    for item in synapses:
        syn = getattr(item, "synapse", item)
        prefix = _PREFIX[syn if isinstance(syn, type) else type(syn)]
        counts[prefix] = counts.get(prefix, 0) + 1
        names.append(f"{prefix}{counts[prefix]}")
    return names
