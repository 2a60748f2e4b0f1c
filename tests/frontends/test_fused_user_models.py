"""Issue 22 items 1, 2 and 4 from user code: models written as Norse's documentation writes
them (bias on by default, ``BatchNorm2d`` in a conv net, ``Linear -> LIFRecurrentCell``) and a
sinabs-style NIR conv net (conv -> IF -> sum pool -> conv -> IF -> sum pool -> flatten ->
linear -> IF). Each lowers with its biases, its BatchNorm folded and its chains fused, and the
float IR equals the user's model spike for spike on 64 random spike inputs."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from norse.torch import LIFCell, LIFRecurrentCell, SequentialState
from torch import nn
from torch.nn import functional as F

from rewire.frontends import lower
from rewire.frontends.nir import lower as lower_nir
from rewire.ir import dynamics, nodes

T, SAMPLES = 16, 64


def _spikes(*shape, seed=0, p=0.3):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, SAMPLES, *shape, generator=g) < p).float()


def _run(model, x):
    state, out = None, []
    with torch.no_grad():
        for x_t in x:
            z, state = model(x_t, state)
            out.append(z)
    return torch.stack(out)


def _scaled(model, gain):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") or name.endswith("weights"):
                p.mul_(gain)
    return model


def _randomize_norm(bn: nn.BatchNorm2d, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
        bn.bias.copy_(torch.rand(c, generator=g) - 0.5)
        bn.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
        bn.running_var.copy_(0.3 + torch.rand(c, generator=g))


def _same(model, net, x):
    theirs, ours = _run(model, x), dynamics.run(net, x)[-1]
    assert theirs.sum() > 0, "the model is silent: the test would prove nothing"
    assert torch.equal(theirs, ours), f"{int((theirs != ours).sum())} spikes differ"
    return int(theirs.sum())


def test_norse_mlp_with_default_biases():
    torch.manual_seed(0)
    model = _scaled(SequentialState(nn.Linear(64, 96), LIFCell(), nn.Linear(96, 10),
                                    LIFCell()), 6.0)
    net = lower(model, steps=T)
    for layer, lin in zip(net.layers, (model[0], model[2])):
        np.testing.assert_array_equal(layer.synapse.bias, lin.bias.detach().numpy())
    _same(model, net, _spikes(64))


def test_norse_conv_net_with_batchnorm2d_in_eval_mode():
    torch.manual_seed(1)
    model = SequentialState(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), LIFCell(),
                            nn.AvgPool2d(2), LIFCell(), nn.Flatten(),
                            nn.Linear(8 * 4 * 4, 10), LIFCell())
    _randomize_norm(model[1], 1)
    _scaled(model, 8.0).eval()
    net = lower(model, steps=T, input_shape=(1, 8, 8))
    assert [layer.synapse.op for layer in net.layers] == ["conv", "sumpool", "dense"]
    assert net.layers[0].synapse.bias is not None
    _same(model, net, _spikes(1, 8, 8, seed=1))


def test_linear_before_a_recurrent_cell_is_fused_into_its_input_weights():
    torch.manual_seed(2)
    model = _scaled(SequentialState(nn.Linear(64, 32), LIFRecurrentCell(32, 24),
                                    nn.Linear(24, 10), LIFCell()), 5.0)
    net = lower(model, steps=T)
    rec = net.layers[0].synapse
    assert isinstance(rec, nodes.RecurrentDense) and rec.weight.shape == (24, 64)
    assert net.names[0] == "0+1" and "fused exactly" in " ".join(net.notes)
    w = model[1].input_weights.detach().double() @ model[0].weight.detach().double()
    np.testing.assert_allclose(rec.weight, w.numpy(), rtol=1e-6, atol=1e-7)
    _same(model, net, _spikes(64, seed=2))


class _TimeLoop(nn.Module):
    """A model with its own time loop (Norse's documentation style): a biased Linear with a
    BatchNorm1d, then two Linears in a row."""

    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.lif1 = nn.Linear(64, 32), nn.BatchNorm1d(32), LIFCell()
        self.fc2, self.fc3, self.lif2 = nn.Linear(32, 24), nn.Linear(24, 10), LIFCell()

    def forward(self, x):
        s1 = s2 = None
        out = []
        for t in range(x.shape[0]):
            z, s1 = self.lif1(self.bn(self.fc1(x[t])), s1)
            z, s2 = self.lif2(self.fc3(self.fc2(z)), s2)
            out.append(z)
        return torch.stack(out)


def test_a_traced_model_with_batchnorm_and_a_linear_chain():
    torch.manual_seed(4)
    model = _TimeLoop()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
        for lin in (model.fc1, model.fc2, model.fc3):
            lin.weight.mul_(6.0)
    model.eval()
    x = _spikes(64, seed=4)
    net = lower(model, x)
    assert net.names == ("fc1", "fc2+fc3")
    with torch.no_grad():
        theirs = model(x)
    assert theirs.sum() > 0 and torch.equal(theirs, dynamics.run(net, x)[-1])


def _if(shape, dt):
    full = lambda v: np.full(shape, float(v))  # noqa: E731
    return nir.IF(r=full(1.0), v_threshold=full(1.0), v_reset=full(0.0))  # v += input


def _sinabs_graph(dt=1e-3, seed=3, weights=None):
    """conv -> IF -> sum pool -> conv -> IF -> sum pool -> flatten -> linear -> IF, bias-free
    (the Speck layout sinabs exports), weights that make every layer spike (or ``weights``,
    ``(w1, w2, w3)``: trained ones, tests/export/test_field_models.py)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.3, 0.5, (4, 1, 3, 3)).astype(np.float32)
    w2 = rng.normal(0.1, 0.3, (8, 4, 3, 3)).astype(np.float32)
    w3 = rng.normal(0.0, 0.05, (10, 8 * 2 * 2)).astype(np.float32)
    if weights is not None:
        w1, w2, w3 = weights

    def conv(w, hw):
        return nir.Conv2d(input_shape=hw, weight=w, stride=1, padding=1, dilation=1, groups=1,
                          bias=np.zeros(len(w)))

    def pool():
        return nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                             padding=np.array([0, 0]))

    chain = [("conv1", conv(w1, (8, 8))), ("if1", _if((4, 8, 8), dt)), ("pool1", pool()),
             ("conv2", conv(w2, (4, 4))), ("if2", _if((8, 4, 4), dt)), ("pool2", pool()),
             ("flat", nir.Flatten(input_type={"input": np.array([8, 2, 2])}, start_dim=0,
                                  end_dim=-1)),
             ("fc", nir.Linear(weight=w3)), ("if3", _if((10,), dt))]
    names = ["input", *[n for n, _ in chain], "output"]
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
                                **dict(chain), "output": nir.Output(output_type={
                                    "output": np.array([10])})},
                         edges=list(zip(names, names[1:])), metadata={"dt": dt},
                         type_check=False)
    return graph, (w1, w2, w3)


