"""rewire.compiler.metrics: NeuroBench 2.3 metrics counted on the integer model, checked by
hand-countable cases, against the simulator, and against NeuroBench 2.3 itself running
rewire's NIR file through snnTorch (the optional ``neurobench`` extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from rewire import compile as compile_network
from rewire.compiler.metrics import energy_estimate, network_metrics
from rewire.compiler.simulate import encode_input, simulate
from rewire.errors import ProfileError
from rewire.hw_profiles.profile import HardwareProfile, load_profile
from rewire.ir.compiled_layers import CompiledConv
from rewire.training.conv import SpikingConvNet
from conftest import random_network

STEPS = 16


def _digits_like(n: int, n_in: int, seed: int) -> np.ndarray:
    """Inputs on the payload grid k/16 (so a non-zero float input is a non-zero payload),
    about half of them zero."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 17, (n, n_in)) / 16.0
    x[x < 0.5] = 0.0
    return x.astype(np.float32)


def test_counts_match_the_simulator_and_hand_counts(small_net):
    _, net = small_net
    x = _digits_like(40, 12, 0)
    payload = encode_input(net, x)
    m = network_metrics(net, payload)
    out = simulate(net, payload, record_all=True)
    fc1, fc2 = net.layers
    # first layer: graded payloads -> MACs = sum over steps/samples of nnz(x) x fan-out
    fan_out = (fc1.weight_int != 0).sum(0)
    assert m["synaptic_operations"]["effective_macs"] == pytest.approx(
        net.steps * ((payload[0] != 0) @ fan_out).sum() / 40)
    acs = sum(((out[0][t] != 0) @ (fc2.weight_int != 0).sum(0)).sum() for t in range(net.steps))
    assert m["synaptic_operations"]["effective_acs"] == pytest.approx(acs / 40)
    assert m["synaptic_operations"]["dense"] == net.steps * (fc1.weight_int.size
                                                             + fc2.weight_int.size)
    spikes = sum(int(o.sum()) for o in out)
    assert spikes > 0
    assert m["activation_sparsity"] == pytest.approx(1 - spikes / sum(o.size for o in out))
    for row, o in zip(m["layers"], out):
        assert row["activation_sparsity"] == pytest.approx(1 - o.mean())
    assert m["layers"][0]["input"] == "graded" and m["layers"][1]["input"] == "spikes"
    nnz = sum(np.count_nonzero(l.weight_int) for l in net.layers)
    size = sum(l.weight_int.size for l in net.layers)
    assert m["connection_sparsity"] == pytest.approx(1 - nnz / size)
    assert m["footprint_bytes"] == 4 * size
    # every neuron's first step, then at most one update per neuron and step
    n = sum(l.shape[0] for l in net.layers)
    assert n <= m["membrane_updates"] <= n * net.steps


def _brute_force_ops(net, payload):
    """NeuroBench's count, literally: per step a binary copy of each layer (weights and
    inputs set to 1 where non-zero) applied to the binary input, summed (torch, float64)."""
    out = simulate(net, payload, record_all=True)
    inputs = [payload] + [o.astype(np.int64) for o in out[:-1]]
    total = []
    for layer, s in zip(net.layers, inputs):
        w = torch.as_tensor((layer.weight_int != 0).astype(np.float64))
        x = torch.as_tensor((s != 0).astype(np.float64)).flatten(0, 1)
        if isinstance(layer, CompiledConv):
            y = torch.nn.functional.conv2d(x.reshape(len(x), *layer.in_shape), w,
                                           stride=layer.stride, padding=layer.padding,
                                           groups=layer.groups)
        else:
            y = x @ w.T
        total.append(float(y.sum()) / payload.shape[1])
    return total


