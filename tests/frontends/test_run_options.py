"""Run options of a lowered torch model (issue 23, items 1 and 2): the gain traced from the
forward times the ``input_gain`` option, what ``rewire.train`` recorded taken as the default
and a different explicit option refused naming both values, a gain on spike input refused,
and a module called at two places named as such; each refusal's hint compiles."""

from __future__ import annotations

import copy

import pytest
import torch
from norse.torch import LIFCell, SequentialState
from torch import nn

import rewire
from rewire.errors import LoweringError
from rewire.frontends import lower
from rewire.frontends.run_options import TRAINED_OPTIONS
from rewire.ir import dynamics
from rewire.training.model import SpikingMLP, encode_steps


class Gained(nn.Module):
    """A model with a gain in its own forward, looping over ``(T, B, 6)``."""

    def __init__(self, gain: float | None = 3.0):
        super().__init__()
        self.gain = gain
        self.fc1, self.lif1 = nn.Linear(6, 8, bias=False), LIFCell()
        self.fc2, self.lif2 = nn.Linear(8, 3, bias=False), LIFCell()
        torch.manual_seed(0)
        with torch.no_grad():
            self.fc1.weight.mul_(6.0)
            self.fc2.weight.mul_(12.0)

    def forward(self, x):
        s1 = s2 = None
        out = []
        for t in range(x.shape[0]):
            x_t = x[t] * self.gain if self.gain is not None else x[t]
            z, s1 = self.lif1(self.fc1(x_t), s1)
            z, s2 = self.lif2(self.fc2(z), s2)
            out.append(z)
        return torch.stack(out)


def _ir_output(net, x):
    return dynamics.run(net, dynamics.encode(net, x))[-1]


def test_the_gain_is_the_forward_gain_times_the_option():
    model = Gained(3.0)
    assert lower(model, steps=4).input_gain == 3.0
    net = lower(model, steps=4, input_gain=2.0)
    assert net.input_gain == 6.0
    assert net.notes[-1].startswith("input_gain 6 = 3 (the model's forward")
    seq = SequentialState(nn.Linear(6, 3, bias=False), LIFCell())
    assert lower(seq, steps=4, encoding="current", input_gain=2.0).input_gain == 2.0
    mlp = SpikingMLP((6, 5, 3), steps=4, input_gain=4.0)  # presents its input itself
    assert lower(mlp).input_gain == 4.0
    assert lower(mlp, input_gain=1.0).input_gain == 4.0
    assert lower(mlp, input_gain=2.0).input_gain == 8.0
    assert lower(mlp).notes == ()


def test_the_float_ir_is_the_model_fed_the_option_gain():
    """What ``rewire.train`` runs (the input times ``input_gain``, then the forward with its
    own gain) is what the IR runs, spike for spike."""
    model = Gained(3.0)
    x = torch.rand(32, 6)
    net = lower(model, steps=6, encoding="current", input_gain=2.0)
    with torch.no_grad():
        theirs = model(encode_steps(x, 6, "current", 2.0))
    assert theirs.sum() > 0
    assert torch.equal(theirs, _ir_output(net, x))


def test_a_trained_models_options_are_the_default_and_another_one_is_refused():
    model = Gained(3.0)
    setattr(model, TRAINED_OPTIONS, {"steps": 6, "encoding": "current", "input_gain": 2.0})
    net = lower(model)
    assert (net.steps, net.encoding, net.input_gain) == (6, "current", 6.0)
    for name, value, trained in (("input_gain", 4.0, "2.0"), ("steps", 8, "6"),
                                 ("encoding", "rate", "'current'")):
        with pytest.raises(LoweringError, match=rf"{name}=.* given, but rewire.train .* "
                                                rf"{name}={trained}") as info:
            rewire.compile(model, "loihi2", **{name: value})
        assert info.value.piece == name
    # the hint: pass the trained value, or leave the option out
    a = rewire.compile(model, "loihi2", input_max_value=16, input_gain=2.0, steps=6)
    b = rewire.compile(model, "loihi2", input_max_value=16)
    assert a.input_gain == b.input_gain == 6.0
    assert all((la.weight_int == lb.weight_int).all() and la.scale == lb.scale
               for la, lb in zip(a.layers, b.layers))