def _unfused_run(net, weights, x):
    """The graph's own data flow: each NIR synapse applied in turn (float32, torch), then the
    lowered IR neuron of its layer."""
    w1, w2, w3 = (torch.from_numpy(w) for w in weights)
    ones = lambda c: torch.ones(c, 1, 2, 2)  # noqa: E731
    maps = [lambda s: F.conv2d(s, w1, padding=1),
            lambda s: F.conv2d(F.conv2d(s, ones(4), stride=2, groups=4), w2, padding=1),
            lambda s: F.linear(F.conv2d(s, ones(8), stride=2, groups=8).flatten(1), w3)]
    states = [dynamics.initial_state(l.neuron, l.out_shape, x.shape[1]) for l in net.layers]
    out = []
    for x_t in x:
        s = x_t
        for k, layer in enumerate(net.layers):
            s, states[k] = dynamics.neuron_step(layer.neuron, [maps[k](s)], states[k])
        out.append(s)
    return torch.stack(out)


def test_sinabs_style_nir_conv_net_fuses_pools_and_runs_spike_for_spike():
    """The pools fuse into the next conv (SumPool2d(2) -> Conv2d(3x3, pad 1) is one
    Conv2d(6x6, stride 2, pad 2), kernel kron(W, ones(2, 2))) and into the Linear (W P); IF
    nodes with rewire's default semantics (sinabs' own IF semantics, several spikes and
    subtraction, are the IR's reset fields, lowered in frontends/_nir_neurons.py)."""
    graph, weights = _sinabs_graph()
    net = lower_nir(graph, steps=T, framework="norse")  # sinabs' own rule: test_field_models
    assert net.names == ("conv1", "pool1+conv2", "pool2+fc")
    conv = net.layers[1].synapse
    assert (conv.kernel, conv.stride, conv.padding) == ((6, 6), (2, 2), (2, 2))
    np.testing.assert_array_equal(conv.weight, np.kron(weights[1], np.ones((1, 1, 2, 2))))
    assert net.layers[2].synapse.weight.shape == (10, 8 * 4 * 4)
    x = _spikes(1, 8, 8, seed=3, p=0.5)
    theirs, ours = _unfused_run(net, weights, x), dynamics.run(net, x)[-1]
    assert theirs.sum() > 0 and torch.equal(theirs, ours)
    layers = dynamics.run(net, x, record_all=True)
    assert all(0 < int(s.sum()) < s.numel() for s in layers)  # every layer spikes, none saturates
    import rewire

    compiled = rewire.compile(graph, "loihi2", steps=T, framework="norse")
    assert len(compiled.layers) == 3
