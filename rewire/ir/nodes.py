r"""The IR's node types: synapse operators and neuron models, each a small frozen dataclass.

A network (:class:`rewire.ir.network.Network`) is a chain of these nodes: a synapse operator
(:class:`Dense`, :class:`RecurrentDense`, :class:`Conv2d`, :class:`SumPool2d`) followed by a
neuron node (:class:`CubaLIF`, :class:`LIF`, :class:`IF`, :class:`CubaLI`, :class:`LI`), with
an optional :class:`Flatten` between a convolutional and a dense stage. Every neuron node
carries **its own parameters** (one value per layer), in SI units, with its time step ``dt``
explicit. The discrete-time semantics (forward Euler, in the order of Norse 1.1's step
functions, ``norse/torch/functional/lif.py``, ``lif_box.py``, ``iaf.py``,
``leaky_integrator.py``) are written once, in :mod:`rewire.ir.dynamics`:

.. math::
    \textbf{CubaLIF:}\quad & j = i + a, \quad v \leftarrow v + \Delta t\,\tau_\mathrm{mem}^{-1}
        (v_\mathrm{leak} - v + j), \quad i \leftarrow j - \Delta t\,\tau_\mathrm{syn}^{-1} j \\
    \textbf{LIF:}\quad & v \leftarrow v + \Delta t\,\tau_\mathrm{mem}^{-1}(a + v_\mathrm{leak} - v) \\
    \textbf{IF:}\quad & v \leftarrow v + a \\
    \textbf{CubaLI, LI:}\quad & \text{as CubaLIF, LIF without threshold: the output is } v

with a spike :math:`z = H(v - v_\mathrm{th})` resetting :math:`v` to :math:`v_\mathrm{reset}`,
and :math:`a` the synaptic input of the step (for :class:`RecurrentDense`,
:math:`a = W x_t + W_\mathrm{rec} z_{t-1}`).

Source frameworks map onto these nodes as follows (Norse ``LIFCell`` →
:class:`CubaLIF`, ``LIFBoxCell`` → :class:`LIF`, ``IAFCell`` → :class:`IF`, ``LICell`` →
:class:`CubaLI`, ``LIBoxCell`` → :class:`LI`; NIR ``CubaLIF``, ``LIF``, ``IF``, ``CubaLI``,
``LI`` likewise).

Arrays are numpy float32 (weights, as trained) and parameters Python floats (float64).
Validation raises :class:`ValueError` naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rewire.ir._fields import _array_field, _finite, _pair, _weights
from rewire.ir.neurons import IF, LI, LIF, NEURONS, BitshiftLIF, CubaLI, CubaLIF, Neuron

__all__ = ["Dense", "RecurrentDense", "Conv2d", "SumPool2d", "Flatten", "CubaLIF", "LIF", "IF",
           "CubaLI", "LI", "BitshiftLIF", "SYNAPSES", "NEURONS", "Synapse", "Neuron"]



# --------------------------------------------------------------------------- synapses


@dataclass(frozen=True, eq=False)
class Dense:
    """Fully connected synapses: ``a = W x + b`` (torch's ``F.linear``).

    Attributes:
        weight: float32 ``(out, in)``.
        bias: float32 ``(out,)`` added to the synaptic input every step, or ``None``.

    Raises:
        ValueError: ``weight`` not 2-D, ``bias`` not ``(out,)``, or either not finite.
    """

    weight: np.ndarray
    bias: np.ndarray | None = None
    op: ClassVar[str] = "dense"

    def __post_init__(self):
        object.__setattr__(self, "weight", _weights("Dense.weight", self.weight, 2))
        _set_bias(self, "Dense")

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)``."""
        return tuple(self.weight.shape)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(out,)`` for an input of ``(in,)``.

        Raises:
            ValueError: the input is not flat with ``in`` entries.
        """
        if tuple(in_shape) != (self.weight.shape[1],):
            raise ValueError(f"Dense takes an input of shape ({self.weight.shape[1]},), got "
                             f"{tuple(in_shape)}")
        return (self.weight.shape[0],)


@dataclass(frozen=True, eq=False)
class RecurrentDense:
    """Fully connected synapses with recurrence within the layer:
    ``a_t = W x_t + W_rec z_{t-1}`` (Norse ``LIFRecurrentCell``, NIR's recurrent subgraph,
    netx ``dense_rec``).

    Attributes:
        weight: float32 ``(out, in)``: input weights.
        weight_rec: float32 ``(out, out)``: recurrent weights, row = target neuron.
        bias: float32 ``(out,)`` added every step (``a_t = W x_t + b + W_rec z_{t-1}``), or
            ``None``.

    Raises:
        ValueError: shapes that do not fit, or non-finite weights.
    """

    weight: np.ndarray
    weight_rec: np.ndarray
    bias: np.ndarray | None = None
    op: ClassVar[str] = "dense_rec"

    def __post_init__(self):
        object.__setattr__(self, "weight", _weights("RecurrentDense.weight", self.weight, 2))
        object.__setattr__(self, "weight_rec",
                           _weights("RecurrentDense.weight_rec", self.weight_rec, 2))
        n = self.weight.shape[0]
        if self.weight_rec.shape != (n, n):
            raise ValueError(f"RecurrentDense.weight_rec must be ({n}, {n}) for {n} neurons, "
                             f"got {self.weight_rec.shape}")
        _set_bias(self, "RecurrentDense")

    @property
    def shape(self) -> tuple[int, int]:
        """``(out, in)`` of the input weights."""
        return tuple(self.weight.shape)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``(out,)``; see :meth:`Dense.out_shape`."""
        return Dense.out_shape(self, in_shape)


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution (torch's cross-correlation) over ``(C, H, W)`` maps, zero padding.

    Attributes:
        weight: float32 ``(C_out, C_in / groups, kH, kW)``.
        stride, padding: ``(y, x)`` pairs in pixels.
        groups: channel groups.
        bias: float32 ``(C_out,)`` added to every output pixel of its channel each step, or
            ``None``.

    Raises:
        ValueError: a 4-D kernel is not given, or stride < 1, padding < 0, or groups that do
            not divide the channels.
    """

    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    bias: np.ndarray | None = None
    op: ClassVar[str] = "conv"

    def __post_init__(self):
        object.__setattr__(self, "weight", _weights("Conv2d.weight", self.weight, 4))
        object.__setattr__(self, "stride", _pair("Conv2d.stride", self.stride))
        object.__setattr__(self, "padding", _pair("Conv2d.padding", self.padding))
        object.__setattr__(self, "groups", int(self.groups))
        if min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"Conv2d: stride must be >= 1 and padding >= 0, got "
                             f"{self.stride}, {self.padding}")
        if self.groups < 1 or self.weight.shape[0] % self.groups:
            raise ValueError(f"Conv2d: groups = {self.groups} must divide the "
                             f"{self.weight.shape[0]} output channels")
        _set_bias(self, "Conv2d")

    @property
    def kernel(self) -> tuple[int, int]:
        """``(kH, kW)``."""
        return tuple(self.weight.shape[2:])

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(C_out, H_out, W_out)`` for a ``(C, H, W)`` input (torch's formula).

        Raises:
            ValueError: not a ``(C, H, W)`` input, wrong channels, or an empty output.
        """
        if len(in_shape) != 3:
            raise ValueError(f"Conv2d takes a (C, H, W) input, got {tuple(in_shape)}")
        c, h, w = in_shape
        if c != self.weight.shape[1] * self.groups:
            raise ValueError(f"Conv2d takes {self.weight.shape[1] * self.groups} channels, got "
                             f"{c}")
        return _window_out(self.weight.shape[0], h, w, self.kernel, self.stride, self.padding)


def _set_bias(node, what: str) -> None:
    """Check and freeze ``node.bias``: ``None`` or float32 ``(weight.shape[0],)``."""
    if node.bias is None:
        return
    bias = _weights(f"{what}.bias", node.bias, 1)
    if bias.shape != (node.weight.shape[0],):
        raise ValueError(f"{what}.bias must have shape ({node.weight.shape[0]},), one entry per "
                         f"output {'channel' if what == 'Conv2d' else 'neuron'}, got "
                         f"{bias.shape}")
    object.__setattr__(node, "bias", bias)


def _window_out(c: int, h: int, w: int, kernel, stride, padding) -> tuple[int, int, int]:
    ho = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    wo = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"a {kernel} window with stride {stride} and padding {padding} leaves "
                         f"nothing of a {h}x{w} map")
    return (int(c), int(ho), int(wo))


@dataclass(frozen=True, eq=False)
class SumPool2d:
    """Sum pooling with one synaptic weight: ``a[c] = weight * sum_window x[c]``.

    ``torch.nn.AvgPool2d(k)`` is a sum pool of ``weight = 1 / (kH kW)`` (with
    ``count_include_pad`` and no ``ceil_mode``); NIR's ``SumPool2d`` has ``weight = 1``. On the
    chip it is a depthwise convolution with a constant kernel (lava-dl 0.6 ``netx/hdf5.py`` reads no pool
    layer).

    Attributes:
        kernel, stride, padding: ``(y, x)`` pairs in pixels.
        weight: the weight of every pooling synapse (float, > 0).

    Raises:
        ValueError: kernel or stride < 1, padding < 0, or ``weight`` not finite and > 0.
    """

    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    weight: float = 1.0
    op: ClassVar[str] = "sumpool"

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair("SumPool2d.kernel", self.kernel))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair("SumPool2d.stride", stride))
        object.__setattr__(self, "padding", _pair("SumPool2d.padding", self.padding))
        object.__setattr__(self, "weight", _finite("SumPool2d.weight", self.weight, True))
        if min(self.kernel) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(f"SumPool2d: kernel and stride must be >= 1, padding >= 0, got "
                             f"{self.kernel}, {self.stride}, {self.padding}")

    def kernel_weights(self, channels: int) -> np.ndarray:
        """The equivalent depthwise kernel, float32 ``(C, 1, kH, kW)`` filled with ``weight``."""
        return np.full((channels, 1, *self.kernel), self.weight, dtype=np.float32)

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """``(C, H_out, W_out)`` for a ``(C, H, W)`` input.

        Raises:
            ValueError: not a ``(C, H, W)`` input, or an empty output.
        """
        if len(in_shape) != 3:
            raise ValueError(f"SumPool2d takes a (C, H, W) input, got {tuple(in_shape)}")
        return _window_out(*in_shape, self.kernel, self.stride, self.padding)