@given(seed=st.integers(0, 2 ** 16), density=st.floats(0.05, 1.0), batch=st.integers(1, 6))
def test_effective_ops_are_neurobench_binary_copy_counts(loihi2, seed, density, batch):
    net = compile_network(random_network((9, 11, 4), steps=6, seed=seed, density=density),
                          loihi2, input_max_value=16)
    payload = encode_input(net, _digits_like(batch, 9, seed))
    m = network_metrics(net, payload)
    for row, ops in zip(m["layers"], _brute_force_ops(net, payload)):
        assert row["effective_ops"] == pytest.approx(ops)
        assert 0 <= row["effective_ops"] <= row["dense_ops"]


def test_conv_and_sum_pool_ops_match_torch_conv_counts(loihi2):
    torch.manual_seed(0)
    model = SpikingConvNet((2, 9, 7), channels=[3, 4], kernels=[3, 2], strides=[2, 1],
                           paddings=[1, 0], pools=[1, 2], classes=5, steps=10,
                           input_gain=4.0, pool_weight=2.5)
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer.weight, torch.nn.Parameter):
                layer.weight.add_(0.5 / layer.weight[0].numel() ** 0.5).mul_(6.0)
    net = compile_network(model, loihi2, 16)
    assert any(isinstance(l, CompiledConv) for l in net.layers)
    payload = encode_input(net, _digits_like(5, net.layers[0].shape[1], 2))
    m = network_metrics(net, payload)
    assert m["synaptic_operations"]["effective_acs"] > 0
    for row, ops in zip(m["layers"], _brute_force_ops(net, payload)):
        assert row["effective_ops"] == pytest.approx(ops)


def test_silent_input_costs_no_effective_operations(small_net):
    _, net = small_net
    m = network_metrics(net, np.zeros((net.steps, 3, 12), np.int64))
    assert m["synaptic_operations"]["effective_macs"] == 0
    assert m["synaptic_operations"]["effective_acs"] == 0
    assert m["activation_sparsity"] == 1.0
    with pytest.raises(ValueError, match="payload must have shape"):
        network_metrics(net, np.zeros((net.steps, 3, 11), np.int64))


def test_energy_is_modelled_from_the_profile_figures_or_refused(small_net):
    _, net = small_net
    m = network_metrics(net, encode_input(net, _digits_like(8, 12, 1)))
    none = energy_estimate(net, m, load_profile("loihi2").energy)
    assert none["nj_per_sample"] is None and "no published figure" in none["reason"]
    loihi = load_profile("loihi").energy
    e = energy_estimate(net, m, loihi)
    ops = m["synaptic_operations"]
    syn = (ops["effective_macs"] + ops["effective_acs"]) * 23.6 / 1000
    assert e["label"] == "modelled" and e["parts_nj"]["synaptic_ops"] == pytest.approx(syn)
    assert e["nj_per_sample"] == pytest.approx(sum(e["parts_nj"].values()))
    neurons = sum(l.shape[0] for l in net.layers) * net.steps
    assert e["nj_per_sample"] >= syn + neurons * 52.0 / 1000


def test_energy_section_is_all_or_nothing_with_sources():
    data = load_profile("loihi").to_dict()
    bad = {**data, "energy": {**data["energy"], "spike_pj": 0.0}}
    with pytest.raises(ProfileError, match="energy.spike_pj"):
        HardwareProfile.from_dict(bad)
    unsourced = {**data, "sources": {k: v for k, v in data["sources"].items()
                                     if k != "energy.synaptic_op_pj"}}
    with pytest.raises(ProfileError, match="sources.energy.synaptic_op_pj"):
        HardwareProfile.from_dict(unsourced)
    with pytest.raises(ProfileError, match="energy.note"):
        HardwareProfile.from_dict({**data, "energy": {}})
    with pytest.raises(ProfileError, match="energy.spike_pj"):
        HardwareProfile.from_dict({**data, "energy": {**data["energy"], "spike_pj": -1.0}})
    no_section = {k: v for k, v in data.items() if k != "energy"}
    assert not HardwareProfile.from_dict(no_section).energy.published