def test_with_spike_input_the_gain_option_is_not_a_conflict():
    """``input_gain`` acts only with ``current`` encoding: after training on spike trains
    (recorded gain 1) an explicit gain with ``encoding="rate"`` changes nothing (the main
    job passes its own)."""
    model = Gained(None)
    setattr(model, TRAINED_OPTIONS, {"steps": 6, "encoding": "rate", "input_gain": 1.0})
    assert lower(model, encoding="rate", input_gain=4.0).encoding == "rate"
    with pytest.raises(LoweringError, match=r"encoding='current' given"):
        lower(model, encoding="current", input_gain=4.0)


def test_a_gain_on_spike_input_is_refused_and_its_hint_compiles():
    model = Gained(3.0)
    with pytest.raises(LoweringError, match=r"multiplies its input by 3.*fold it into the "
                                            r"first layer's weights") as info:
        rewire.compile(model, "loihi2", steps=6, encoding="rate")
    assert info.value.piece == "input_gain"
    folded = copy.deepcopy(model)  # the hint: the factor in the weights, out of forward
    folded.gain = None
    with torch.no_grad():
        folded.fc1.weight.mul_(3.0)
    rewire.compile(folded, "loihi2", steps=6, encoding="rate")
    net = lower(folded, steps=6, encoding="rate")
    spikes = torch.bernoulli(torch.full((6, 32, 6), 0.5), generator=torch.Generator()
                             .manual_seed(0))
    with torch.no_grad():
        theirs = model(spikes)
    assert theirs.sum() > 0
    assert torch.equal(theirs, _ir_output(net, spikes))


class Twice(nn.Module):
    """One ``Linear`` applied at two places of every step."""

    def __init__(self):
        super().__init__()
        self.fc, self.lif1, self.lif2 = nn.Linear(6, 6, bias=False), LIFCell(), LIFCell()
        self.out, self.lif3 = nn.Linear(6, 3, bias=False), LIFCell()
        with torch.no_grad():
            self.fc.weight.mul_(8.0)
            self.out.weight.mul_(12.0)

    def forward(self, x):
        s1 = s2 = s3 = None
        out = []
        for t in range(x.shape[0]):
            z, s1 = self.lif1(self.fc(x[t]), s1)
            z, s2 = self.lif2(self.fc(z), s2)
            z, s3 = self.lif3(self.out(z), s3)
            out.append(z)
        return torch.stack(out)


def test_a_module_called_twice_is_named_as_such_and_its_hint_compiles():
    torch.manual_seed(1)
    twice = Twice()
    with pytest.raises(LoweringError, match=r"fc \(Linear\) is called at 2 places of the "
                                            r"data path each step \(on lif1 and on the "
                                            r"input\)") as info:
        lower(twice, steps=6, encoding="current", input_gain=4.0)
    assert info.value.piece == "fc" and "branch" not in str(info.value)
    # the hint: a module per place, the weights shared through one Parameter
    fc2 = nn.Linear(6, 6, bias=False)
    fc2.weight = twice.fc.weight
    tied = SequentialState(twice.fc, LIFCell(), fc2, LIFCell(), twice.out, LIFCell())
    net = rewire.compile(tied, "loihi2", steps=6, encoding="current", input_gain=4.0)
    assert len(net.layers) == 3
    x = torch.rand(32, 6)
    with torch.no_grad():
        theirs = twice(encode_steps(x, 6, "current", 4.0))
    ir = lower(tied, steps=6, encoding="current", input_gain=4.0)
    assert theirs.sum() > 0
    assert torch.equal(theirs, _ir_output(ir, x))


def test_a_recurrent_cell_fed_by_its_synapses_is_not_a_module_called_twice():
    """The feedback pattern (one cell fed by a feed-forward and a recurrent ``Linear``)
    still lowers to ``RecurrentDense``."""

    class Rec(nn.Module):
        def __init__(self):
            super().__init__()
            self.ff, self.fb, self.lif = (nn.Linear(6, 5, bias=False),
                                          nn.Linear(5, 5, bias=False), LIFCell())

        def forward(self, x):
            s, z, out = None, torch.zeros(x.shape[1], 5), []
            for t in range(x.shape[0]):
                z, s = self.lif(self.ff(x[t]) + self.fb(z), s)
                out.append(z)
            return torch.stack(out)

    net = lower(Rec(), steps=4, encoding="current", input_gain=2.0)
    assert [l.synapse.op for l in net.layers] == ["dense_rec"]
