r"""Convolutional spiking networks: Conv2d, sum pooling and Linear layers of Norse LIF cells.

:class:`SpikingConvNet` is the convolutional sibling of
:class:`rewire.training.model.SpikingMLP`, with the same interface (``encode``, ``step``,
``run_encoded``, ``forward``, ``steps``, ``encoding``, ``neuron``, ``input_gain``), so
:func:`rewire.training.train.train`, :func:`~rewire.training.train.evaluate`, the compiler and
the export pipeline take either. Every synaptic layer is followed by a Norse ``LIFCell`` (the
CUBA LIF step of Norse 1.1's ``norse/torch/functional/lif.py``, applied element-wise to ``(B, C, H, W)`` feature maps)::

    input (C, H, W) -> [Conv2d -> LIF -> (SumPool2d -> LIF)] x stages -> flatten
                    -> Linear -> LIF  (classes)

Pooling is a *sum pool with a fixed weight followed by LIF neurons*, the pooling block of
lava-dl SLAYER (``slayer.block.cuba.Pool``): output neuron ``(c, y, x)`` receives
``pool_weight * sum`` of the spikes of channel ``c`` in its ``k x k`` window (stride ``k``).
On the chip it is a depthwise (``groups = C``) convolution with a constant kernel, which the
compiler writes as a netx ``conv`` layer, because lava-dl 0.6's netx reader has no ``pool``
layer (``netx/hdf5.py``: ``create_pool`` raises ``NotImplementedError``). The pooling kernel is
a buffer, not a parameter: GradR prunes only the ``Conv2d`` and ``Linear`` weights
(:data:`rewire.training.gradr.PRUNABLE_TYPES`).

Inputs stay flat, ``(B, C*H*W)`` in torch's ``(C, H, W)`` order, as for the MLP; the model
reshapes them to ``input_shape`` itself, so data sets, encoders and the integer simulator all
see the same vectors.
"""

from __future__ import annotations

import math

import torch
from norse.torch import LIFCell
from torch import nn

from rewire.frontends.pooling import SumPool2d
from rewire.training.model import NeuronConfig, check_run_options, encode_steps, run_steps


