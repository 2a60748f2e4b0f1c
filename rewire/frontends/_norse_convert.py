"""Norse frontend, the converter map: one ``converter(module, path)`` per torch/Norse module
type, returning IR nodes (:mod:`rewire.ir.nodes`). The Norse cells are read as Norse 1.1
writes them (``norse/torch/functional/lif.py``: ``LIFParameters``, Euler step at ``dt``);
:func:`register` adds a type explicitly. See :mod:`rewire.frontends.norse` for what each
module lowers to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from norse.torch import (IAFCell, LIBoxCell, LICell, LIFBoxCell, LIFCell, LIFRecurrentCell,
                         SequentialState)
from torch import nn

from rewire.errors import LoweringError
from rewire.frontends.bitshift import LIFBitshiftCell
from rewire.frontends.pooling import SumPool2d
from rewire.ir import nodes as ir

__all__ = ["CONVERTERS", "register", "is_stateful"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _scalar_param(cell: nn.Module, p, field_name: str, path: str) -> float:
    value = torch.as_tensor(getattr(p, field_name)).detach().cpu()
    if value.numel() != 1 and not torch.all(value == value.reshape(-1)[0]):
        raise LoweringError(f"{path} ({type(cell).__name__}): {field_name} differs between "
                            f"neurons ({value.numel()} values); a chip layer has one "
                            f"{field_name}: use one value per layer", path)
    return float(value.reshape(-1)[0])


def _check_reset(cell: nn.Module, p, path: str) -> None:
    reset = getattr(p, "reset_method", None)
    if reset is not None and getattr(reset, "__name__", "") not in ("reset_value", ""):
        raise LoweringError(f"{path} ({type(cell).__name__}): reset_method "
                            f"{getattr(reset, '__name__', reset)!r}; the chip resets v to "
                            f"v_reset (Norse's reset_value): use that", path)


def _dt(cell: nn.Module) -> float:
    return float(getattr(cell, "dt", 1e-3))


def _lif(cell, path):
    p = cell.p
    g = lambda f: _scalar_param(cell, p, f, path)  # noqa: E731
    return ir.CubaLIF(g("tau_syn_inv"), g("tau_mem_inv"), g("v_th"), g("v_leak"), g("v_reset"),
                      _dt(cell))


def _lif_box(cell, path):
    p = cell.p
    _check_reset(cell, p, path)
    g = lambda f: _scalar_param(cell, p, f, path)  # noqa: E731
    return ir.LIF(g("tau_mem_inv"), g("v_th"), g("v_leak"), g("v_reset"), _dt(cell))


def _iaf(cell, path):
    g = lambda f: _scalar_param(cell, cell.p, f, path)  # noqa: E731
    return ir.IF(g("v_th"), g("v_reset"), _dt(cell))


def _li(cell, path):
    g = lambda f: _scalar_param(cell, cell.p, f, path)  # noqa: E731
    return ir.CubaLI(g("tau_syn_inv"), g("tau_mem_inv"), g("v_leak"), _dt(cell))


def _li_box(cell, path):
    g = lambda f: _scalar_param(cell, cell.p, f, path)  # noqa: E731
    return ir.LI(g("tau_mem_inv"), g("v_leak"), _dt(cell))


def _bias(module: nn.Module):
    """The module's bias as float64 numpy, or ``None`` (``bias=False``)."""
    bias = getattr(module, "bias", None)
    return None if bias is None else _np(bias)


def _linear(m: nn.Linear, path):
    return ir.Dense(_np(m.weight), _bias(m))


def _conv(m: nn.Conv2d, path):
    if tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise LoweringError(f"{path} (Conv2d): dilation {tuple(m.dilation)}, padding_mode "
                            f"{m.padding_mode!r}, padding {m.padding!r}; the chip's conv "
                            f"takes dilation 1 and integer zero padding", path)
    return ir.Conv2d(_np(m.weight), tuple(m.stride), tuple(m.padding), m.groups, _bias(m))


