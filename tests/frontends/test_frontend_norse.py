"""The Norse frontend on models written as Norse's documentation writes them: faithful
lowering (the IR's float run equals the model spike for spike), every weight in the IR, and
every piece it cannot map refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import event, given
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
     "1", "BatchNorm1d.*training mode.*model.eval\\(\\)"),
    (lambda: SequentialState(nn.Linear(10, 8), LIFCell(), nn.BatchNorm1d(8).eval(), LIFCell()),
     "2", "follows CubaLIF, not a Linear or Conv2d"),
    (lambda: SequentialState(nn.Linear(10, 8), nn.BatchNorm1d(8, track_running_stats=False).eval(),
                             LIFCell()), "1", "track_running_stats=False"),
    (lambda: SequentialState(nn.Linear(10, 8), LIFCell(), nn.Linear(8, 3)), "2",
     "'2' \\(Linear\\) is the last node, with no neuron after it"),
    (lambda: SequentialState(nn.Linear(10, 8, bias=False), Unsupported()), "1", "Unsupported"),
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


SUPPORTED = ("lif", "box", "iaf", "rec")
UNSUPPORTED = ("relu", "batchnorm-train", "maxpool", "tanh")


def _piece(kind: str, width: int):
    return {"lif": LIFCell, "box": LIFBoxCell, "iaf": IAFCell, "relu": nn.ReLU,
            "tanh": nn.Tanh, "maxpool": lambda: nn.MaxPool1d(1),
            "batchnorm-train": lambda: nn.BatchNorm1d(width)}[kind]()


def _eval_norm(width: int, rng) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(width)
    with torch.no_grad():
        for t, (lo, hi) in ((bn.weight, (0.5, 2)), (bn.bias, (-1, 1)),
                            (bn.running_mean, (-1, 1)), (bn.running_var, (0.2, 3))):
            t.copy_(torch.from_numpy(rng.uniform(lo, hi, width)))
    return bn.eval()


def _expected_maps(mods):
    """Per IR layer the float64 ``(W, b)`` of the user's linear modules before each neuron
    (Linear, eval BatchNorm and a recurrent cell's input weights composed in order)."""
    out, w, b = [], None, None
    for m in mods:
        if isinstance(m, nn.Linear):
            mw = m.weight.detach().double()
            mb = torch.zeros(len(mw), dtype=torch.float64) if m.bias is None \
                else m.bias.detach().double()
            w, b = (mw, mb) if w is None else (mw @ w, mw @ b + mb)
        elif isinstance(m, nn.BatchNorm1d):
            scale = m.weight.detach().double() / torch.sqrt(m.running_var.double() + m.eps)
            w, b = w * scale[:, None], ((b - m.running_mean.double()) * scale
                                        + m.bias.detach().double())
        elif isinstance(m, LIFRecurrentCell):
            win = m.input_weights.detach().double()
            w, b = (win, None) if w is None else (win @ w, win @ b)
            out.append((w, b))
            w = b = None
        else:
            out.append((w, b))
            w = b = None
    return out


@examples(200)
@given(st.lists(st.tuples(st.integers(1, 9), st.sampled_from(SUPPORTED * 4 + UNSUPPORTED),
                          st.booleans(), st.booleans(), st.booleans()),
                min_size=1, max_size=4), st.integers(1, 9), st.integers(0, 2**16))
def test_every_weight_lands_in_the_ir_or_the_first_unsupported_piece_is_named(layers, n_in,
                                                                             seed):
    """Random SequentialState models as Norse's docs write them: Linear with or without bias,
    an eval-mode BatchNorm1d after it, a second Linear without a neuron between (fused), a
    LIFRecurrentCell after a Linear (fused into its input weights), with unsupported pieces
    mixed in. Either the IR holds every weight (each layer's ``W``, ``b`` the user's linear
    modules composed exactly, bias-free unfused layers bit for bit, and the float IR's spikes
    equal the model's when no layer was fused or folded) or the error names the first piece
    that cannot be lowered."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    mods, first_bad, width, exact = [], None, n_in, True
    for out, kind, biased, norm, chained in layers:
        if chained:
            mods.append(nn.Linear(width, width, bias=biased))
            exact = False
        if kind == "rec":
            mods.append(LIFRecurrentCell(width, out))
        else:
            mods.append(nn.Linear(width, out, bias=biased))
            if norm:
                mods.append(_eval_norm(out, rng))
                exact = False
            if kind in UNSUPPORTED and first_bad is None:
                first_bad = str(len(mods))
            mods.append(_piece(kind, out))
        width = out
    model = SequentialState(*mods)
    if first_bad is not None:
        with pytest.raises(LoweringError) as info:
            lower(model, steps=4)
        assert info.value.piece == first_bad
        event("refused")
        return
    net = lower(model, steps=4)
    event("lowered exactly" if exact else "lowered, fused or folded")
    maps = _expected_maps(mods)
    assert len(net.layers) == len(maps)
    for layer, (w, b) in zip(net.layers, maps):
        np.testing.assert_allclose(layer.synapse.weight, w.numpy(), rtol=1e-5, atol=1e-6)
        got = np.zeros(len(w)) if layer.synapse.bias is None else layer.synapse.bias
        want = np.zeros(len(w)) if b is None else b.numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if exact:
        for layer, m in zip(net.layers, [m for m in mods if isinstance(m, (nn.Linear,
                                                                            LIFRecurrentCell))]):
            w = m.weight if isinstance(m, nn.Linear) else m.input_weights
            np.testing.assert_array_equal(layer.synapse.weight, w.detach().numpy())
        x = _spikes(b=4, n=n_in, seed=seed)
        assert torch.equal(_run_stateful(model, x), dynamics.run(net, x)[-1])


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