def _snntorch_benchmark(path, x, steps, masks):
    """NeuroBench 2.3 on rewire's NIR file read by snnTorch, with the chip's zero weights
    (float weights that quantize to 0) zeroed, so both count the same synapses."""
    import nir
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel
    from snntorch.import_nir import import_from_nir

    snn_net = import_from_nir(nir.read(str(path)))
    linears = [mod for mod in snn_net.modules() if isinstance(mod, torch.nn.Linear)]
    assert sorted(tuple(l.weight.shape) for l in linears) == sorted(m.shape for m in masks)
    for lin in linears:
        mask = next(m for m in masks if m.shape == tuple(lin.weight.shape))
        with torch.no_grad():
            lin.weight.mul_(torch.as_tensor(mask, dtype=lin.weight.dtype))
    data = torch.as_tensor(x)[:, None, :].expand(-1, steps, -1).contiguous()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data, torch.zeros(len(x), dtype=torch.long)),
        batch_size=32)
    bench = Benchmark(SNNTorchModel(snn_net), loader, [], [],
                      [[Footprint, ConnectionSparsity],
                       [SynapticOperations, ActivationSparsity, MembraneUpdates]])
    return bench.run(verbose=False)


def test_neurobench_counts_the_same_synops_and_activation_sparsity(loihi2, tmp_path):
    """NeuroBench 2.3 (``TorchModel``/``SNNTorchModel``) on the NIR file vs rewire on the
    integer model: SynOps and activation sparsity within 1 %."""
    pytest.importorskip("neurobench", reason="NeuroBench 2.3 is not installed (the optional "
                                             "'neurobench' extra)")
    pytest.importorskip("snntorch", reason="snnTorch is not installed (the 'readers' extra)")
    from rewire.export import nir_graph

    torch.manual_seed(0)
    model = random_network((20, 32, 8), steps=STEPS, density=0.3, weight_gain=4.0)
    net = compile_network(model, loihi2, 16)
    path = nir_graph.write(net, tmp_path / "m.nir")
    x = _digits_like(96, 20, 3)
    ours = network_metrics(net, encode_input(net, x))
    theirs = _snntorch_benchmark(path, x, STEPS,
                                 [(l.weight_int != 0) for l in net.layers])
    nb_ops, ops = theirs["SynapticOperations"], ours["synaptic_operations"]
    assert ops["effective_macs"] > 0 and ops["effective_acs"] > 0
    assert ops["effective_macs"] == pytest.approx(nb_ops["Effective_MACs"], rel=0.01)
    assert ops["effective_acs"] == pytest.approx(nb_ops["Effective_ACs"], rel=0.01)
    assert ops["dense"] == nb_ops["Dense"]
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], rel=0.01)
    assert round(ours["connection_sparsity"], 4) == theirs["ConnectionSparsity"]
    # NeuroBench's footprint adds snnTorch's neuron parameters to the float32 weights
    assert 0 <= theirs["Footprint"] - ours["footprint_bytes"] <= 64 * len(net.layers)


def test_activation_sparsity_counts_a_multi_spike_step_once():
    """A Xylo hidden neuron sending 31 spikes in one step is one non-zero activation
    (NeuroBench 2.3's ActivationSparsity counts non-zero outputs): the sparsity stays in
    [0, 1] while the spike count (for the energy model) counts every event."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "export"))
    from xylo_compiled_nets import layer, network
    from rewire.compiler.metrics import workload_metrics

    hidden = layer("fc1", np.full((4, 2), 100), 1, 1, 10, 31)    # 15 events -> many spikes
    readout = layer("fc2", np.full((2, 4), 1), 1, 1, 1000, 1)
    net = network([hidden, readout], steps=4)
    payload = np.full((4, 3, 2), 15, np.int64)
    rows = workload_metrics(net, payload)["layers"]
    assert rows[0]["spikes"] > 4 * 4          # several spikes per neuron and step
    assert 0.0 <= rows[0]["activation_sparsity"] <= 1.0
    assert rows[0]["activation_sparsity"] == 0.0   # every neuron active at every step
