"""Residual blocks written as Norse users write them (a cell fed by ``fc(z) + z`` or by a
projection shortcut ``fc(z) + proj(x)``): the lowered IR equals the user's model spike for
spike, and on a quantization-exact grid so do the integer model and the ONNX files; Loihi 2's
netx refuses the network by name."""

import numpy as np
import pytest
import torch
from hypothesis import event, given, strategies as st
from norse.torch import IAFCell, LIFCell
from torch import nn

import rewire
from rewire.compiler.simulate import simulate
from rewire.errors import ExportError, LoweringError
from rewire.export import onnx_int, onnx_step
from rewire.frontends import lower
from rewire.ir import dynamics

from conftest import examples
from norse_models import ResidualNet


def _inputs(seed=0, steps=20, batch=64, n=16):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, n, generator=g) < 0.3).float()


def test_lif_residual_block_lowers_spike_exact():
    torch.manual_seed(0)
    model = ResidualNet()
    with torch.no_grad():
        for p in model.parameters():
            p *= 3
    x = _inputs()
    net = lower(model, x)
    assert [(s.source, s.target) for s in net.skips] == [(1, 2), (0, 3)]
    assert np.array_equal(net.skips[0].weight, np.eye(32))
    ref = model(x)
    assert ref.sum() > 0
    assert torch.equal(dynamics.run(net, x)[-1], ref)


def _grid_model():
    """An IAF residual net on a grid where quantization loses nothing: weights k/64 with one
    127/64 per matrix, so that with the identity shortcut's 1.0 every layer's scale is
    ``S = 254 / (127 / 64) = 128`` (``w_int = 2 k``, the identity 128, ``vThMant = 128``)."""
    torch.manual_seed(1)
    model = ResidualNet(IAFCell)
    with torch.no_grad():
        for p in model.parameters():
            k = torch.randint(-30, 26, p.shape).float()
            k.view(-1)[0] = 127
            p.copy_(k / 64)
    return model


def test_integer_model_and_onnx_equal_the_users_model(tmp_path):
    model, x = _grid_model(), _inputs(1)
    with torch.no_grad():
        ref = model(x).numpy()
    compiled = rewire.compile(model, "loihi2", example_input=x, encoding="rate")
    assert ref.sum() > 0
    ints = simulate(compiled, x.numpy().astype(np.int64))[-1]
    assert np.array_equal(ints, ref)
    onnx_int.write(compiled, tmp_path / "i.onnx")
    onnx_step.write(compiled, tmp_path / "s.onnx")
    assert np.array_equal(np.asarray(onnx_int.run(tmp_path / "i.onnx",
                                                  x.numpy().astype(np.int64))), ref)
    assert np.array_equal(np.asarray(onnx_step.run(tmp_path / "s.onnx", x.numpy())), ref)
    with pytest.raises(ExportError, match="fc2 .*skip connection .*chain of layers"):
        rewire.export.write(compiled, tmp_path / "out")
    written = rewire.export.write(compiled, tmp_path / "ok", formats=["onnx", "nir"])
    assert written


class SameDepth(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.cell = nn.Linear(4, 3, bias=False), nn.Linear(4, 3, bias=False), \
            LIFCell()

    def forward(self, x):
        s, out = None, []
        for x_t in x:
            z, s = self.cell(self.a(x_t) + self.b(x_t), s)
            out.append(z)
        return torch.stack(out)


class ShortcutBias(ResidualNet):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(16, 10)  # bias on


@pytest.mark.parametrize("model, n_in, match", [
    (SameDepth, 4, "same depth.*fuse parallel synapses"),
    (ShortcutBias, 16, r"the shortcut proj \(Linear\) into cell3 \(LIFCell\) has a bias; .*"
                       r"give proj bias=False and move its bias into fc3"),
])
def test_residual_refusals_name_the_piece(model, n_in, match):
    with pytest.raises(LoweringError, match=match):
        lower(model(), torch.zeros(3, 1, n_in))


def test_the_shortcut_bias_fix_compiles_and_equals_the_model():
    """The refusal's fix, followed as written (``proj`` without bias, ``fc3`` with ``proj``'s
    bias added to its own), compiles for Loihi 2 and its float IR equals the fixed model
    spike for spike."""
    torch.manual_seed(0)
    model = ShortcutBias()
    with torch.no_grad():
        for p in model.parameters():
            p *= 3
    x = _inputs()
    with pytest.raises(LoweringError, match="move its bias into fc3"):
        lower(model, x)
    bias = model.proj.bias.detach().clone()
    model.proj.bias = None
    fc3 = nn.Linear(32, 10, bias=True)
    with torch.no_grad():
        fc3.weight.copy_(model.fc3.weight)
        fc3.bias.copy_(bias)  # fc3.bias + proj.bias, fc3 having had no bias
    model.fc3 = fc3
    compiled = rewire.compile(model, "loihi2", example_input=x, encoding="rate")
    np.testing.assert_array_equal(compiled.layers[2].bias, bias.numpy())
    with torch.no_grad():
        ref = model(x)
    assert ref.sum() > 0
    assert torch.equal(dynamics.run(lower(model, x), x)[-1], ref)


class ConvResidual(nn.Module):
    """A residual conv block as conv SNNs write it: conv -> cell -> conv(z) + z -> cell ->
    flatten -> Linear -> cell."""

    def __init__(self, cell=IAFCell):
        super().__init__()
        self.conv1, self.cell1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), cell()
        self.conv2, self.cell2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), cell()
        self.fc, self.cell3 = nn.Linear(4 * 6 * 6, 5, bias=False), cell()

    def forward(self, x):  # (T, B, 1, 6, 6)
        s1 = s2 = s3 = None
        out = []
        for x_t in x:
            z1, s1 = self.cell1(self.conv1(x_t), s1)
            z2, s2 = self.cell2(self.conv2(z1) + z1, s2)
            z3, s3 = self.cell3(self.fc(z2.flatten(1)), s3)
            out.append(z3)
        return torch.stack(out)