@dataclass(frozen=True)
class Flatten:
    """``(C, H, W) -> (C*H*W,)`` in torch's ``x.flatten()`` order; carries no synapses."""

    op: ClassVar[str] = "flatten"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int]:
        """``(prod(in_shape),)``."""
        return (int(np.prod(in_shape)),)


SYNAPSES = (Dense, RecurrentDense, Conv2d, SumPool2d)
Synapse = Dense | RecurrentDense | Conv2d | SumPool2d


def synapse_to_dict(node) -> dict:
    """A synapse or :class:`Flatten` node as a JSON-ready dict (weights as nested lists)."""
    out = {"op": node.op}
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if f.name == "bias" and value is None:
            continue  # no bias: the dict of a bias-free node is what it was before biases
        out[f.name] = _array_field(value) if isinstance(value, np.ndarray) else \
            list(value) if isinstance(value, tuple) else value
    return out


_OPS = {cls.op: cls for cls in (*SYNAPSES, Flatten)}


def _node_from_dict(data: dict, key: str, registry: dict, what: str):
    """Build ``registry[data[key]]`` from the other entries of ``data``, refusing unknown
    keys by name."""
    data = dict(data)
    tag = data.pop(key, None)
    if tag not in registry:
        raise ValueError(f"unknown {what} {key} {tag!r}; known: {sorted(registry)}")
    cls = registry[tag]
    extra = set(data) - {f.name for f in dataclasses.fields(cls)}
    if extra:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(extra)}")
    return cls(**data)


def synapse_from_dict(data: dict):
    """Inverse of :func:`synapse_to_dict`.

    Raises:
        ValueError: an unknown ``op`` or fields that do not fit it (named).
    """
    return _node_from_dict(data, "op", _OPS, "synapse")


def neuron_from_dict(data: dict):
    """Inverse of ``neuron.to_dict()``.

    Raises:
        ValueError: an unknown ``kind`` or fields that do not fit it (named).
    """
    return _node_from_dict(data, "kind", NEURONS, "neuron")
