r"""Xylo's neuron as a torch cell: :class:`LIFBitshiftCell`, the training form of the IR's
:class:`rewire.ir.neurons.BitshiftLIF` (SynSense Xylo Audio 2; rockpool 3.1's
``LIFBitshiftTorch`` is the vendor's version).

Norse has no cell whose decays are bit shifts, applies the input to ``v`` a step late and
resets by subtraction with several spikes per step, so rewire ships this one, beside the
Norse cells it lowers (:mod:`rewire.frontends.pooling` keeps :class:`SumPool2d` the same
way). Its sub-threshold step *is* :func:`rewire.ir.dynamics.bitshift_subthreshold`, so a
trained model and its IR give the same float32 bits; its spike function has a surrogate
gradient (:class:`MultiSpike`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from rewire.ir.dynamics import bitshift_subthreshold
from rewire.ir.neurons import BitshiftLIF

__all__ = ["LIFBitshiftCell", "LIFBitshiftState", "MultiSpike"]

#: SuperSpike's sharpness below the threshold (Norse 1.1's default ``alpha = 100``, on
#: ``v / v_th``): Zenke & Ganguli, Neural Computation 30(6), 2018, eq. 5.
SURROGATE_ALPHA = 100.0


class LIFBitshiftState(NamedTuple):
    """State of a :class:`LIFBitshiftCell`: ``v`` (membrane) and ``i`` (synaptic current),
    float tensors ``(B, n)``."""

    v: torch.Tensor
    i: torch.Tensor


class MultiSpike(torch.autograd.Function):
    r"""``n = [v >= th] min(floor(v / th), most)`` spikes per step (rockpool 3.1
    ``LIFTorch``'s ``max_spikes_per_dt``; sinabs 3 ``MultiSpike``), with a surrogate
    gradient: below the threshold SuperSpike's :math:`1 / (\alpha |v/th - 1| + 1)^2 / th`
    (Zenke & Ganguli 2018, eq. 5), between ``th`` and ``(most + 1) th`` the staircase's mean
    slope ``1 / th`` (a straight-through estimate), 0 above.

    Shapes:
        ``v`` any shape, float; ``th`` a positive float; ``most`` an int >= 1; ``alpha``
        (optional) the sharpness, default :data:`SURROGATE_ALPHA` (a cell's
        ``surrogate_alpha`` attribute, where set, gives it).
    """

    @staticmethod
    def forward(ctx, v, th: float, most: int, alpha: float = SURROGATE_ALPHA):
        ctx.save_for_backward(v)
        ctx.th, ctx.most, ctx.alpha = th, most, alpha
        count = torch.clamp(torch.floor(v / th), 0, most)
        return count * (v - th >= 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        th, most = ctx.th, ctx.most
        x = v / th - 1.0
        below = 1.0 / (ctx.alpha * x.abs() + 1.0) ** 2
        slope = torch.where(x < 0, below, torch.where(x < most, torch.ones_like(x),
                                                      torch.zeros_like(x)))
        return grad * slope / th, None, None, None


class LIFBitshiftCell(nn.Module):
    r"""One step of a layer of Xylo neurons (:class:`rewire.ir.neurons.BitshiftLIF`):
    ``(z, state) = cell(a, state)``, as Norse's ``LIFCell`` is called.

    With :math:`j = i + a`: :math:`i' = j - 2^{-d_s} j`, :math:`v' = v - 2^{-d_m} v + i'`,
    ``z = [v' >= v_th] min(floor(v' / v_th), max_spikes)``, ``v' <- v' - z v_th`` (the reset
    with ``z`` detached, as Norse detaches its reset).

    Args:
        dash_syn, dash_mem: the decays as bit shifts (integers >= 0; Xylo: 0..15).
        v_th: threshold (> 0).
        max_spikes: most spikes per step (Xylo: up to 31 in a hidden layer, 1 in the readout).
        dt: the step in s (written to NIR as ``tau = dt 2**dash``).

    Shapes:
        ``a``: ``(B, n)`` float; state tensors ``(B, n)``; ``z``: ``(B, n)`` spike counts.

    Raises:
        ValueError: as :class:`~rewire.ir.neurons.BitshiftLIF` (a non-integer ``dash``,
            ``v_th <= 0``, ``max_spikes < 1``).

    Example:
        >>> cell = LIFBitshiftCell(dash_syn=2, dash_mem=4, v_th=30.0, max_spikes=31)
        >>> z, s = cell(torch.tensor([[300.0]]))
        >>> z.item(), s.i.item(), s.v.item()
        (7.0, 225.0, 15.0)
    """

    def __init__(self, dash_syn: int, dash_mem: int, v_th: float = 1.0, max_spikes: int = 1,
                 dt: float = 1e-3) -> None:
        super().__init__()
        self.neuron = BitshiftLIF(dash_syn=dash_syn, dash_mem=dash_mem, v_th=v_th, dt=dt,
                                  max_spikes=max_spikes)

    @property
    def dash_syn(self) -> int:
        return self.neuron.dash_syn

    @property
    def dash_mem(self) -> int:
        return self.neuron.dash_mem

    @property
    def v_th(self) -> float:
        return self.neuron.v_th

    @property
    def max_spikes(self) -> int:
        return self.neuron.max_spikes

    def extra_repr(self) -> str:
        n = self.neuron
        return (f"dash_syn={n.dash_syn}, dash_mem={n.dash_mem}, v_th={n.v_th}, "
                f"max_spikes={n.max_spikes}")

    def forward(self, a: torch.Tensor, state: LIFBitshiftState | None = None
                ) -> tuple[torch.Tensor, LIFBitshiftState]:
        if state is None:
            zeros = torch.zeros_like(a)
            state = LIFBitshiftState(zeros, zeros)
        v, i = bitshift_subthreshold(self.neuron, [a], state.i, state.v)
        z = MultiSpike.apply(v, float(self.neuron.v_th), int(self.neuron.max_spikes),
                             float(getattr(self, "surrogate_alpha", SURROGATE_ALPHA)))
        v = v - z.detach() * torch.as_tensor(self.neuron.v_th, dtype=v.dtype)
        return z, LIFBitshiftState(v, i)
