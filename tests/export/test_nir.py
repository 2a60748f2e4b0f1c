"""NIR export: the graph's contents and conventions, nir.write/nir.read, and the NIR
equations integrated by hand giving the Norse model's spikes (the importer's tests are in
tests/frontends/test_nir_*.py)."""

from __future__ import annotations

import dataclasses

import nir
import numpy as np
import pytest
import torch
from hypothesis import assume, strategies as st

from rewire.frontends import nir as nir_frontend
from rewire import compile as compile_network
from rewire.export import nir_graph
from rewire.training.conv import SpikingConvNet
from rewire.training.model import NeuronConfig




def cuba_euler(lif, s, state, dt):
    """One forward-Euler step of NIR's CubaLIF equations in float64 (the NIR spec, integrated
    as readers do): input ``s``, state ``(i, v)``; returns ``(spikes bool, (i, v))``."""
    i, v = state
    i = i + dt / lif.tau_syn * (-i + lif.w_in * s)
    v = v + dt / lif.tau_mem * (lif.v_leak - v + lif.r * i)
    z = v > lif.v_threshold
    return z, (i, np.where(z, lif.v_reset, v))

def test_graph_has_correct_time_constants_and_full_shapes(small_net):
    _, net = small_net
    g = nir_graph.to_nir(net)
    assert [type(g.nodes[n]).__name__ for n in ("input", "fc1", "lif1", "fc2", "lif2", "output")] \
        == ["Input", "Linear", "CubaLIF", "Linear", "CubaLIF", "Output"]
    lif = g.nodes["lif1"]
    n = net.layers[0].shape[0]
    for field in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
        assert getattr(lif, field).shape == (n,), field  # Norse issue #412: full shapes
    neuron = net.neuron
    np.testing.assert_allclose(lif.tau_syn, 1 / neuron.tau_syn_inv)  # seconds, not dt/tau (#411)
    np.testing.assert_allclose(lif.tau_mem, 1 / neuron.tau_mem_inv)
    np.testing.assert_allclose(lif.r, neuron.tau_mem_inv ** -1 / neuron.dt)
    np.testing.assert_array_equal(lif.input_type["input"], [n])
    assert g.metadata["dt"] == neuron.dt and g.metadata["encoding"] == "current"
    np.testing.assert_allclose(g.nodes["fc1"].weight, net.layers[0].weight * net.input_gain,
                               rtol=1e-7)


def test_write_read_keeps_everything(small_net, tmp_path):
    _, net = small_net
    path = nir_graph.write(net, tmp_path / "m.nir")
    back = nir.read(str(path))
    g = nir_graph.to_nir(net)
    assert back.metadata["dt"] == g.metadata["dt"] and back.metadata["steps"] == net.steps
    assert set(back.nodes) == set(g.nodes) and sorted(back.edges) == sorted(g.edges)
    for name in ("fc1", "fc2"):
        np.testing.assert_array_equal(back.nodes[name].weight, g.nodes[name].weight)
    np.testing.assert_array_equal(back.nodes["lif2"].v_threshold, g.nodes["lif2"].v_threshold)
    back_neuron, neuron = nir_frontend.lower(path).layers[0].neuron, net.neuron
    for field in ("tau_syn_inv", "tau_mem_inv", "v_th", "v_leak", "v_reset", "dt"):
        assert getattr(back_neuron, field) == getattr(neuron, field)  # decimal constants exact


def test_euler_step_of_the_nir_equations_is_norse(small_net):
    """The NIR equations integrated with forward Euler at the metadata's dt (what snnTorch's
    and Norse's importers do) give the Norse model's spikes: checks the R, w_in and threshold
    scaling independently of :func:`nir_frontend.lower`."""
    model, net = small_net
    g = nir_graph.to_nir(net)
    dt = g.metadata["dt"]
    x = torch.rand(3, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x).numpy()
    s_seq = np.broadcast_to(x.numpy().astype(np.float64), (net.steps, 3, 12))
    state = {}
    out = []
    for s in s_seq:
        for k in (1, 2):
            lif = g.nodes[f"lif{k}"]
            s = s @ g.nodes[f"fc{k}"].weight.T
            z, state[k] = cuba_euler(lif, s, state.get(k, (0.0, 0.0)), dt)
            s = z.astype(np.float64)
        out.append(s)
    assert ref.sum() > 0
    np.testing.assert_array_equal(np.stack(out), ref)


