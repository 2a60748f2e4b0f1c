"""The Norse frontend on models written as Norse's documentation writes them: faithful
lowering (the IR's float run equals the model spike for spike), every weight in the IR, and
every piece it cannot map refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from norse.torch import (IAFCell, LIBoxCell, LICell, LIFBoxCell, LIFBoxParameters, LIFCell,
                         LIFParameters, LIFRecurrentCell, SequentialState)
from norse.torch.functional.reset import reset_subtract
from torch import nn

from conftest import examples
from rewire.errors import LoweringError
from rewire.frontends import lower
from rewire.ir import dynamics, nodes

T = 12


def _run_stateful(model, seq):
    state, out = None, []
    with torch.no_grad():
        for x_t in seq:
            z, state = model(x_t, state)
            out.append(z)
    return torch.stack(out)


def _spikes(b=5, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, b, n, generator=g) < 0.4).float()


def _scaled(model, gain=8.0):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(gain)
    return model


CELLS = {  # cell, IR node, weight gain that makes it spike
    "LIFCell": (lambda: LIFCell(), nodes.CubaLIF, 8.0),
    "LIFBoxCell": (lambda: LIFBoxCell(), nodes.LIF, 30.0),
    "IAFCell": (lambda: IAFCell(), nodes.IF, 8.0),
}
READOUTS = {"LICell": (LICell, nodes.CubaLI), "LIBoxCell": (LIBoxCell, nodes.LI)}


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("readout", [None, *sorted(READOUTS)])
def test_sequential_state_lowers_faithfully(cell, readout):
    torch.manual_seed(3)
    make, kind, gain = CELLS[cell]
    last = READOUTS[readout][0]() if readout else make()
    model = _scaled(SequentialState(nn.Linear(10, 16, bias=False), make(),
                                    nn.Linear(16, 4, bias=False), last), gain)
    net = lower(model, steps=T)
    assert isinstance(net.layers[0].neuron, kind)
    assert net.readout == ("voltage" if readout else "spikes")
    x = _spikes()
    theirs = _run_stateful(model, x)
    ours = dynamics.run(net, x)[-1]
    if readout is None:
        assert theirs.sum() > 0
    assert torch.equal(theirs, ours)


@pytest.mark.parametrize("autapses", [False, True])
def test_lif_recurrent_cell_lowers_all_its_weights(autapses):
    torch.manual_seed(4)
    model = _scaled(SequentialState(LIFRecurrentCell(10, 12, autapses=autapses),
                                    nn.Linear(12, 3, bias=False), LIFCell()), 4.0)
    net = lower(model, steps=T)
    rec = net.layers[0].synapse
    assert isinstance(rec, nodes.RecurrentDense)
    assert net.synapse_count == 10 * 12 + 12 * 12 + 12 * 3
    np.testing.assert_array_equal(rec.weight, model[0].input_weights.detach().numpy())
    if not autapses:
        assert not np.any(np.diag(rec.weight_rec))
    x = _spikes()
    theirs, ours = _run_stateful(model, x), dynamics.run(net, x)[-1]
    assert theirs.sum() > 0 and torch.equal(theirs, ours)


class Feedback(nn.Module):
    """A user's recurrent layer built from a feed-forward and a feedback Linear."""

    def __init__(self, across: bool = False):
        super().__init__()
        self.fc, self.fb = nn.Linear(10, 8, bias=False), nn.Linear(8, 8, bias=False)
        self.lif, self.out, self.lif_out = LIFCell(), nn.Linear(8, 3, bias=False), LIFCell()
        self.across = across

    def forward(self, x):
        s1 = s2 = None
        z = torch.zeros(x.shape[1], 8)
        z2 = torch.zeros(x.shape[1], 3)
        out = []
        for t in range(x.shape[0]):
            z, s1 = self.lif(self.fc(x[t]) + self.fb(z), s1)
            z2, s2 = self.lif_out(self.out(z), s2)
            out.append(z2)
        return torch.stack(out)


def test_feedback_linear_from_the_same_cell_becomes_recurrent_dense():
    torch.manual_seed(5)
    model = _scaled(Feedback(), 4.0)
    x = _spikes()
    net = lower(model, x)
    rec = net.layers[0].synapse
    assert isinstance(rec, nodes.RecurrentDense)
    np.testing.assert_array_equal(rec.weight_rec, model.fb.weight.detach().numpy())
    with torch.no_grad():
        theirs = model(x)
    assert theirs.sum() > 0 and torch.equal(theirs, dynamics.run(net, x)[-1])


