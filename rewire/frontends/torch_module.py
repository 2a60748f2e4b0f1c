"""IR -> torch: a runnable float module of an IR network (the direction opposite to the
frontends), e.g. what a NIR file imported for training or inspection becomes."""

from __future__ import annotations

import torch
from torch import nn

from rewire.ir.network import Network

__all__ = ["IRModule", "to_module"]


class IRModule(nn.Module):
    """A runnable Norse model of an IR network (float, the semantics of
    :mod:`rewire.ir.dynamics`): what a NIR file imported for training or inspection becomes.

    Shapes:
        input: ``(B, *input_shape)`` for ``current`` encoding (presented ``steps`` times,
        times ``input_gain``), else ``(T, B, *input_shape)``; output ``(T, B, *out_shape)``.
    """

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.network = network
        self.steps, self.encoding, self.input_gain = (network.steps, network.encoding,
                                                      network.input_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from rewire.ir import dynamics

        return dynamics.run(self.network, dynamics.encode(self.network, x))[-1]


def to_module(network: Network) -> IRModule:
    """A torch module running ``network`` (see :class:`IRModule`)."""
    return IRModule(network)