@dataclass(frozen=True)
class Norm:
    """An eval-mode BatchNorm, folded by the frontend into the synapse right before it
    (:func:`rewire.ir.fuse.fold_batchnorm`); float64 ``(C,)`` statistics."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, path):
    name = type(m).__name__
    if m.training:
        raise LoweringError(f"{path} ({name}): in training mode it normalizes with each "
                            f"batch's own statistics, which the chip cannot; call model.eval() "
                            f"before lowering (its running statistics are then folded into "
                            f"the weights of the layer before it)", path)
    if m.running_mean is None or m.running_var is None:
        raise LoweringError(f"{path} ({name}): track_running_stats=False, so it has no "
                            f"statistics to fold and normalizes every batch by itself; build "
                            f"it with track_running_stats=True and train again, or remove it",
                            path)
    c = m.num_features
    gamma = _np(m.weight) if m.weight is not None else np.ones(c)
    beta = _np(m.bias) if m.bias is not None else np.zeros(c)
    return Norm(gamma, beta, _np(m.running_mean), _np(m.running_var), float(m.eps))


def _avgpool(m: nn.AvgPool2d, path):
    if m.ceil_mode:
        raise LoweringError(f"{path} (AvgPool2d): ceil_mode=True has windows of varying size; "
                            f"use ceil_mode=False", path)
    kernel = (m.kernel_size, m.kernel_size) if isinstance(m.kernel_size, int) \
        else tuple(m.kernel_size)
    if m.padding not in (0, (0, 0)) and not m.count_include_pad:
        raise LoweringError(f"{path} (AvgPool2d): padding with count_include_pad=False "
                            f"divides edge windows differently; use padding=0", path)
    div = m.divisor_override or kernel[0] * kernel[1]
    stride = m.stride if m.stride is not None else kernel
    return ir.SumPool2d(kernel, stride, m.padding, 1.0 / div)


def _recurrent(cell: LIFRecurrentCell, path):
    w_rec = _np(cell.recurrent_weights)
    if not cell.autapses:
        np.fill_diagonal(w_rec, 0.0)
    neuron = _lif(cell, path)
    return [ir.RecurrentDense(_np(cell.input_weights), w_rec), neuron]


def _bitshift(cell: LIFBitshiftCell, path):
    """The cell's own IR neuron (:class:`~rewire.ir.neurons.BitshiftLIF`, ``dt`` included):
    the cell's step is that node's float step, so nothing is converted."""
    return cell.neuron


def _sum_pool(m: SumPool2d, path):
    return ir.SumPool2d(m.kernel, m.kernel, 0, float(m.weight.reshape(-1)[0]))


#: Module type -> ``converter(module, path)`` returning an IR node, a list of nodes, or
#: ``None`` (the module is an identity at inference and is skipped).
CONVERTERS: dict[type, Callable] = {
    nn.Linear: _linear, nn.Conv2d: _conv, nn.AvgPool2d: _avgpool,
    nn.Flatten: lambda m, p: ir.Flatten(), nn.Identity: lambda m, p: None,

    nn.Dropout: lambda m, p: None,
    nn.BatchNorm1d: _batchnorm, nn.BatchNorm2d: _batchnorm,
    LIFCell: _lif, LIFBoxCell: _lif_box, IAFCell: _iaf, LICell: _li, LIBoxCell: _li_box,
    LIFRecurrentCell: _recurrent, SumPool2d: _sum_pool, LIFBitshiftCell: _bitshift,
}
#: Modules whose output is ``(out, state)``.
STATEFUL: list[type] = [LIFCell, LIFBoxCell, IAFCell, LICell, LIBoxCell, LIFRecurrentCell,
                         LIFBitshiftCell]
#: Parameters each converter lowers (everything else a module holds must be absent).
_LOWERED = {nn.Linear: ("weight", "bias"), nn.Conv2d: ("weight", "bias"),
            LIFRecurrentCell: ("input_weights", "recurrent_weights"), SumPool2d: ("weight",),
            **{bn: ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
               for bn in (nn.BatchNorm1d, nn.BatchNorm2d)}}


def register(module_type: type, converter: Callable, stateful: bool = False,
             lowered: tuple[str, ...] = ()) -> None:
    """Teach the frontend a module type.

    Args:
        module_type: the ``nn.Module`` subclass.
        converter: ``converter(module, path)`` -> IR node, list of nodes, or ``None``.
        stateful: the module returns ``(out, state)`` (a neuron cell).
        lowered: names of the module's own parameters/buffers the converter carries into the
            IR (the others make :func:`lower` refuse).

    Registration is explicit (call this before :func:`rewire.frontends.norse.lower`); no module
    of rewire registers anything when it is imported.
    """
    CONVERTERS[module_type] = converter
    if stateful and module_type not in STATEFUL:
        STATEFUL.append(module_type)
    _LOWERED[module_type] = tuple(lowered)


def _converter(module: nn.Module):
    for cls in type(module).__mro__:
        if cls in CONVERTERS:
            return cls, CONVERTERS[cls]
    return None, None


def _is_container(module: nn.Module) -> bool:
    return isinstance(module, (nn.Sequential, SequentialState, nn.ModuleList))


def _supported() -> str:
    return ", ".join(sorted(c.__name__ for c in CONVERTERS))


def _unsupported(module: nn.Module, path: str, why: str = "") -> LoweringError:
    hint = {"MaxPool2d": "use AvgPool2d (a sum pool on the chip) or a strided Conv2d",
            "LIF": "use LIFCell (one step) inside your time loop or a SequentialState",
            "LIFBox": "use LIFBoxCell (one step) inside your time loop"}
    name = type(module).__name__
    fix = hint.get(name, f"supported modules: {_supported()}")
    return LoweringError(f"{path or '<model>'} ({name}): {why or 'no mapping to the IR'}; "
                         f"{fix}", path)



def is_stateful(module: nn.Module) -> bool:
    """Whether ``module`` returns ``(out, state)`` (a neuron cell)."""
    return isinstance(module, tuple(STATEFUL))


def _parametrization(path: str) -> bool:
    """Whether a module path lies inside a ``torch.nn.utils.parametrize`` container (the
    parametrized tensor, e.g. GradR's ``s * relu(theta)`` weight, is what is lowered)."""
    return "parametrizations" in path.split(".")
