"""NIR frontend: graphs written by snnTorch 1.0, Norse 1.1, rockpool 3.1 and spyx, in memory:
each lowered with its framework's semantics, what differs named in the notes."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from rewire.errors import LoweringError
from rewire.frontends.nir import lower
from rewire.ir.dynamics import initial_state, neuron_step, run, synaptic_input

from nir_chains import _cuba, _graph, _linear, _norse_cells, _norse_model

DATA = Path(__file__).parent.parent / "data"
warnings.filterwarnings("ignore", message=".*not writable.*")


# ---------------------------------------------------------------------------------------------
# (b) other frameworks' graphs


def _snntorch_graph(net, n_in):
    import nirtorch
    import snntorch as snn
    from snntorch.export_nir import _extract_snntorch_module

    return nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(1, n_in),
                                      model_name="snntorch",
                                      ignore_submodules_of=[snn.RLeaky, snn.RSynaptic])


def _snntorch_net(kind, reset="zero", delay=False, seed=0):
    import snntorch as snn

    torch.manual_seed(seed)
    kw = dict(init_hidden=True, reset_mechanism=reset, reset_delay=delay)
    hidden = {"leaky": lambda: snn.Leaky(beta=0.9, **kw),
              "synaptic": lambda: snn.Synaptic(alpha=0.8, beta=0.9, **kw),
              "rleaky": lambda: snn.RLeaky(beta=0.9, linear_features=20, **kw)}[kind]()
    if kind == "rleaky":
        hidden.recurrent.bias.data.zero_()
    net = torch.nn.Sequential(torch.nn.Linear(12, 20, bias=False), hidden,
                              torch.nn.Linear(20, 5, bias=False),
                              snn.Leaky(beta=0.8, output=True, **kw))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
    return net


def _snntorch_run(net, x):
    from snntorch import utils

    utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(x_t)[0] for x_t in x])


@pytest.mark.parametrize("kind", ["leaky", "synaptic", "rleaky"])
def test_snntorch_graphs_run_spike_for_spike_with_zero_reset(kind):
    """snnTorch 1.0 Leaky/Synaptic/RLeaky with reset_mechanism='zero', reset_delay=False have
    Norse's rule (framework='norse'): the lowered network's spikes equal snnTorch's own, 3
    seeds x 8 random spike inputs x 40 steps."""
    pytest.importorskip("snntorch")
    spikes = 0
    for seed in range(3):
        net = _snntorch_net(kind, seed=seed)
        ir = lower(_snntorch_graph(net, 12), dt=1e-4, framework="norse")
        assert ir.source == "nir:snntorch"
        kinds = [(l.synapse.op, l.neuron.kind) for l in ir.layers]
        assert kinds == [("dense_rec" if kind == "rleaky" else "dense",
                          "CubaLIF" if kind == "synaptic" else "LIF"), ("dense", "LIF")]
        np.testing.assert_array_equal(ir.layers[0].synapse.weight, net[0].weight.detach().numpy())
        if kind == "rleaky":
            np.testing.assert_array_equal(ir.layers[0].synapse.weight_rec,
                                          net[1].recurrent.weight.detach().numpy())
        x = (torch.rand(40, 8, 12, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
        ref = _snntorch_run(net, x)
        np.testing.assert_array_equal(run(ir, x)[-1].numpy(), ref.numpy())
        spikes += int(ref.sum())
    assert spikes > 100


def test_snntorch_conv_avgpool_flatten_graph_runs_spike_for_spike():
    """An snnTorch conv net (Conv2d -> Leaky -> AvgPool2d -> Leaky -> Flatten -> Linear ->
    Leaky, zero reset) lowers to conv, sum pool (weight 1/4) and dense layers whose spikes equal
    snnTorch's on 6 random spike maps x 30 steps."""
    pytest.importorskip("snntorch")
    import nirtorch
    import snntorch as snn
    from snntorch.export_nir import _extract_snntorch_module

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), snn.Leaky(beta=0.9, **kw),
                              torch.nn.AvgPool2d(2), snn.Leaky(beta=0.8, threshold=0.3, **kw),
                              torch.nn.Flatten(), torch.nn.Linear(36, 5, bias=False),
                              snn.Leaky(beta=0.9, threshold=0.5, output=True, **kw))
    with torch.no_grad():
        net[0].weight.mul_(4)
        net[5].weight.mul_(6)
    g = nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(1, 1, 8, 8),
                                   model_name="snntorch")
    ir = lower(g, dt=1e-4, framework="norse")
    assert [(l.synapse.op, l.out_shape) for l in ir.layers] == [
        ("conv", (4, 6, 6)), ("sumpool", (4, 3, 3)), ("dense", (5,))]
    assert ir.layers[1].synapse.weight == 0.25 and ir.layers[2].flatten
    x = (torch.rand(30, 6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    ref = _snntorch_run(net, x)
    assert ref.sum() > 20
    np.testing.assert_array_equal(run(ir, x)[-1].numpy(), ref.numpy())


@pytest.mark.parametrize("kind", ["leaky", "synaptic", "rleaky"])
def test_snntorch_default_reset_lowers_to_snntorch_s_rule(kind):
    """A detected snnTorch file gets snnTorch's defaults (subtract, reset_delay=True): the notes
    name the rule and the spikes equal snnTorch's own; Norse's rule (framework='norse') gives
    other spikes (measured here, so the default is not idle)."""
    pytest.importorskip("snntorch")
    net = _snntorch_net(kind, reset="subtract", delay=True)
    ir = lower(_snntorch_graph(net, 12), dt=1e-4)
    assert all(l.neuron.reset == "subtract" and l.neuron.reset_delay for l in ir.layers)
    note = " ".join(ir.notes)
    assert "reset_mechanism='subtract'" in note and "reset_delay=True" in note
    assert "batch dimension" in note
    x = (torch.rand(40, 8, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    ref = _snntorch_run(net, x)
    assert ref.sum() > 50
    np.testing.assert_array_equal(run(ir, x)[-1].numpy(), ref.numpy())
    norse = lower(_snntorch_graph(net, 12), dt=1e-4, framework="norse")
    assert not torch.equal(run(norse, x)[-1], ref)


def test_snntorch_rleaky_with_biases_lowers_spike_for_spike():
    """Issue 22 item 1: an RLeaky net with biases everywhere (its recurrent Linear's default
    bias, biased Linears) lowers with ``b = b_fc + b_rec`` in the recurrent layer and equals
    snnTorch spike for spike (zero reset) on 64 random spike inputs x 40 steps."""
    pytest.importorskip("snntorch")
    net = _snntorch_net("rleaky")
    torch.manual_seed(1)
    for k in (0, 2):
        biased = torch.nn.Linear(net[k].in_features, net[k].out_features)
        with torch.no_grad():
            biased.weight.copy_(net[k].weight)
            biased.bias.uniform_(-0.3, 0.3)
        net[k] = biased
    with torch.no_grad():
        net[1].recurrent.bias.uniform_(-0.2, 0.2)
    ir = lower(_snntorch_graph(net, 12), dt=1e-4, framework="norse")  # zero reset
    b_fc, b_rec = net[0].bias.detach().double(), net[1].recurrent.bias.detach().double()
    np.testing.assert_allclose(ir.layers[0].synapse.bias, (b_fc + b_rec).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ir.layers[1].synapse.bias, net[2].bias.detach().numpy())
    assert any("b_rec added" in n for n in ir.notes)
    x = (torch.rand(40, 64, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    ref = _snntorch_run(net, x)
    assert ref.sum() > 0
    np.testing.assert_array_equal(run(ir, x)[-1].numpy(), ref.numpy())


def test_nested_recurrent_subgraph_as_snntorch_writes_it():
    """snnTorch's RLeaky exporter returns a nested NIRGraph {input, lif, w_rec, output}; edges
    into it may name the subgraph or its input/output nodes."""
    pytest.importorskip("snntorch")
    from snntorch.export_nir import _extract_snntorch_module

    net = _snntorch_net("rleaky")
    sub = _extract_snntorch_module(net[1])
    assert isinstance(sub, nir.NIRGraph)
    fc = nir.Linear(weight=net[0].weight.detach().numpy())
    for into, out_of in (("rec", "rec"), ("rec.input", "rec.output")):
        g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([12])}),
                                "fc": fc, "rec": sub,
                                "output": nir.Output(output_type={"output": np.array([20])})},
                         edges=[("input", "fc"), ("fc", into), (out_of, "output")],
                         type_check=False)
        ir = lower(g, dt=1e-4, source="snntorch")
        layer = ir.layers[0]
        assert layer.synapse.op == "dense_rec" and layer.neuron.kind == "LIF"
        np.testing.assert_array_equal(layer.synapse.weight_rec,
                                      net[1].recurrent.weight.detach().numpy())


@pytest.mark.parametrize("cells", ["lif", "box", "iaf"])
def test_norse_to_nir_tau_bug_is_corrected_and_runs_spike_for_spike(cells):
    """Norse 1.1's to_nir writes tau = dt/tau_inv (norse #411/#412) and r = w_in = 1: lower
    detects it, corrects the time constants (200/s, 100/s come back exactly) and the IR equals
    Norse's own run (spikes, or the LI readout's v) exactly."""
    import norse.torch as norse

    model = _norse_model(_norse_cells()[cells])
    graph = norse.to_nir(model, torch.zeros(1, 12))
    assert float(graph.nodes["1"].tau if cells == "box" else 1e-5) < 1e-3  # the bug is there
    ir = lower(graph, dt=1e-3)
    assert ir.source == "nir:norse"
    assert any("#411" in note for note in ir.notes)
    first = ir.layers[0].neuron
    assert first.kind == {"lif": "CubaLIF", "box": "LIF", "iaf": "IF"}[cells]
    if cells == "lif":
        assert (first.tau_syn_inv, first.tau_mem_inv, first.v_th) == (200.0, 100.0, 1.0)
    x = (torch.rand(50, 8, 12, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    state, ref = None, []
    with torch.no_grad():
        for x_t in x:
            z, state = model(x_t, state)
            ref.append(z)
    ref = torch.stack(ref)
    assert ref.abs().sum() > 0
    np.testing.assert_array_equal(run(ir, x)[-1].numpy(), ref.numpy())


def test_norse_graph_without_the_bug_needs_source_norse():
    """A Norse graph with correct time constants (Norse after #411) is not recognisable: with
    source='norse' it lowers like the buggy one; without, by NIR's equations (w_in = 1 then
    scales the input by dt/tau_syn), with the unknown-source note."""
    import norse.torch as norse

    model = _norse_model(_norse_cells()["lif"])
    graph = norse.to_nir(model, torch.zeros(1, 12))
    fixed = dict(graph.nodes)
    for k in ("1", "3"):
        fixed[k] = dataclasses.replace(graph.nodes[k], tau_syn=graph.nodes[k].tau_syn / 1e-3,
                                       tau_mem=graph.nodes[k].tau_mem / 1e-3)
    fixed = nir.NIRGraph(nodes=fixed, edges=graph.edges, type_check=False)
    a, b = lower(graph, dt=1e-3), lower(fixed, dt=1e-3, source="norse")
    assert a.layers[0].neuron == b.layers[0].neuron
    plain = lower(fixed, dt=1e-3)
    assert plain.source == "nir" and any("source unknown" in n for n in plain.notes)
    assert plain.layers[0].neuron.v_th == 1.0  # V / r with r = 1
    np.testing.assert_allclose(plain.layers[0].synapse.weight,  # w_in dt / tau_syn = 0.2
                               0.2 * model[0].weight.detach().numpy(), rtol=1e-6)
    with pytest.raises(LoweringError, match="source='norse' but r or w_in"):
        lower(_graph(("fc", _linear(3, 4)), ("lif", _cuba(3))), dt=1e-3, source="norse")


def test_rockpool_lif_subthreshold_dynamics_are_exact():
    """rockpool 3.1 LIFTorch written by its to_nir is lowered as LIFTorch's own step (exact
    decays, the current decayed before it enters v): below threshold the IR's v equals
    rockpool's vmem over 40 steps to 3e-4 (float32 rounding); the notes name the multiple
    spikes and subtractive reset."""
    pytest.importorskip("rockpool")
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    torch.manual_seed(0)
    dt = 1e-3
    net = Sequential(LinearTorch((12, 20), has_bias=False),
                     LIFTorch(20, tau_mem=0.02, tau_syn=0.01, threshold=1e6, dt=dt))
    ir = lower(to_nir(net), dt=dt)
    assert ir.source == "nir:rockpool"
    assert any("LIFTorch's (n = floor(v / v_th) spikes" in n for n in ir.notes)
    x = torch.rand(40, 3, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        _, _, rec = net(x.transpose(0, 1), record=True)
    vmem = rec[next(k for k in rec if k.endswith("LIFTorch"))]["vmem"].transpose(0, 1)
    layer = ir.layers[0]
    state, vs = initial_state(layer.neuron, layer.out_shape, 3), []
    for x_t in x:
        _, state = neuron_step(layer.neuron, [synaptic_input(layer.synapse, x_t, (12,))],
                               state)
        vs.append(state.v)
    # float32 rounding drifts by about 3e-6 per step (1.4e-4 after 40); the Euler reading of
    # the file's r and w_in would be off by a factor of 10 (w_in dt / tau_syn = 0.1)
    np.testing.assert_allclose(torch.stack(vs).numpy(), vmem.numpy(), rtol=0, atol=3e-4)
    assert float(vmem.abs().max()) > 0.5


def test_rockpool_spiking_follows_rockpool_s_rule():
    """A detected rockpool file gets LIFTorch's rule (several spikes per step at v >= v_th,
    subtractive reset): over 3 random 12-20-5 nets x 8 inputs x 100 steps both layers' spike
    counts equal rockpool's (measured: hidden 1513, 2349, 1229; output 92, 477, 393); Norse's
    rule (framework='norse') loses the residual above threshold."""
    pytest.importorskip("rockpool")
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    dt = 1e-3
    for seed in range(3):
        torch.manual_seed(seed)
        net = Sequential(LinearTorch((12, 20), has_bias=False),
                         LIFTorch(20, tau_mem=0.02, tau_syn=0.01, dt=dt),
                         LinearTorch((20, 5), has_bias=False),
                         LIFTorch(5, tau_mem=0.02, tau_syn=0.01, dt=dt))
        with torch.no_grad():
            for m in net.modules().values():
                if isinstance(m, LinearTorch):
                    m.weight.mul_(0.1)
        ir = lower(to_nir(net), dt=dt)
        assert all(l.neuron.max_spikes == 2**16 and l.neuron.reset == "subtract"
                   and l.neuron.spike_at_threshold for l in ir.layers)
        x = (torch.rand(100, 8, 12, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
        hidden, out = run(ir, x, record_all=True)
        with torch.no_grad():
            o, _, rec = net(x.transpose(0, 1), record=True)
        h = rec[next(k for k in rec if k.endswith("LIFTorch"))]["spikes"].transpose(0, 1)
        assert float(h.sum()) > 1000 and float(o.sum()) > 50
        np.testing.assert_array_equal(hidden.numpy(), h.numpy())
        np.testing.assert_array_equal(out.numpy(), o.transpose(0, 1).numpy())
        norse = run(lower(to_nir(net), dt=dt, framework="norse"), x, record_all=True)[0]
        assert float(norse.sum()) < float(h.sum())


def test_spyx_file_parameters_reproduce_spyx_and_the_reset_is_named():
    """tests/data/spyx_lif.nir (spyx 1.0's to_nir, made in a Python 3.11 venv by
    scripts/make_spyx_fixture.py): detected as spyx (r = beta), lowered to LIF layers whose
    parameters, run with spyx's own rule (spike from the pre-update V, subtractive reset), give
    spyx's stored output spikes exactly; by default the file is refused (spyx's spikes come
    one step late, which the IR has no field for); with framework='nir' the IR's own reset
    gives other spikes (measured: 92 % of entries agree, 84 vs 80 spikes), and the notes say
    why."""
    side = json.loads((DATA / "spyx_lif.json").read_text())
    with pytest.raises(LoweringError, match="one step late"):
        lower(DATA / "spyx_lif.nir", dt=side["dt"])
    ir = lower(DATA / "spyx_lif.nir", dt=side["dt"], framework="nir")
    assert ir.source == "nir:spyx" and [l.neuron.kind for l in ir.layers] == ["LIF", "LIF"]
    assert any("pre-update v" in n for n in ir.notes)
    x, ref = np.array(side["x"], dtype=np.float32), np.array(side["out"])
    s = x
    for layer in ir.layers:
        n, w = layer.neuron, layer.synapse.weight
        beta, thr = np.float32(1 - n.dt * n.tau_mem_inv), np.float32(n.v_th / (n.dt * n.tau_mem_inv))
        v, outs = np.zeros((x.shape[1], w.shape[0]), np.float32), []
        for s_t in s:
            z = (v - thr > 0).astype(np.float32)
            v = beta * v + s_t @ w.T - z * thr
            outs.append(z)
        s = np.stack(outs)
    assert ref.sum() > 20
    np.testing.assert_array_equal(s, ref)
    out = run(ir, torch.tensor(x))[-1].numpy()
    assert not np.array_equal(out, ref) and (out == ref).mean() > 0.85