class Unsupported(nn.Module):
    def forward(self, x, state=None):
        return x, state


@pytest.mark.parametrize("model, piece, why", [
    (lambda: SequentialState(nn.Linear(10, 8, bias=False), LIFCell(), nn.MaxPool1d(2)),
     "2", "MaxPool1d"),
    (lambda: SequentialState(nn.Conv2d(1, 2, 3, bias=False), LIFCell(), nn.MaxPool2d(2),
                             LIFCell()), "2", "MaxPool2d.*use AvgPool2d"),
    (lambda: SequentialState(nn.Linear(10, 8, bias=False), nn.BatchNorm1d(8), LIFCell()),
     "1", "fold the normalization"),
    (lambda: SequentialState(nn.Linear(10, 8, bias=False), Unsupported()), "1", "Unsupported"),
    (lambda: SequentialState(nn.Linear(10, 8), LIFCell()), "0", "non-zero bias"),
    (lambda: SequentialState(nn.Linear(10, 8, bias=False),
                             LIFBoxCell(LIFBoxParameters(reset_method=reset_subtract))),
     "1", "reset_method"),
    (lambda: SequentialState(nn.Linear(10, 8, bias=False),
                             LIFCell(LIFParameters(tau_mem_inv=torch.linspace(50, 150, 8)))),
     "1", "tau_mem_inv differs between neurons"),
    (lambda: SequentialState(nn.Conv2d(1, 2, 3, dilation=2, bias=False), LIFCell()),
     "0", "dilation"),
])
def test_unsupported_pieces_are_named(model, piece, why):
    m = model()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.Linear) and mod.bias is not None:
                mod.bias.fill_(0.5)
    with pytest.raises(LoweringError, match=why) as info:
        lower(m, steps=T, input_shape=(1, 8, 8) if isinstance(m[0], nn.Conv2d) else None)
    assert info.value.piece == piece


class Relu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lif = nn.Linear(10, 8, bias=False), LIFCell()
        self.spare = nn.Parameter(torch.ones(3))

    def forward(self, x):
        s, out = None, []
        for t in range(x.shape[0]):
            z, s = self.lif(torch.relu(self.fc(x[t])), s)
            out.append(z)
        return torch.stack(out)


def test_traced_model_refuses_functions_and_unused_parameters():
    with pytest.raises(LoweringError, match="'relu' on the data path"):
        lower(Relu(), _spikes())

    class Spare(Relu):
        def forward(self, x):
            s, out = None, []
            for t in range(x.shape[0]):
                z, s = self.lif(self.fc(x[t]), s)
                out.append(z)
            return torch.stack(out)

    with pytest.raises(LoweringError, match="parameter spare .* would be dropped") as info:
        lower(Spare(), _spikes())
    assert info.value.piece == "spare"


def test_feedback_between_layers_is_refused():
    class Across(Feedback):
        def forward(self, x):
            s1 = s2 = None
            z2 = torch.zeros(x.shape[1], 8)
            out = []
            for t in range(x.shape[0]):
                z, s1 = self.lif(self.fc(x[t]) + self.fb(z2), s1)
                z2, s2 = self.lif_out(self.fb2(z), s2)
                out.append(z2)
            return torch.stack(out)

    m = Across()
    m.fb2 = nn.Linear(8, 8, bias=False)
    del m.out
    with pytest.raises(LoweringError, match="feeds itself through other layers; feedback "
                                           "between layers"):
        lower(m, _spikes())


SUPPORTED = ("lif", "box", "iaf")
UNSUPPORTED = ("relu", "batchnorm", "biased", "maxpool", "tanh")


def _piece(kind: str, width: int):
    return {"lif": LIFCell, "box": LIFBoxCell, "iaf": IAFCell, "relu": nn.ReLU,
            "tanh": nn.Tanh, "maxpool": lambda: nn.MaxPool1d(1),
            "batchnorm": lambda: nn.BatchNorm1d(width)}[kind]()


@examples(200)
@given(st.lists(st.tuples(st.integers(1, 9), st.sampled_from(SUPPORTED + UNSUPPORTED)),
                min_size=1, max_size=4), st.integers(1, 9))
