"""Torch building blocks the Norse frontend lowers as they are: :class:`SumPool2d`.

rewire's own convolutional model (:class:`rewire.training.conv.SpikingConvNet`) imports its
pooling layer from here, so the frontend knows it without importing the training package and
without anything registered at import time.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["SumPool2d"]


class SumPool2d(nn.Module):
    """Sum pooling with a fixed weight: ``y[c] = weight * sum_{k x k window} x[c]``.

    A depthwise convolution (``groups = channels``) with a constant, non-trainable kernel of
    shape ``(channels, 1, kernel, kernel)`` and stride ``kernel`` (no padding; a remainder row
    or column is dropped, as ``torch.nn.AvgPool2d`` does).

    Args:
        channels: feature maps in (= out).
        kernel: window size and stride (pixels).
        weight: synaptic weight of every input in the window (float, Norse current units).

    Shapes:
        ``(B, C, H, W) -> (B, C, H // kernel, W // kernel)``.

    Raises:
        ValueError: ``channels`` or ``kernel`` < 1, or ``weight <= 0``.

    Example:
        >>> SumPool2d(2, 2, weight=1.0)(torch.ones(1, 2, 5, 4)).tolist()[0][0]
        [[4.0, 4.0], [4.0, 4.0]]
    """

    def __init__(self, channels: int, kernel: int, weight: float) -> None:
        super().__init__()
        if channels < 1 or kernel < 1:
            raise ValueError(f"SumPool2d: channels and kernel must be >= 1, got {channels}, "
                             f"{kernel}")
        if not weight > 0:
            raise ValueError(f"SumPool2d: weight must be > 0, got {weight}")
        self.channels, self.kernel = int(channels), int(kernel)
        self.register_buffer("weight", torch.full((channels, 1, kernel, kernel), float(weight)))

    @property
    def stride(self) -> tuple[int, int]:
        return (self.kernel, self.kernel)

    @property
    def padding(self) -> tuple[int, int]:
        return (0, 0)

    @property
    def groups(self) -> int:
        return self.channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, stride=self.kernel, groups=self.channels)

