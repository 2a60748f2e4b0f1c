"""Xylo's neuron written by a user: ``LIFBitshiftCell`` models (a time loop, or Norse's
``SequentialState``) lower to ``BitshiftLIF`` layers whose float IR equals the model bit for
bit, multi-spike counts included; gradients flow through the cell. (~3 s)"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from norse.torch import SequentialState
from torch import nn

from conftest import examples
from rewire.errors import LoweringError
from rewire.frontends import lower
from rewire.frontends.bitshift import LIFBitshiftCell, MultiSpike
from rewire.ir import dynamics, nodes

T, H = 10, 12


class LoopNet(nn.Module):
    """16 -> H -> 8 written as Norse's documentation writes a LIFCell model: a time loop."""

    def __init__(self, hidden: LIFBitshiftCell, readout: LIFBitshiftCell):
        super().__init__()
        self.fc1, self.cell1 = nn.Linear(16, H), hidden
        self.fc2, self.cell2 = nn.Linear(H, 8), readout

    def forward(self, x):
        s1 = s2 = None
        out = []
        for t in range(x.shape[0]):
            z, s1 = self.cell1(self.fc1(x[t]), s1)
            z, s2 = self.cell2(self.fc2(z), s2)
            out.append(z)
        return torch.stack(out)


def _stateful(model, seq):
    state, out = None, []
    for x_t in seq:
        z, state = model(x_t, state)
        out.append(z)
    return torch.stack(out)


def _events(scale: float, seed: int, b: int = 4) -> torch.Tensor:
    """Event counts 0..15 per channel and step times ``scale`` (the digits task's x)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 16, (T, b, 16), generator=g).float() * scale


def test_loop_model_lowers_to_bitshift_layers():
    torch.manual_seed(0)
    model = LoopNet(LIFBitshiftCell(2, 4, v_th=0.5, max_spikes=31, dt=5e-4),
                    LIFBitshiftCell(1, 3, v_th=0.7, max_spikes=1, dt=5e-4))
    x = _events(0.2, 1)
    net = lower(model, x)
    assert [type(l.neuron) for l in net.layers] == [nodes.BitshiftLIF] * 2
    assert net.layers[0].neuron == model.cell1.neuron and net.layers[0].neuron.dt == 5e-4
    with torch.no_grad():
        want = model(x)
    got = dynamics.run(net, x)[0]
    assert torch.equal(got, want)
    hidden = dynamics.run(net, x, record_all=True)[0]
    assert hidden.max() > 1  # several spikes per step reached the readout's synapse


@examples(25)
@given(dash_syn=st.integers(0, 15), dash_mem=st.integers(0, 15),
       v_th=st.floats(0.05, 8.0), max_spikes=st.integers(1, 31),
       scale=st.sampled_from([1 / 15, 0.3, 1.0, 4.0]), seed=st.integers(0, 2**16))
def test_sequential_state_equals_float_ir(dash_syn, dash_mem, v_th, max_spikes, scale, seed):
    torch.manual_seed(seed)
    model = SequentialState(nn.Linear(16, H), LIFBitshiftCell(dash_syn, dash_mem, v_th,
                                                              max_spikes),
                            nn.Linear(H, 8), LIFBitshiftCell(dash_mem, dash_syn, v_th, 1))
    x = _events(scale, seed)
    net = lower(model, steps=T)
    with torch.no_grad():
        want = _stateful(model, x)
        got = dynamics.run(net, x, record_all=True)
        hidden = _stateful(SequentialState(model[0], model[1]), x)
    assert torch.equal(got[-1], want)
    assert torch.equal(got[0], hidden)  # the counts, up to max_spikes
    assert hidden.max() <= max_spikes


def test_multispike_counts_and_gradient():
    """Counts exact; the surrogate peaks (1 / th) at every step k th, k = 1..most, and falls
    off as exp(-|v / th - k| / 0.5) between and beyond them (rockpool's PeriodicExponential)."""
    th = 2.0
    v = torch.tensor([-2.0, 0.0, 1.98, 2.0, 5.0, 6.0, 10.0, 11.0, 80.0], requires_grad=True)
    n = MultiSpike.apply(v, th, 5)
    assert n.tolist() == [0, 0, 0, 1, 2, 3, 5, 5, 5]
    n.sum().backward()
    want = torch.exp(-torch.tensor([2.0, 1.0, 0.01, 0.0, 0.5, 0.0, 0.0, 0.5, 35.0]) / 0.5) / th
    torch.testing.assert_close(v.grad, want)


def test_training_lowers_loss():
    """Gradients flow through both cells (surrogate :class:`MultiSpike`): 20 Adam steps on a
    toy task (class c: channels 2c, 2c+1 busy) halve the loss."""
    torch.manual_seed(1)
    model = LoopNet(LIFBitshiftCell(2, 3, v_th=1.0, max_spikes=31),
                    LIFBitshiftCell(2, 3, v_th=1.0, max_spikes=1))
    labels = torch.arange(32) % 8
    x = _events(1 / 15, 2, b=32) * 0.3
    x[:, torch.arange(32), 2 * labels] += 0.7
    x[:, torch.arange(32), 2 * labels + 1] += 0.7
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x).sum(0), labels)
        opt.zero_grad()
        loss.backward()
        assert model.fc1.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_bitshift_cell_refuses_bad_dash():
    with pytest.raises(ValueError, match="dash_syn"):
        LIFBitshiftCell(1.5, 2)
    with pytest.raises(ValueError, match="v_th"):
        LIFBitshiftCell(1, 2, v_th=0.0)


def test_lowering_refuses_an_unlowered_parameter():
    cell = LIFBitshiftCell(1, 2)
    cell.gain = nn.Parameter(torch.ones(1))
    with pytest.raises(LoweringError, match="gain"):
        lower(SequentialState(nn.Linear(16, 4), cell), steps=4)