# ---------------------------------------------------------------------------------------------
# Conv nets: Conv2d / SumPool2d / Flatten nodes

def conv_model(case: dict, steps: int = 10) -> SpikingConvNet:
    """The :class:`SpikingConvNet` of a :data:`conv_cases` example, weights scaled so it spikes
    (``assume`` away geometries whose output would be empty)."""
    stages = case["stages"]
    neuron = NeuronConfig(tau_syn_inv=case["tau_syn"] * 1e-3 / case["dt"],
                          tau_mem_inv=case["tau_mem"] * 1e-3 / case["dt"], v_th=case["v_th"],
                          dt=case["dt"])
    torch.manual_seed(case["seed"])
    try:
        model = SpikingConvNet(case["input_shape"], channels=[s[0] for s in stages],
                               kernels=[s[1] for s in stages], strides=[s[2] for s in stages],
                               paddings=[min(s[3], s[1]) for s in stages],
                               pools=[s[4] for s in stages], classes=case["classes"],
                               steps=steps, encoding=case["encoding"], neuron=neuron,
                               input_gain=case["input_gain"],
                               pool_weight=case["pool_weight"] * case["v_th"])
    except ValueError:
        assume(False)
    with torch.no_grad():  # torch's init is uniform in +-1/sqrt(fan-in): shift it to excite
        for layer in model.layers:
            if isinstance(layer.weight, torch.nn.Parameter):
                fan_in = layer.weight[0].numel()
                layer.weight.add_(0.5 / fan_in ** 0.5).mul_(case["gain"] * case["v_th"])
    return model


conv_cases = st.fixed_dictionaries({
    "input_shape": st.tuples(st.integers(1, 3), st.integers(5, 10), st.integers(5, 10)),
    # (channels, kernel, stride, padding, pool) per stage
    "stages": st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
                                 st.integers(0, 2), st.sampled_from([1, 2, 3])),
                       min_size=1, max_size=2),
    "classes": st.integers(2, 5), "encoding": st.sampled_from(["current", "rate"]),
    "input_gain": st.floats(1.0, 8.0), "pool_weight": st.floats(0.3, 4.0),
    "gain": st.floats(4.0, 16.0), "tau_syn": st.floats(50, 800), "tau_mem": st.floats(50, 400),
    "v_th": st.floats(0.25, 4.0), "dt": st.sampled_from([1e-3, 1e-4]),
    "seed": st.integers(0, 2 ** 16)})