def image_shape(num_features: int, channels: int = 1) -> tuple[int, int, int]:
    """``(C, H, W)`` of a flat square image with ``num_features`` values (784 -> (1, 28, 28)).

    Raises:
        ValueError: ``num_features / channels`` is not a perfect square.
    """
    side = math.isqrt(num_features // channels)
    if channels * side * side != num_features:
        raise ValueError(f"{num_features} features are not {channels} square image(s); "
                         f"give input_shape explicitly")
    return (channels, side, side)


class SpikingConvNet(nn.Module):
    """Convolutional SNN: conv stages (Conv2d -> LIF, optional SumPool2d -> LIF), then Linear.

    Args:
        input_shape: ``(C, H, W)`` of one input image (flat inputs are reshaped to it).
        channels: output channels of each conv stage, e.g. ``(8, 16)``.
        kernels: kernel size of each conv (square), same length as ``channels``.
        strides: stride of each conv (default 1 each).
        paddings: zero padding of each conv (default ``kernel // 2`` each).
        pools: sum-pooling window after each conv (1 = no pooling; default 2 each).
        classes: output neurons.
        steps: time steps ``T``.
        encoding: ``"current"`` or ``"rate"`` (as :class:`~rewire.training.model.SpikingMLP`).
        neuron: :class:`~rewire.training.model.NeuronConfig` shared by every layer.
        input_gain: constant-current gain (current encoding).
        pool_weight: weight of every pooling synapse (Norse current units; default 2.5, so a
            single input spike drives a pooling neuron over threshold within ~3 steps).

    Shapes:
        input: ``(B, C*H*W)`` float in [0, 1] (``(C, H, W)`` order, i.e. ``x.flatten(1)``).
        output: ``(T, B, classes)`` spikes (0/1 float).

    Attributes:
        layers: ``nn.ModuleList`` of the synaptic layers in order (``nn.Conv2d``,
            :class:`SumPool2d`, ``nn.Linear``); ``cells`` has one ``LIFCell`` per layer.
        shapes: ``(C, H, W)`` (or ``(n,)`` for Linear) output shape of every layer, input first.
        sizes: neurons per layer, input first (flat counts, like ``SpikingMLP.sizes``).

    Raises:
        ValueError: mismatched or non-positive sizes, a layer whose output would be empty,
            ``steps < 1`` or an unknown encoding.

    Example:
        >>> net = SpikingConvNet((1, 8, 8), channels=(2,), kernels=(3,), classes=3, steps=4)
        >>> net.sizes, net(torch.rand(5, 64)).shape
        ((64, 128, 32, 3), torch.Size([4, 5, 3]))
    """

    def __init__(self, input_shape: tuple[int, int, int] = (1, 28, 28),
                 channels: tuple[int, ...] = (8, 16), kernels: tuple[int, ...] = (5, 3),
                 strides: tuple[int, ...] | None = None,
                 paddings: tuple[int, ...] | None = None,
                 pools: tuple[int, ...] | None = None, classes: int = 10, steps: int = 8,
                 encoding: str = "current", neuron: NeuronConfig = NeuronConfig(),
                 input_gain: float = 4.0, pool_weight: float = 2.5) -> None:
        super().__init__()
        n = len(channels)
        strides = tuple(strides) if strides is not None else (1,) * n
        paddings = tuple(paddings) if paddings is not None else tuple(k // 2 for k in kernels)
        pools = tuple(pools) if pools is not None else (2,) * n
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) >= 1, got {input_shape}")
        if n < 1 or not len(kernels) == len(strides) == len(paddings) == len(pools) == n:
            raise ValueError(f"channels, kernels, strides, paddings and pools need one entry "
                             f"per conv stage, got {channels}, {kernels}, {strides}, "
                             f"{paddings}, {pools}")
        if min(channels) < 1 or min(kernels) < 1 or min(strides) < 1 or min(pools) < 1 \
                or min(paddings) < 0 or classes < 1:
            raise ValueError("channels, kernels, strides, pools and classes must be >= 1 and "
                             "paddings >= 0")
        check_run_options(steps, encoding, input_gain)
        self.input_shape, self.steps, self.encoding, self.neuron = input_shape, steps, \
            encoding, neuron
        self.input_gain, self.pool_weight = float(input_gain), float(pool_weight)
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for c, k, s, p, q in zip(channels, kernels, strides, paddings, pools):
            layers.append(nn.Conv2d(c_in, c, k, stride=s, padding=p, bias=False))
            if q > 1:
                layers.append(SumPool2d(c, q, pool_weight))
            c_in = c
        shapes = [input_shape]
        for layer in layers:  # torch's output size: floor((n + 2 p - k) / s) + 1
            c, h, w = shapes[-1]
            k, (s, p) = layer.weight.shape[-1], (layer.stride[0], layer.padding[0])
            h_out, w_out = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if min(h_out, w_out) < 1:
                raise ValueError(f"layer {len(shapes)} ({type(layer).__name__}, kernel {k}) "
                                 f"gets a {shapes[-1]} input and would output nothing; use a "
                                 f"smaller kernel/stride/pool or a larger input")
            shapes.append((layer.weight.shape[0], h_out, w_out))
        layers.append(nn.Linear(math.prod(shapes[-1]), classes, bias=False))
        shapes.append((classes,))
        self.layers = nn.ModuleList(layers)
        self.shapes = tuple(shapes)
        self.sizes = tuple(math.prod(s) for s in shapes)
        p = neuron.lif_parameters()
        self.cells = nn.ModuleList(LIFCell(p, dt=neuron.dt) for _ in layers)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Input per time step, ``(T, B, C*H*W)``: ``input_gain * x`` repeated, or Bernoulli
        spikes with probability ``x`` (as ``SpikingMLP.encode``)."""
        return encode_steps(x, self.steps, self.encoding, self.input_gain, generator)

    def step(self, x_t: torch.Tensor, states: list | None = None) -> tuple[torch.Tensor, list]:
        """Advance every layer by one time step.

        Args:
            x_t: input current or spikes at this step, ``(B, C*H*W)``.
            states: per-layer Norse ``LIFFeedForwardState`` (``None`` = rest).

        Returns:
            ``(z, states)``: output spikes ``(B, classes)`` and the new states.
        """
        states = list(states) if states is not None else [None] * len(self.cells)
        z = x_t.reshape(x_t.shape[0], *self.input_shape)
        for k, (layer, cell) in enumerate(zip(self.layers, self.cells)):
            if isinstance(layer, nn.Linear):
                z = z.flatten(1)
            z, states[k] = cell(layer(z), states[k])
        return z, states

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.run_encoded(self.encode(x, generator))

    def layer_rates(self, x: torch.Tensor) -> list[float]:
        """Mean firing rate (spikes per neuron per step) of every layer on input ``(B, C*H*W)``."""
        states, totals = [None] * len(self.layers), [0.0] * len(self.layers)
        with torch.no_grad():
            for x_t in self.encode(x):
                z = x_t.reshape(x_t.shape[0], *self.input_shape)
                for k, (layer, cell) in enumerate(zip(self.layers, self.cells)):
                    z, states[k] = cell(layer(z.flatten(1) if isinstance(layer, nn.Linear)
                                              else z), states[k])
                    totals[k] += float(z.mean()) / self.steps
        return totals

    @torch.no_grad()
    def init_rates(self, x: torch.Tensor, target: float = 0.1, iters: int = 8) -> list[float]:
        """Data-driven initialisation: rescale each trainable layer's weight, input side first,
        so that its mean firing rate on ``x`` is close to ``target`` (in the spirit of LSUV,
        Mishkin & Matas, ICLR 2016). A silent spiking layer passes no surrogate gradient
        (Norse's SuperSpike derivative is ~1e-4 far below threshold), so a default-initialised
        deep conv SNN does not learn; this fixes the starting activity instead.

        Args:
            x: a batch of inputs ``(B, C*H*W)`` (a few hundred training images suffice).
            target: wanted spikes per neuron per step, in (0, 1).
            iters: bisection steps on ``log2`` of each layer's multiplier.

        Returns:
            The mean firing rate of every layer afterwards.

        Raises:
            ValueError: ``target`` outside (0, 1).
        """
        if not 0 < target < 1:
            raise ValueError(f"target rate must be in (0, 1), got {target}")
        for k, layer in enumerate(self.layers):
            if isinstance(layer, SumPool2d):
                continue
            base = layer.weight.detach().clone()
            lo, hi = -2.0, 6.0  # log2 of the multiplier
            for _ in range(iters):
                mid = (lo + hi) / 2
                layer.weight.copy_(base * 2 ** mid)
                lo, hi = (mid, hi) if self.layer_rates(x)[k] < target else (lo, mid)
            layer.weight.copy_(base * 2 ** ((lo + hi) / 2))
        return self.layer_rates(x)

    def run_encoded(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run already-encoded input ``(T, B, C*H*W)``; return output spikes ``(T, B, classes)``."""
        return run_steps(self.step, inputs)

