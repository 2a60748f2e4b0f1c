"""The networks researchers write (issue 22's list), built as their libraries' docs write them
and trained briefly on the shipped digits (8x8, 10 classes) with a plain torch loop, for the
end-to-end tests in ``test_field_models.py``.

Every model takes ``(T, B, ...)`` input (``current`` encoding: the digit repeated every step,
times ``GAIN``) and returns output spikes ``(T, B, 10)``; the class is the most spikes.
"""

from __future__ import annotations

import torch
from norse.torch import LIFBoxCell, LIFCell, LIFRecurrentCell, SequentialState
from torch import nn

from rewire.training.data import load_digits_split

STEPS, GAIN = 16, 4.0


def norse_mlp() -> nn.Module:
    """(1) Norse's docs MLP: ``nn.Linear`` with its default bias."""
    return SequentialState(nn.Linear(64, 128), LIFCell(), nn.Linear(128, 10), LIFCell())


def norse_bn_conv() -> nn.Module:
    """(2) A Norse conv net with ``BatchNorm2d`` after each conv (eval mode when compiled)."""
    return SequentialState(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), LIFBoxCell(),
                           nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                           LIFBoxCell(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10), LIFBoxCell())


def norse_recurrent_chain() -> nn.Module:
    """(3) ``Linear -> LIFRecurrentCell -> Linear -> LIFCell``."""
    return SequentialState(nn.Linear(64, 32), LIFRecurrentCell(32, 24), nn.Linear(24, 10),
                           LIFCell())


def digits(n_train: int | None = None):
    """``(x_train, y_train, x_test, y_test)``: flat ``(N, 64)`` in [0, 1]."""
    s = load_digits_split()
    xtr, ytr = s.x_train, s.y_train
    if n_train:
        xtr, ytr = xtr[:n_train], ytr[:n_train]
    return xtr, ytr, s.x_test, s.y_test


def encode(x: torch.Tensor, shape=(64,)) -> torch.Tensor:
    """``(B, 64)`` -> ``(T, B, *shape)``: the digit times ``GAIN`` at every step."""
    x = x.reshape(len(x), *shape) * GAIN
    return x.unsqueeze(0).expand(STEPS, *x.shape)


def run(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """A ``SequentialState`` model over ``(T, B, ...)``: output spikes ``(T, B, C)``."""
    state, out = None, []
    for x_t in x_seq:
        z, state = model(x_t, state)
        out.append(z)
    return torch.stack(out)


def fit(model: nn.Module, shape=(64,), epochs: int = 3, seed: int = 0,
        lr: float = 2e-3) -> nn.Module:
    """Train ``model`` with Adam on the spike counts' cross-entropy; returns it in eval
    mode (a BatchNorm then uses its running statistics, as the compiler folds them)."""
    torch.manual_seed(seed)
    xtr, ytr, _, _ = digits()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            counts = run(model, encode(xtr[idx], shape)).sum(0)
            loss = nn.functional.cross_entropy(counts, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, shape=(64,)) -> float:
    _, _, x, y = digits()
    return float((run(model, encode(x, shape)).sum(0).argmax(-1) == y).float().mean())
