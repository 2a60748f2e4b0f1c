"""The networks researchers write (issue 22's list), built as their libraries' docs write them
and trained briefly on the shipped digits (8x8, 10 classes) with a plain torch loop, for the
end-to-end tests in ``test_field_models.py``.

Every model takes ``(T, B, ...)`` input (``current`` encoding: the digit repeated every step,
times ``GAIN``) and returns output spikes ``(T, B, 10)``; the class is the most spikes.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from norse.torch import LIFBoxCell, LIFCell, LIFRecurrentCell, SequentialState
from torch import nn
from torch.nn import functional as F

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
        lr: float = 2e-3, norm_frozen: bool = False) -> nn.Module:
    """Train ``model`` with Adam on the spike counts' cross-entropy; returns it in eval
    mode (a BatchNorm then uses its running statistics, as the compiler folds them).
    ``norm_frozen``: train in eval mode with the BatchNorms' parameters fixed (a fine-tune
    on the chip's grid, whose factors the BatchNorms set)."""
    torch.manual_seed(seed)
    xtr, ytr, _, _ = digits()
    norms = [p for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             for p in m.parameters()] if norm_frozen else []
    opt = torch.optim.Adam([p for p in model.parameters()
                            if not any(p is q for q in norms)], lr=lr)
    model.train(not norm_frozen)
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


class _GridFn(torch.autograd.Function):
    """Forward: the grid value; backward: the gradient unchanged (straight through)."""

    @staticmethod
    def forward(ctx, w, a, b, k, step, wmag):
        ir = a * w.detach().double() + b
        q = (torch.round(ir * (k / step)) * step).clamp(-wmag, wmag) / k
        return ((q - b) / a).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None, None, None, None, None


class Grid(nn.Module):
    """Parametrization of a user tensor ``w`` whose IR value is ``a w + b`` (``a``, ``b``
    per element, broadcast: a fused ``Linear``, the input gain, a folded BatchNorm): the IR
    value goes on the compiler's grid ``clip(step round(ir k / step), +-wmag) / k`` (as
    rewire's ``ChipGrid``, Jacob et al., CVPR 2018, Sec. 3), straight-through gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.args = None

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w if self.args is None else _GridFn.apply(w, *self.args)


def grid_k(layer, attr: str) -> float:
    """Float IR value -> the compiler's integer units for ``layer``'s ``weight`` (``g c_in
    S``), ``weight_rec`` or ``bias`` (``g S``: they carry one unit, a spike or the always-on
    1): ``weight_int = round(w k)`` on the weight grid."""
    from rewire.ir.chip_neurons import chip_class

    gain = chip_class(layer.neuron).rates(layer.neuron)[2]
    return gain * layer.scale * (layer.input_scale if attr == "weight" else 1.0)


def set_grids(model: nn.Module, tensors, compiled) -> None:
    """Put each user tensor on the grid ``compiled`` quantizes its IR value to.

    ``tensors``: ``(module, name, layer index, attr, bias_gain)``, ``attr`` the compiled
    layer's ``weight``, ``weight_rec`` or ``bias``. A weight's factor to its IR value is read
    off the two, row by row (per output channel: a folded BatchNorm scales each); a bias's is
    its layer's weight factor times ``bias_gain`` (``GAIN`` in the first layer: the IR divides
    the first weights by the input gain, not the bias), its offset the rest."""
    from torch.nn.utils import parametrize

    wfmt = compiled.profile.weights
    factors = {}
    for module, name, k, attr, bias_gain in tensors:
        layer = compiled.layers[k]
        if not parametrize.is_parametrized(module, name):
            parametrize.register_parametrization(module, name, Grid())
        user = module.parametrizations[name].original.detach().double()
        ir = torch.as_tensor(np.asarray(getattr(layer, attr), np.float64)).reshape(user.shape)
        if attr == "bias":
            a = factors[k].reshape(-1) * bias_gain
            b = ir - a * user
        else:
            rows = user.reshape(len(user), -1)
            a = ((ir.reshape(len(ir), -1) * rows).sum(1) / (rows * rows).sum(1).clamp_min(1e-30))
            factors[k] = a
            a, b = a.reshape(-1, *[1] * (user.dim() - 1)), torch.zeros(())
        module.parametrizations[name][0].args = (a, b, grid_k(layer, attr), wfmt.step,
                                                 min(wfmt.max_int, -wfmt.min_int))


@contextlib.contextmanager
def grids_removed(model: nn.Module):
    """Within the block, ``model`` holds its plain weights and no grid: what the compiler
    must see to choose ``S`` (a tracer would see the grids as modules); the grids come back
    after."""
    from torch.nn.utils import parametrize

    held = [(m, name, m.parametrizations[name][0]) for m in list(model.modules())
            if parametrize.is_parametrized(m) for name in list(m.parametrizations)]
    for module, name, _ in held:
        parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    try:
        yield model
    finally:
        for module, name, grid in held:
            parametrize.register_parametrization(module, name, grid)


def bake_grids(model: nn.Module) -> nn.Module:
    """Leave every grid's value in its tensor and remove the grids (the model is then the
    float model whose weights sit on the compiler's grid)."""
    from torch.nn.utils import parametrize

    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


