"""The chip's weight grid as a ``torch.nn.utils.parametrize`` parametrization with a
straight-through gradient (:class:`ChipGrid`), the graded input's payload grid
(:class:`InputGrid`) and the helpers that switch them off or remove them; used by
:mod:`rewire.training.qat` (whose docstring has the equations and the sources).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["ChipGrid", "InputGrid", "qat_grids", "grid_off", "remove_qat"]

class _GridFn(torch.autograd.Function):
    """Forward: the grid value; backward: the gradient unchanged (straight through)."""

    @staticmethod
    def forward(ctx, w, k, step, wmag):
        q = torch.round(w.detach().double() * (k / step)) * step
        return (q.clamp(-wmag, wmag) / k).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None


class ChipGrid(nn.Module):
    r"""Parametrization ``w -> clip(step round(w k / step), +-wmag) / k`` with a
    straight-through gradient; ``k = g c_in S`` is set by :meth:`set` (the identity until
    then, or while :attr:`on` is ``False``).

    Shapes: any weight shape; the output has the input's shape and dtype. The rounding is done
    in float64, as the compiler does it, so the grid value is the compiler's integer over ``k``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.k, self.step, self.wmag, self.on = 0.0, 1, 0, True

    def set(self, k: float, step: int, wmag: int) -> None:
        """Use ``k`` (float weight -> integer units), the grid ``step`` and ``wmag``."""
        self.k, self.step, self.wmag = float(k), int(step), int(wmag)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.on or not self.k > 0:
            return w
        return _GridFn.apply(w, self.k, self.step, self.wmag)

    def integers(self, w: torch.Tensor) -> np.ndarray:
        """The compiler's integers of float weights ``w`` (int64, ``w``'s shape)."""
        q = np.round(w.detach().double().cpu().numpy() * (self.k / self.step)) * self.step
        return np.clip(q, -self.wmag, self.wmag).astype(np.int64)


class InputGrid:
    """Forward pre-hook of the first layer under ``current`` encoding: its input ``g x`` becomes
    ``g round(x p) / p`` (the chip's integer payload ``p`` per unit of input, which the compiler
    picks; :attr:`unit` = ``g / p``), so the float model sees the input the chip sees."""

    def __init__(self) -> None:
        self.unit = 0.0

    def __call__(self, module, args):
        if not self.unit > 0:
            return None
        x = args[0]
        return (torch.round(x.double() / self.unit) * self.unit).to(x.dtype), *args[1:]


def qat_grids(model: nn.Module):
    """``(module, tensor name, ChipGrid)`` of every grid on ``model``."""
    for module in model.modules():
        if parametrize.is_parametrized(module):
            for pname, plist in module.parametrizations.items():
                for p in plist:
                    if isinstance(p, ChipGrid):
                        yield module, pname, p


@contextlib.contextmanager
def grid_off(model: nn.Module):
    """Within the block, ``model``'s weights are the plain (GradR) ones: what the compiler
    must see to compute the grid (a weight already on its grid need not compile to the same
    ``S``)."""
    grids = [g for _, _, g in qat_grids(model)]
    before = [g.on for g in grids]
    for g in grids:
        g.on = False
    held = getattr(model, "_rewire_qat_input", None)  # (module, hook, handle)
    if held is not None:
        held[2].remove()
    try:
        yield model
    finally:
        for g, on in zip(grids, before):
            g.on = on
        if held is not None:
            model._rewire_qat_input = (held[0], held[1],
                                       held[0].register_forward_pre_hook(held[1]))


def remove_qat(model: nn.Module) -> nn.Module:
    """Remove every :class:`ChipGrid` from ``model`` (in place), leaving its GradR
    parametrization (and the rounded thresholds and decays) as they are; returns ``model``."""
    held = getattr(model, "_rewire_qat_input", None)
    if held is not None:
        held[2].remove()
        del model._rewire_qat_input
    for module, pname, grid in list(qat_grids(model)):
        plist = module.parametrizations[pname]
        if len(plist) == 1:
            parametrize.remove_parametrizations(module, pname, leave_parametrized=False)
        else:
            del plist[[i for i, p in enumerate(plist) if p is grid][0]]
    return model
