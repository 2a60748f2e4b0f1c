"""Norse models written as Norse's documentation writes them, shared by the tests and the
benchmarks (``benchmarks/qat.py``): each has its own time loop over ``x`` ``(T, B, n_in)``
spikes and returns output spikes ``(T, B, n_out)``."""

from __future__ import annotations

import torch
from norse.torch import LIFCell, LIFRecurrentCell
from torch import nn


class Recurrent(nn.Module):
    """``LIFRecurrentCell(64, hidden)`` -> ``Linear(hidden, 10)`` -> ``LIFCell``."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.rec = LIFRecurrentCell(64, hidden)
        self.fc = nn.Linear(hidden, 10, bias=False)
        self.out = LIFCell()

    def forward(self, x):
        s1 = s2 = None
        outputs = []
        for t in range(x.shape[0]):
            z, s1 = self.rec(x[t], s1)
            z, s2 = self.out(self.fc(z), s2)
            outputs.append(z)
        return torch.stack(outputs)


class ResidualNet(nn.Module):
    """A residual block with both shortcuts of He et al. (CVPR 2016, eq. 1): fc1 -> cell1 ->
    ``fc2(z1) + z1`` (identity) -> cell2 -> ``fc3(z2) + proj(x)`` (projection) -> cell3."""

    def __init__(self, cell=LIFCell, n_in=16, hidden=32, n_out=10):
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden, bias=False)
        self.cell1 = cell()
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        self.cell2 = cell()
        self.proj = nn.Linear(n_in, n_out, bias=False)
        self.fc3 = nn.Linear(hidden, n_out, bias=False)
        self.cell3 = cell()

    def forward(self, x):  # x: (T, B, n_in) spikes
        s1 = s2 = s3 = None
        out = []
        for x_t in x:
            z1, s1 = self.cell1(self.fc1(x_t), s1)
            z2, s2 = self.cell2(self.fc2(z1) + z1, s2)
            z3, s3 = self.cell3(self.fc3(z2) + self.proj(x_t), s3)
            out.append(z3)
        return torch.stack(out)