class _Spike(torch.autograd.Function):
    """Heaviside ``v - v_th > 0`` with SuperSpike's surrogate gradient (Zenke & Ganguli,
    Neural Computation 2018, Eq. 11) with alpha 10 (a wide one: IF neurons without leak)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (10 * x.abs() + 1) ** 2


def sinabs_run(weights, x_seq: torch.Tensor) -> torch.Tensor:
    """The sinabs-style conv net (conv 3x3 -> IF -> sum pool 2 -> conv 3x3 -> IF -> sum pool
    2 -> flatten -> linear -> IF; no bias, the Speck layout) with NIR ``IF`` read as rewire's
    default rule (``v += a``, a spike at ``v > 1``, reset to 0), on ``(T, B, 1, 8, 8)``:
    output spikes ``(T, B, 10)``, differentiable (surrogate gradient)."""
    w1, w2, w3 = weights
    maps = (lambda s: F.conv2d(s, w1, padding=1),
            lambda s: F.conv2d(4 * F.avg_pool2d(s, 2), w2, padding=1),
            lambda s: F.linear(4 * F.avg_pool2d(s, 2).flatten(1), w3))
    v, out = [0.0] * 3, []
    for s in x_seq:
        for k, synapse in enumerate(maps):
            v[k] = v[k] + synapse(s)
            s = _Spike.apply(v[k] - 1.0)
            v[k] = v[k] * (1 - s)
        out.append(s)
    return torch.stack(out)


def sinabs_init(seed: int = 3):
    """Initial ``(w1, w2, w3)`` of the sinabs-style net (float32 numpy): the first layer
    spiking, the later ones small enough that training starts below saturation."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0.3, 0.5, (4, 1, 3, 3)).astype(np.float32),
            rng.normal(0.0, 0.1, (8, 4, 3, 3)).astype(np.float32),
            rng.normal(0.0, 0.05, (10, 8 * 2 * 2)).astype(np.float32))


def fit_sinabs(weights, epochs: int = 2, lr: float = 1e-2, seed: int = 0, grids=None):
    """Train the sinabs-style net's float32 ``weights`` (numpy ``w1, w2, w3``) on the digits
    with Adam on the spike counts' cross-entropy; the graph computes on ``x`` itself (no
    ``GAIN``). ``grids``: one ``(a, k, step, wmag)`` per tensor (its IR value ``a w`` on the
    compiler's grid, straight-through, as :class:`Grid`): a fine-tune on the chip's grid.
    Returns the trained numpy weights (on the grid with ``grids``)."""
    torch.manual_seed(seed)
    xtr, ytr, _, _ = digits()
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    opt = torch.optim.Adam(params, lr=lr)
    on_grid = (lambda ws: ws) if grids is None else (  # noqa: E731
        lambda ws: [_GridFn.apply(w, a, 0.0, k, step, wmag)
                    for w, (a, k, step, wmag) in zip(ws, grids)])
    for _ in range(epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 64):
            idx = perm[i:i + 64]
            x = encode(xtr[idx], (1, 8, 8)) / GAIN
            loss = nn.functional.cross_entropy(sinabs_run(on_grid(params), x).sum(0), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return tuple(w.numpy().astype(np.float32) for w in on_grid(params))
