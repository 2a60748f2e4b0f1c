"""How a batch is read: dense input ``(B, *S)`` or spike trains ``(B, T, *S)`` / ``(T, B, *S)``
against a model's per-sample input shape ``S`` (see :mod:`rewire.training.feed`)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from norse.torch import LIFRecurrentCell
from torch import nn

__all__ = ["TIME_AXES", "sample_shape", "Layout", "detect_layout", "check_spikes",
           "check_fused_chains"]

TIME_AXES = (0, 1)


def sample_shape(model: nn.Module, input_shape: tuple | None = None) -> tuple:
    """Per-sample input shape ``S`` of ``model`` (``None`` entries: any size).

    Read from ``input_shape``, else the model's ``input_shape`` attribute or ``sizes[0]``
    (rewire's models), else its first synaptic module: ``Linear`` ``(in_features,)``,
    ``LIFRecurrentCell`` ``(input_size,)``, ``Conv2d`` ``(in_channels, None, None)``.

    Raises:
        ValueError: none of these is found (pass ``input_shape=``).
    """
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, (tuple, list)) and shape:
        return tuple(int(s) for s in shape)
    sizes = getattr(model, "sizes", None)
    if isinstance(sizes, (tuple, list)) and sizes:
        return (int(sizes[0]),)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return (int(m.in_features),)
        if isinstance(m, LIFRecurrentCell):
            return (int(m.input_size),)
        if isinstance(m, nn.Conv2d):
            return (int(m.in_channels), None, None)
        if isinstance(m, nn.Conv1d):
            return (int(m.in_channels), None)
    raise ValueError(f"{type(model).__name__}: cannot tell the per-sample input shape (no "
                     f"Linear, LIFRecurrentCell or Conv); pass input_shape=(...)")


def _matches(shape: tuple, expected: tuple) -> bool:
    return len(shape) == len(expected) and all(e is None or s == e
                                               for s, e in zip(shape, expected))


@dataclass(frozen=True)
class Layout:
    """How the batches of a data source are read (see the module docstring).

    Attributes:
        kind: ``"dense"`` (``(B, *S)``) or ``"spikes"`` (spike trains).
        time_axis: the batch's time axis for spike trains (0 or 1; ``None`` for dense).
        steps: ``T`` (the spike trains' length, or the steps dense input is presented for).
    """

    kind: str
    time_axis: int | None
    steps: int

    @property
    def batch_axis(self) -> int:
        """The axis of the batch's samples."""
        return 0 if self.kind == "dense" else 1 - self.time_axis


def detect_layout(x: torch.Tensor, y: torch.Tensor, shape: tuple, time_axis: int | None,
                  steps: int, where: str) -> Layout:
    """The :class:`Layout` of a first batch ``x`` with labels ``y`` for per-sample shape
    ``shape`` (``steps``: the dense presentation length).

    Raises:
        ValueError: ``x`` fits neither kind, its labels do not match its batch axis, or the
            time and batch axes cannot be told apart (``T == B``: pass ``time_axis``);
            the message names ``where`` (``"data"`` or ``"test_data"``) and the fix.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(f"{where}: a batch must be (x, y) tensors, got "
                         f"({type(x).__name__}, {type(y).__name__})")
    if y.dim() != 1:
        raise ValueError(f"{where}: labels must be (B,) class indices, got shape "
                         f"{tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"{where}: labels must be integer class indices, got {y.dtype}; "
                         f"convert them with y.long()")
    b, sx = len(y), tuple(x.shape)
    if time_axis is not None and time_axis not in TIME_AXES:
        raise ValueError(f"time_axis must be 0 ((T, B, ...) batches) or 1 ((B, T, ...), as a "
                         f"DataLoader collates per-sample (T, ...) spike trains), got "
                         f"{time_axis!r}")
    want = "(B, " + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if time_axis is None and _matches(sx[1:], shape):
        if sx[0] != b:
            raise ValueError(f"{where}: dense batch {sx} has {sx[0]} samples but {b} labels")
        return Layout("dense", None, int(steps))
    if _matches(sx[2:], shape):
        if time_axis is None:
            if sx[0] == b and sx[1] == b:
                raise ValueError(
                    f"{where}: spike-train batch {sx} has {b} labels and {b} entries on both "
                    f"its first two axes, so time and batch cannot be told apart: pass "
                    f"time_axis=1 for (B, T, ...) batches (a DataLoader collating per-sample "
                    f"(T, ...) spike trains) or time_axis=0 for (T, B, ...)")
            if sx[0] == b:
                time_axis = 1
            elif sx[1] == b:
                time_axis = 0
            else:
                raise ValueError(f"{where}: spike-train batch {sx} has {b} labels, but neither "
                                 f"its first nor its second axis has {b} entries")
        elif sx[1 - time_axis] != b:
            raise ValueError(f"{where}: with time_axis={time_axis} the batch {sx} has "
                             f"{sx[1 - time_axis]} samples but {b} labels")
        return Layout("spikes", time_axis, int(sx[time_axis]))
    raise ValueError(f"{where}: batch of shape {sx} fits neither dense input {want} nor "
                     f"spike trains (B, T, ...) / (T, B, ...) of per-sample shape "
                     f"{want[4:-1] or '()'} for this model; reshape the data, or pass "
                     f"input_shape=(...) if the model's input is not its first layer's")


def check_spikes(x: torch.Tensor, where: str) -> None:
    """Refuse a spike train whose values are not 0/1.

    Raises:
        ValueError: naming ``where`` and the fix.
    """
    if x.dtype == torch.bool:
        return
    bad = (x != 0) & (x != 1)
    if bool(bad.any()):
        v = x[bad].flatten()[0].item()
        raise ValueError(f"{where}: spike trains must hold 0/1 values (the chip's input is "
                         f"binary spikes), found {v!r} ({int(bad.sum())} such entries); clip "
                         f"event counts with x.clamp(max=1) (or (x > 0).float()), or give "
                         f"dense input to be encoded")


def _replacement(node) -> str:
    """The one module that holds what the chip holds for a fused IR synapse ``node``."""
    w = node.weight
    if node.op == "dense_rec":
        return f"LIFRecurrentCell({w.shape[1]}, {w.shape[0]})"
    if node.op == "dense":
        return f"nn.Linear({w.shape[1]}, {w.shape[0]})"
    c_in = w.shape[1] * node.groups
    extra = f", groups={node.groups}" if node.groups != 1 else ""
    return (f"nn.Conv2d({c_in}, {w.shape[0]}, {tuple(w.shape[2:])}, stride={node.stride}, "
            f"padding={node.padding}{extra})")


def check_fused_chains(model: nn.Module, shape: tuple | None = None) -> None:
    """Refuse, before the first step, a model whose lowering fuses layers that have no neuron
    between them (:func:`rewire.ir.fuse.fuse`): the chip holds their product, whose
    connected synapses, fan-in and fan-out GradR and the budget cannot count while they train
    the factors (a zero of the product is not a zero of either factor).

    The model is lowered on a copy in eval mode (per-sample input ``shape`` where it is
    known); a model the frontend cannot lower is left to the other checks (nothing is raised
    here). An eval-mode BatchNorm is not a chain: folding it scales rows and keeps the zero
    pattern, so the counts of the layer before it are the chip's.

    Raises:
        rewire.errors.LoweringError: naming the pair of layers (``piece``: the second), what
            the chip holds, and two changes that train and compile: the one module holding
            the product, or a neuron cell between the two.
    """
    from rewire.errors import LoweringError, RewireError
    from rewire.frontends.norse import lower

    probe = copy.deepcopy(model).eval()
    known = shape is not None and all(s is not None for s in shape)
    try:
        net = lower(probe, input_shape=tuple(shape) if known and len(shape) == 3 else None)
    except (RewireError, ValueError, TypeError, RuntimeError):
        return
    modules = dict(model.named_modules())
    for layer in net.layers:
        parts = layer.name.split("+")
        if len(parts) < 2:
            continue
        kinds = [type(modules[p]).__name__ if p in modules else "layer" for p in parts]
        pair = " -> ".join(f"{p!r} ({k})" for p, k in zip(parts, kinds))
        raise LoweringError(
            f"layers {pair} have no neuron between them: the chip holds their product (one "
            f"{layer.synapse.op} layer, {layer.synapse.weight.shape}), whose connected "
            f"synapses GradR and the budget cannot count while training the factors; write "
            f"the product as one module, {_replacement(layer.synapse)}, or put a neuron cell "
            f"(e.g. LIFCell()) between {parts[0]!r} and {parts[1]!r}", piece=parts[1])
