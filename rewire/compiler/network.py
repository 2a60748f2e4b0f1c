"""The compiled network: the one object every exporter reads.

A :class:`CompiledNetwork` holds, per layer, both the float parameters of the trained Norse
model and their fixed-point image on the chip (REFERENCE §3), plus how the input is encoded
and which profile it was compiled for. It is frozen: exporters never change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rewire.hw_profiles.profile import HardwareProfile
from rewire.training.model import NeuronConfig

if TYPE_CHECKING:  # pragma: no cover - the mapping module imports quantize, which imports this
    from rewire.compiler.mapping import CoreMapping

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CompiledLayer:
    """One fully connected CUBA layer, float and fixed point.

    Attributes:
        name: layer name (``"fc1"``, ...).
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

    @property
    def all_zero(self) -> bool:
        """Every synapse of the layer is pruned (its neurons can never spike)."""
        return not np.any(self.weight_int)

    @property
    def float_synapses(self) -> int:
        """Connected synapses of the float model (non-zero trained weights), before rounding."""
        return int(np.count_nonzero(self.weight))

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` neurons (for a conv layer the flattened feature-map sizes)."""
        if self.kind == "conv":
            return (int(np.prod(self.out_shape)), int(np.prod(self.in_shape)))
        return tuple(self.weight.shape)

    @property
    def synapses(self) -> int:
        """Connected synapses (non-zero chip weights)."""
        return int(np.count_nonzero(self.weight_int))

    @property
    def max_fan_in(self) -> int:
        """Most connected synapses into one neuron of this layer (for a conv layer: the most
        connected entries of one output channel's kernel, the fan-in of an interior neuron)."""
        rows = self.weight_int.reshape(len(self.weight_int), -1)
        return int(np.count_nonzero(rows, axis=1).max())


@dataclass(frozen=True)
class CompiledNetwork:
    """A pruned SNN compiled for one chip: what the netx, ONNX and report writers read.

    Attributes:
        layers: :class:`CompiledLayer` in order, input side first.
        neuron: float LIF constants (:class:`rewire.training.model.NeuronConfig`).
        steps: time steps ``T`` one sample is presented for.
        encoding: ``"current"`` (graded spikes carrying the integer pixel value every step)
            or ``"rate"`` (binary spikes).
        input_gain: float input current per unit of ``x`` (current encoding).
        input_max_value: integer payload that stands for ``x = 1`` (16 for digits).
        profile: the :class:`HardwareProfile` compiled for.
        mapping: the :class:`rewire.compiler.mapping.CoreMapping` (where every neuron sits).
        format_version: version of this representation and of the files written from it.
    """

    layers: tuple[CompiledLayer, ...]
    neuron: NeuronConfig
    steps: int
    encoding: str
    input_gain: float
    input_max_value: int
    profile: HardwareProfile
    mapping: CoreMapping
    format_version: int = FORMAT_VERSION

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
        """Synapses of the dense network."""
        return sum(l.weight.size for l in self.layers)

    @property
    def neurons(self) -> int:
        """Neurons (compartments) over all layers."""
        return sum(l.shape[0] for l in self.layers)


def __getattr__(name: str):
    """``CoreMapping`` moved to :mod:`rewire.compiler.mapping`; old imports keep working."""
    if name == "CoreMapping":
        from rewire.compiler.mapping import CoreMapping

        return CoreMapping
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