def test_every_weight_lands_in_the_ir_or_the_first_unsupported_piece_is_named(layers, n_in):
    """Random SequentialState models, supported and unsupported pieces mixed: either the IR
    holds every weight (same count, same values, same order) or the error names the first
    piece that cannot be lowered."""
    mods, first_bad, width = [], None, n_in
    for out, kind in layers:
        biased = kind == "biased"
        lin = nn.Linear(width, out, bias=biased)
        if biased:
            with torch.no_grad():
                lin.bias.fill_(0.25)
            first_bad = first_bad if first_bad is not None else str(len(mods))
            kind = "lif"
        mods.append(lin)
        if kind in UNSUPPORTED and first_bad is None:
            first_bad = str(len(mods))
        mods.append(_piece(kind, out))
        width = out
    model = SequentialState(*mods)
    if first_bad is not None:
        with pytest.raises(LoweringError) as info:
            lower(model, steps=4)
        assert info.value.piece == first_bad
        return
    net = lower(model, steps=4)
    weights = [m.weight.detach().numpy() for m in mods if isinstance(m, nn.Linear)]
    assert len(net.layers) == len(weights)
    assert net.synapse_count == sum(w.size for w in weights)
    for layer, w in zip(net.layers, weights):
        np.testing.assert_array_equal(layer.synapse.weight, w)


def test_spiking_mlp_is_an_ordinary_user_and_extra_layers_are_never_dropped():
    """rewire's own SpikingMLP lowers through the same tracer (per-layer neurons from its
    cells); a subclass that adds a feedback Linear its forward does not use is refused by the
    parameter's name instead of compiling without it (what rewire did before the IR)."""
    from rewire.training.model import SpikingMLP

    torch.manual_seed(0)
    base = SpikingMLP((6, 8, 3), steps=5)
    with torch.no_grad():
        base.cells[1].p = base.cells[1].p._replace(tau_mem_inv=torch.tensor(500.0))
    net = lower(base)
    assert (net.encoding, net.steps, net.input_gain) == ("current", 5, 4.0)
    assert [l.neuron.tau_mem_inv for l in net.layers] == [1000.0, 500.0]

    class WithFeedback(SpikingMLP):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.fb = nn.Linear(8, 8, bias=False)

    with pytest.raises(LoweringError, match="parameter fb.weight .* would be dropped"):
        lower(WithFeedback((6, 8, 3), steps=5))


def test_a_slice_of_the_input_is_refused_not_passed_through():
    """Only ``x[t]`` is a plain time step; an unrecorded slice of the features is named."""
    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = nn.Linear(5, 4, bias=False), LIFCell()

        def forward(self, x):
            s, out = None, []
            for t in range(x.shape[0]):
                z, s = self.lif(self.fc(x[t][:, :5]), s)
                out.append(z)
            return torch.stack(out)

    with pytest.raises(LoweringError, match="indexing .*slice.* on the data path"):
        lower(Half(), _spikes())


def test_sum_pool_lowers_without_the_training_package():
    """The frontend knows rewire's pooling block by itself (issue 21: no registration at import
    time): in a fresh interpreter that never imports rewire.training, a SequentialState with
    ``rewire.frontends.pooling.SumPool2d`` lowers to a SumPool2d node of that weight, and
    ``SpikingConvNet`` pools with the very same class."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from norse.torch import LIFCell, SequentialState\n"
        "from rewire.frontends.norse import lower\n"
        "from rewire.frontends.pooling import SumPool2d\n"
        "m = SequentialState(torch.nn.Conv2d(1, 2, 3, bias=False), LIFCell(), SumPool2d(2, 2, "
        "1.5), LIFCell(), torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 3, bias=False), "
        "LIFCell())\n"
        "net = lower(m, input_shape=(1, 8, 8), steps=4)\n"
        "pool = net.layers[1].synapse\n"
        "print(pool.op, pool.kernel, pool.weight, "
        "any(k.startswith('rewire.training') for k in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["sumpool", "(2,", "2)", "1.5", "False"]
    from rewire.frontends.pooling import SumPool2d
    from rewire.training.conv import SpikingConvNet

    net = SpikingConvNet((1, 8, 8), channels=(2,), kernels=(3,), classes=3, steps=4)
    assert any(type(layer) is SumPool2d for layer in net.layers)