def conv_inputs(model, seed: int, batch: int = 3) -> torch.Tensor:
    """Encoded ``(T, B, C*H*W)`` input: constant current or random spikes."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 17, (batch, model.sizes[0]), generator=gen) / 16
    if model.encoding == "current":
        return model.encode(x)
    return (torch.rand(model.steps, batch, model.sizes[0], generator=gen) < x).float()


@pytest.fixture
def conv_net_compiled(loihi2):
    case = dict(input_shape=(2, 9, 7), stages=[(3, 3, 2, 1, 1), (4, 2, 1, 0, 2)], classes=5,
                encoding="current", input_gain=4.0, pool_weight=2.5, gain=6.0, tau_syn=200,
                tau_mem=100, v_th=1.0, dt=1e-4, seed=0)
    model = conv_model(case, steps=20)
    return model, compile_network(model, loihi2, 16)


def test_conv_graph_nodes_shapes_and_metadata(conv_net_compiled):
    model, net = conv_net_compiled
    g = nir_graph.to_nir(net)
    chain = ["input", "conv1", "lif1", "conv2", "lif2", "pool1", "lif3", "flatten", "fc1",
             "lif4", "output"]
    assert sorted(g.edges) == sorted(zip(chain, chain[1:])) and set(g.nodes) == set(chain)
    assert [type(g.nodes[n]).__name__ for n in chain] == [
        "Input", "Conv2d", "CubaLIF", "Conv2d", "CubaLIF", "SumPool2d", "CubaLIF", "Flatten",
        "Linear", "CubaLIF", "Output"]
    np.testing.assert_array_equal(g.nodes["input"].input_type["input"], [2, 9, 7])
    conv1, conv2 = g.nodes["conv1"], g.nodes["conv2"]
    assert conv1.weight.dtype == np.float64 and conv1.weight.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(conv1.weight, net.layers[0].weight.astype(np.float64) * 4.0)
    np.testing.assert_array_equal(conv2.weight, net.layers[1].weight.astype(np.float64))
    assert tuple(conv1.stride) == (2, 2) and tuple(conv1.padding) == (1, 1)
    assert tuple(conv1.dilation) == (1, 1) and conv1.groups == 1 and not conv1.bias.any()
    assert tuple(conv1.input_shape) == (9, 7)
    pool = g.nodes["pool1"]
    assert list(pool.kernel_size) == list(pool.stride) == [2, 2] and not np.any(pool.padding)
    for k, shape in enumerate(model.shapes[1:], start=1):  # full shapes, (C, H, W) for maps
        lif = g.nodes[f"lif{k}"]
        for field in ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"):
            assert getattr(lif, field).shape == shape, (k, field)
    w_in = 1 / net.neuron.tau_syn_inv / net.neuron.dt
    np.testing.assert_allclose(g.nodes["lif1"].w_in, w_in, rtol=1e-15)
    np.testing.assert_allclose(g.nodes["lif3"].w_in, 2.5 * w_in, rtol=1e-15)  # pool weight
    np.testing.assert_array_equal(g.nodes["flatten"].output_type["output"], [8])
    assert g.nodes["fc1"].weight.shape == (5, 8)
    assert g.metadata["input_shape"] == [2, 9, 7] and g.metadata["pool_weight"] == 2.5


def test_conv_euler_step_of_the_nir_equations_is_norse(conv_net_compiled):
    """The NIR graph integrated by forward Euler at the metadata's dt in float64 numpy/torch
    (conv = cross-correlation, SumPool2d = window sum, ``w_in`` the input weight) gives the
    Norse model's spikes: checks the pooling representation independently of lower."""
    from torch.nn import functional as F

    model, net = conv_net_compiled
    g = nir_graph.to_nir(net)
    dt = g.metadata["dt"]
    x = torch.rand(3, model.sizes[0], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x).numpy()
    order = ["conv1", "conv2", "pool1", "fc1"]
    state, out = {}, []
    for _ in range(net.steps):
        s = x.double().reshape(3, 2, 9, 7)
        for k, name in enumerate(order, start=1):
            node, lif = g.nodes[name], g.nodes[f"lif{k}"]
            if name.startswith("conv"):
                s = F.conv2d(s, torch.as_tensor(node.weight), stride=tuple(node.stride),
                             padding=tuple(node.padding))
            elif name.startswith("pool"):
                k_ = int(node.kernel_size[0])
                s = F.avg_pool2d(s, k_) * k_ * k_  # exact: sums of 0/1 over 4 entries
            else:
                s = s.flatten(1) @ torch.as_tensor(node.weight).T
            s = s.numpy()
            z, state[k] = cuba_euler(lif, s, state.get(k, (0.0, 0.0)), dt)
            s = torch.as_tensor(z.astype(np.float64))
        out.append(s.numpy())
    assert ref.sum() > 10
    np.testing.assert_array_equal(np.stack(out), ref)


def _conv_graph(conv_net_compiled):
    return nir_graph.to_nir(conv_net_compiled[1])


def _set(graph, name, **fields):
    graph.nodes[name] = dataclasses.replace(graph.nodes[name], **fields)
    return graph


def test_to_nir_refuses_a_pool_layer_that_is_not_a_sum_pool(conv_net_compiled):
    _, net = conv_net_compiled
    pool = net.layers[2]
    bent = dataclasses.replace(pool, weight=pool.weight * np.arange(1, 5)[:, None, None, None])
    with pytest.raises(ValueError, match="layer pool1 is named as a pooling layer"):
        nir_graph.to_nir(dataclasses.replace(net, layers=net.layers[:2] + (bent,) +
                                             net.layers[3:]))