def test_conv_residual_block_is_exact_from_user_code(tmp_path):
    model = ConvResidual()
    with torch.no_grad():
        for p in model.parameters():  # the k/64 grid of _grid_model
            k = torch.randint(-30, 26, p.shape, generator=torch.Generator().manual_seed(2))
            k.view(-1)[0] = 127
            p.copy_(k.float() / 64)
    x = (torch.rand(12, 64, 1, 6, 6, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    with torch.no_grad():
        ref = model(x).numpy()
    compiled = rewire.compile(model, "loihi2", example_input=x, encoding="rate")
    assert [(s.source, s.weight.shape) for s in compiled.layers[1].skips] == [(1, (144, 144))]
    flat = x.numpy().reshape(12, 64, -1)
    assert ref.sum() > 0
    assert np.array_equal(simulate(compiled, flat.astype(np.int64))[-1], ref)
    onnx_int.write(compiled, tmp_path / "i.onnx")
    assert np.array_equal(np.asarray(onnx_int.run(tmp_path / "i.onnx", flat.astype(np.int64))),
                          ref)


class _RandomResidual(nn.Module):
    """``layers`` Linear -> cell layers; ``skips`` maps a layer k to the earlier layer j
    (0 = the input) whose spikes it adds: as they are when the sizes match (identity),
    else through a bias-free Linear (projection)."""

    def __init__(self, sizes, skips, bias, cell):
        super().__init__()
        self.fcs = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in zip(sizes, sizes[1:]))
        self.cells = nn.ModuleList(cell() for _ in sizes[1:])
        self.skips = dict(skips)
        self.proj = nn.ModuleDict({str(k): nn.Linear(sizes[j], sizes[k], bias=False)
                                   for k, j in self.skips.items() if sizes[j] != sizes[k]})

    def forward(self, x):
        states = [None] * len(self.cells)
        out = []
        for x_t in x:
            seen = [x_t]
            for k, (fc, cell) in enumerate(zip(self.fcs, self.cells), 1):
                a = fc(seen[-1])
                if k in self.skips:
                    src = seen[self.skips[k]]
                    a = a + (self.proj[str(k)](src) if str(k) in self.proj else src)
                z, states[k - 1] = cell(a, states[k - 1])
                seen.append(z)
            out.append(seen[-1])
        return torch.stack(out)


def _spiking(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output spikes on ``x``, after making it spike where it is silent: every
    weight doubled (twice at most), then made excitatory (``|w|``). Random nets of a few
    neurons are often silent at the last layer, and a silent output compares nothing but
    zeros."""
    with torch.no_grad():
        for attempt in range(3):
            ref = model(x)
            if ref.sum() > 0:
                return ref
            for p in model.parameters():
                p.mul_(2) if attempt < 2 else p.abs_()
        return model(x)


def test_residual_sums_land_in_the_ir_with_equal_spikes():
    """Issue 22's property for residual sums (200 examples): random Norse nets with identity
    and projection shortcuts from any earlier layer or the input (two layers back or more)
    lower with every shortcut an IR Skip (its weight the identity or the projection's) and
    the float IR's spikes equal the model's in the output layer. The examples are counted:
    >= 95 % of them have output spikes (the weights are doubled until the output spikes,
    :func:`_spiking`). Measured: 200 examples in about 25 s on the loaded 2-core machine,
    100 % with output spikes (69 % before :func:`_spiking`)."""
    seen = []

    @examples(200)
    @given(sizes=st.lists(st.integers(2, 8), min_size=3, max_size=5), bias=st.booleans(),
           cell=st.sampled_from([LIFCell, IAFCell]), data=st.data())
    def check(sizes, bias, cell, data):
        depth = len(sizes) - 1
        skips = {}
        for k in range(2, depth + 1):
            if data.draw(st.booleans(), label=f"skip into {k}"):
                skips[k] = data.draw(st.integers(0, k - 2), label=f"source of {k}")
        torch.manual_seed(len(sizes) * 7 + sum(sizes))
        model = _RandomResidual(sizes, skips, bias, cell)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3)
        x = _inputs(seed=sum(sizes), steps=8, batch=8, n=sizes[0])
        ref = _spiking(model, x)
        net = lower(model, x)
        assert {(s.target, s.source) for s in net.skips} == set(skips.items())
        for s in net.skips:
            proj = model.proj[str(s.target)] if str(s.target) in model.proj else None
            want = np.eye(sizes[s.target]) if proj is None else proj.weight.detach().numpy()
            np.testing.assert_array_equal(s.weight, want)
        seen.append(float(ref.sum()))
        event("output spikes" if ref.sum() > 0 else "silent output")
        assert torch.equal(dynamics.run(net, x)[-1], ref)

    check()
    live = sum(s > 0 for s in seen) / len(seen)
    assert len(seen) >= examples(200).max_examples
    assert live >= 0.95, f"{live:.1%} of {len(seen)} examples have output spikes"
