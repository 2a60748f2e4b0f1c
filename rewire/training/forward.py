"""How :func:`rewire.training.train.train` runs any model on its input and reads its output
spikes (see :mod:`rewire.training.feed` for the three kinds of model)."""

from __future__ import annotations

from typing import Callable

import torch
from norse.torch import SequentialState
from torch import nn
from torch.nn import functional as F

from rewire.frontends.run_options import presents_own_input
from rewire.training.model import spike_count_logits

__all__ = ["is_rewire_model", "is_stepwise", "first_output", "run_stepwise", "default_forward",
           "default_loss", "Runner", "check_output"]


def is_rewire_model(model: nn.Module) -> bool:
    """Whether ``model`` encodes its own dense input (rewire's ``SpikingMLP`` and
    ``SpikingConvNet``: ``encode`` and ``run_encoded`` methods), as the frontend reads it
    (:func:`rewire.frontends.run_options.presents_own_input`)."""
    return presents_own_input(model)


def is_stepwise(model: nn.Module) -> bool:
    """Whether ``model`` is called once per time step, ``model(x_t, state) -> (out, state)``
    (a Norse ``SequentialState``, or a single Norse cell), rather than on the whole
    ``(T, B, ...)`` input."""
    if isinstance(model, SequentialState):
        return True
    return type(model).__module__.startswith("norse.") and hasattr(model, "state_fallback")


def first_output(out):
    """The output spikes of what a forward returned: the first element of a tuple/list."""
    while isinstance(out, (tuple, list)):
        if not out:
            raise ValueError("forward returned an empty tuple; return the output spikes "
                             "(T, B, classes)")
        out = out[0]
    return out


def run_stepwise(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Call a step-wise model once per time step of ``inputs`` ``(T, B, ...)`` from rest;
    return the stacked outputs ``(T, B, ...)``."""
    state, out = None, []
    for x_t in inputs:
        z, state = model(x_t, state)
        out.append(first_output(z))
    return torch.stack(out)


def default_forward(model: nn.Module, inputs: torch.Tensor, encoded: bool = True):
    """rewire's forward of any model on ``inputs`` (see the module docstring): ``(T, B, ...)``
    encoded input (or, for rewire's own models with ``encoded=False``, dense ``(B, F)``);
    returns what the model returns."""
    if is_rewire_model(model):
        return model.run_encoded(inputs) if encoded else model(inputs)
    if is_stepwise(model):
        return run_stepwise(model, inputs)
    return model(inputs)


def default_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the output spike counts ``out.sum(0)`` ``(B, classes)`` against the
    labels ``y`` ``(B,)``: rewire's training loss."""
    return F.cross_entropy(spike_count_logits(out), y)


class Runner(nn.Module):
    """The model and its forward as one module (so ``DistributedDataParallel`` sees one
    forward per batch, even for a step-wise model called ``T`` times).

    Args:
        model: the user's model.
        forward: ``forward(model, inputs) -> output`` or ``None`` for :func:`default_forward`.
    """

    def __init__(self, model: nn.Module, forward: Callable | None = None) -> None:
        super().__init__()
        self.model = model
        self.user_forward = forward

    def forward(self, inputs: torch.Tensor, encoded: bool = True) -> torch.Tensor:
        if self.user_forward is not None:
            return first_output(self.user_forward(self.model, inputs))
        return first_output(default_forward(self.model, inputs, encoded))


def check_output(out, batch: int, classes_needed: int, where: str) -> None:
    """Refuse an output that is not spikes ``(T, B, C)`` with ``C > max label``.

    Raises:
        ValueError: naming the shape and the fix.
    """
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[1] != batch:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{where}: the forward returned {shape} for a batch of {batch}; the "
                         f"loss and the accuracy read output spikes (T, B, classes) (the first "
                         f"element when the model returns a tuple): return them, or give "
                         f"forward=... that does")
    if out.shape[2] < classes_needed:
        raise ValueError(f"{where}: labels go up to {classes_needed - 1} but the model has "
                         f"{out.shape[2]} output neurons; give it one per class")
