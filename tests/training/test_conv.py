"""Convolutional SNNs: the Norse model, conv quantization, the integer conv and Lava netx."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch.nn import functional as F

from rewire.frontends import nir as nir_frontend
from rewire.compiler import simulate as sim
from rewire.ir.compiled_layers import CompiledConv, CompiledDense
from rewire import compile as compile_network
from rewire.compiler.quantize import conv_patches
from rewire.errors import CompileError
from rewire.export import netx
from rewire.job.runner import JobSpec, prepare
from rewire.training.conv import SpikingConvNet, SumPool2d, image_shape
from rewire.training.gradr import apply_gradr

from conftest import requires_lava


def conv_net(input_shape=(2, 9, 7), channels=(3, 4), kernels=(3, 2), strides=(2, 1),
             paddings=(1, 0), pools=(1, 2), classes=5, steps=10, encoding="current", seed=0,
             gain=6.0, density=1.0) -> SpikingConvNet:
    """A SpikingConvNet with random weights scaled so that it spikes, some pruned."""
    torch.manual_seed(seed)
    model = SpikingConvNet(input_shape, channels=channels, kernels=kernels, strides=strides,
                           paddings=paddings, pools=pools, classes=classes, steps=steps,
                           encoding=encoding)
    gen = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for layer in model.layers:
            if isinstance(layer.weight, torch.nn.Parameter):
                layer.weight.mul_(gain * (torch.rand(layer.weight.shape, generator=gen)
                                          < density))
    return model


def test_model_shapes_and_forward():
    model = conv_net()
    assert model.shapes == ((2, 9, 7), (3, 5, 4), (4, 4, 3), (4, 2, 1), (5,))
    assert model.sizes == (126, 60, 48, 8, 5)
    out = model(torch.rand(3, 126))
    assert out.shape == (10, 3, 5) and set(out.unique().tolist()) <= {0.0, 1.0}
    # pooling is fixed: a buffer, not a parameter, and GradR leaves it alone
    pool = model.layers[2]
    assert isinstance(pool, SumPool2d) and "weight" not in dict(pool.named_parameters())
    assert len(apply_gradr(model)) == 3  # conv1, conv2, fc1
    assert model(torch.rand(2, 126)).shape == (10, 2, 5)


def test_init_rates_wakes_every_layer():
    torch.manual_seed(0)
    model = SpikingConvNet((1, 8, 8), channels=(4,), kernels=(3,), pools=(2,), classes=3,
                           steps=6)
    x = torch.rand(32, 64)
    rates = model.init_rates(x, target=0.2)
    assert rates == pytest.approx(model.layer_rates(x))
    assert all(r > 0.05 for r in rates) and abs(rates[0] - 0.2) < 0.05
    with pytest.raises(ValueError, match="target"):
        model.init_rates(x, target=1.5)


def test_sum_pool_is_weighted_window_sum():
    x = torch.rand(2, 3, 6, 5)
    y = SumPool2d(3, 2, weight=1.5)(x)
    np.testing.assert_allclose(y, 1.5 * 4 * F.avg_pool2d(x, 2), rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=(4,), kernels=(3, 3)), "one entry per conv stage"),
    (dict(input_shape=(1, 4, 4), channels=(2,), kernels=(5,), paddings=(0,)), "output nothing"),
    (dict(channels=(0,), kernels=(3,)), ">= 1"),
    (dict(steps=0), "steps"),
    (dict(encoding="phase"), "encoding"),
])
def test_model_refuses_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpikingConvNet(**kwargs)


def test_image_shape():
    assert image_shape(784) == (1, 28, 28) and image_shape(64) == (1, 8, 8)
    with pytest.raises(ValueError, match="square"):
        image_shape(10)


def test_compiled_conv_layers(loihi2):
    net = compile_network(conv_net(density=0.6), loihi2, 16)
    assert [l.name for l in net.layers] == ["conv1", "conv2", "pool1", "fc1"]
    assert [isinstance(l, CompiledConv) for l in net.layers] == [True, True, True, False]
    assert net.sizes == (126, 60, 48, 8, 5) and net.neurons == 121
    conv1, _, pool, fc = net.layers
    assert conv1.weight_int.shape == (3, 2, 3, 3) and conv1.stride == (2, 2)
    assert conv1.in_shape == (2, 9, 7) and conv1.out_shape == (3, 5, 4)
    assert pool.groups == 4 and pool.weight_int.shape == (4, 1, 2, 2)
    assert len(np.unique(pool.weight_int)) == 1  # a constant kernel
    assert fc.shape == (5, 8)
    # fan-in of a conv neuron: the connected entries of its channel's kernel
    assert conv1.max_fan_in == np.count_nonzero(conv1.weight_int.reshape(3, -1), 1).max() <= 18
    assert net.synapses == sum(np.count_nonzero(l.weight_int) for l in net.layers)


small_nets = st.fixed_dictionaries({
    "input_shape": st.tuples(st.integers(1, 2), st.integers(4, 9), st.integers(4, 9)),
    "stages": st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 2),
                                 st.integers(0, 1), st.integers(1, 2)), min_size=1, max_size=2),
    "classes": st.integers(2, 5),
    "encoding": st.sampled_from(["current", "rate"]),
    "density": st.sampled_from([0.4, 1.0]),
    "seed": st.integers(0, 10_000),
})


def build(params, steps=8) -> SpikingConvNet:
    stages = params["stages"]
    try:
        return conv_net(params["input_shape"], channels=[s[0] for s in stages],
                        kernels=[s[1] for s in stages], strides=[s[2] for s in stages],
                        paddings=[min(s[3], s[1] // 2) for s in stages],
                        pools=[s[4] for s in stages], classes=params["classes"], steps=steps,
                        encoding=params["encoding"], seed=params["seed"],
                        density=params["density"], gain=8.0)
    except ValueError:
        assume(False)


def payload_for(net, params, rng, batch=1) -> np.ndarray:
    n_in = net.sizes[0]
    if params["encoding"] == "current":
        return sim.encode_input(net, rng.integers(0, 17, (batch, n_in)) / 16)
    return (rng.random((net.steps, batch, n_in)) < 0.5).astype(np.int64)


@given(small_nets)
def test_quantized_conv_weights_fit_the_bits(loihi2, params):
    model = build(params)
    try:
        net = compile_network(model, loihi2, 16)
    except CompileError as exc:  # a randomly pruned layer may be all zero: refused, by name
        assert "every synapse is pruned" in str(exc)
        return
    w = loihi2.weights
    for layer in net.layers:
        assert layer.weight_int.min() >= w.min_int and layer.weight_int.max() <= w.max_int
        assert np.all(layer.weight_int % w.step == 0)
        assert 1 <= layer.v_th_mant <= loihi2.neuron.max_threshold_mant
        # the weight scale follows the float weights: the largest maps to (almost) the top
        gain = net.neuron.dt * net.neuron.tau_mem_inv * layer.input_scale * layer.scale
        np.testing.assert_allclose(layer.weight_int, layer.weight * gain, atol=w.step)


def dense_equivalent(layer: CompiledConv) -> CompiledDense:
    """The conv layer as an explicit (out, in) matrix, from the definition of a (grouped,
    strided, zero-padded) 2-D cross-correlation, neurons numbered in (C, H, W) order."""
    (c, h, w), (co, ho, wo) = layer.in_shape, layer.out_shape
    (sh, sw), (ph, pw), g = layer.stride, layer.padding, layer.groups
    kernel = layer.weight_int
    matrix = np.zeros(layer.shape, np.int32)
    for o, yo, xo in np.ndindex(co, ho, wo):
        for i, ky, kx in np.ndindex(kernel.shape[1:]):
            y, x, ci = yo * sh - ph + ky, xo * sw - pw + kx, o // (co // g) * (c // g) + i
            if 0 <= y < h and 0 <= x < w:
                matrix[(o * ho + yo) * wo + xo, (ci * h + y) * w + x] += kernel[o, i, ky, kx]
    return CompiledDense(name=layer.name, weight=matrix.astype(np.float32), weight_int=matrix,
                         scale=layer.scale, input_scale=layer.input_scale,
                         scale_limited_by=layer.scale_limited_by, chip=layer.chip)


@pytest.mark.slow
@given(small_nets)
def test_integer_conv_equals_its_dense_matrix(loihi2, params):
    """The simulator's conv path gives the same spikes as the same synapses written densely."""
    try:
        net = compile_network(build(params), loihi2, 16)
    except CompileError:
        assume(False)
    dense = dataclasses.replace(net, layers=tuple(dense_equivalent(l) if isinstance(l, CompiledConv) else l
                                                  for l in net.layers))
    payload = payload_for(net, params, np.random.default_rng(params["seed"]), batch=3)
    for delay in (False, True):
        got = sim.simulate(net, payload, lava_delay=delay, record_all=True)
        want = sim.simulate(dense, payload, lava_delay=delay, record_all=True)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_calibration_patches_bound_the_activation(loihi2):
    model = conv_net((1, 6, 6), channels=(2,), kernels=(3,), strides=(1,), paddings=(1,),
                     pools=(1,), classes=3)
    x = np.random.default_rng(0).random((40, 36))
    net = compile_network(model, loihi2, 255, calibration=x)
    payload = np.rint(x * 255)
    patches = conv_patches(payload, (1, 6, 6), (3, 3), (1, 1), (1, 1))
    assert patches.shape[1] == 9 and len(patches) == len(np.unique(patches, axis=0))
    a = sim.synaptic_input(net.layers[0], payload.astype(np.int64))
    assert np.abs(a).max() <= 2 ** 15 - 1  # Lava's 16-bit a_in port never overflows on the data
    assert net.layers[0].weight_int.any()


def test_netx_conv_layout(loihi2, tmp_path):
    net = compile_network(conv_net(), loihi2, 16)
    path = netx.write(net, tmp_path / "conv.net")
    with h5py.File(path) as f:
        types = [f[f"layer/{k}/type"][0] for k in range(len(f["layer"]))]
        assert types == [b"input", b"conv", b"conv", b"conv", b"flatten", b"dense"]
        assert list(f["layer/0/shape"][()]) == [2, 9, 7]
        assert list(f["layer/1/shape"][()]) == [3, 5, 4]
        assert list(f["layer/1/stride"][()]) == [2, 2] and int(f["layer/3/groups"][()]) == 4
        assert "neuron" not in f["layer/0"] and "weight" not in f["layer/4"]
    assert all(np.array_equal(w, l.weight_int)
               for w, l in zip(netx.read_weights(path), net.layers))


def test_pipeline_builds_conv_job(tmp_path):
    prep = prepare(JobSpec(out=str(tmp_path), model="conv", channels=(2,), kernels=(3,),
                           strides=(1,), pools=(2,), connectivity=0.5))
    assert isinstance(prep.model, SpikingConvNet) and prep.model.shapes[0] == (1, 8, 8)
    assert prep.budget.total_synapses == 2 * 9 + 2 * 4 * 4 * 10
    with pytest.raises(ValueError, match="model must be one of"):
        prepare(JobSpec(out=str(tmp_path), model="lstm"))


def lava_vs_integer(net, payload, tmp_path) -> list[int]:
    """Run the conv front end alone (a feature-map output, where an (x, y, c) vs (c, h, w)
    mix-up would show) and the whole net in Lava and in the integer model; assert they match
    spike for spike and return the spike counts."""
    from rewire.export.lava_run import run_netx

    counts = []
    for k, part in enumerate((dataclasses.replace(net, layers=net.layers[:1]), net)):
        padded = sim.pad_for_lava(part, payload)
        ref = sim.simulate(part, padded, lava_delay=True)[-1][:, 0]
        path = netx.write(part, tmp_path / f"m{k}.net")
        np.testing.assert_array_equal(run_netx(path, padded[:, 0], sparse=False), ref)
        counts.append(int(ref.sum()))
    return counts


@pytest.mark.lava
@requires_lava
def test_lava_equals_integer_conv_net(loihi2, tmp_path):
    net = compile_network(conv_net(density=0.7, gain=10.0, seed=1, steps=12), loihi2, 16)
    payload = sim.encode_input(net, np.random.default_rng(1).integers(0, 17, (1, 126)) / 16)
    front, full = lava_vs_integer(net, payload, tmp_path)
    assert front > 100 and full > 5, "test network should spike"


@pytest.mark.lava
@requires_lava
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(params=small_nets)
def test_lava_equals_integer_conv_model(loihi2, tmp_path, params):
    """Hypothesis-drawn shapes, strides, paddings, pools, encodings: Lava == integer model."""
    try:
        net = compile_network(build(params, steps=6), loihi2, 16)
    except CompileError:
        assume(False)
    lava_vs_integer(net, payload_for(net, params, np.random.default_rng(params["seed"])),
                    tmp_path)


@pytest.mark.slow
def test_conv_job_writes_onnx_and_nir_that_reproduce_it(tmp_path):
    """A conv job (digits, one stage with pooling) writes netx, the three ONNX files and NIR;
    on the whole test set the integer ONNX has the report's quantized accuracy, the unrolled
    float ONNX and the Norse model imported from the NIR file give the same output spikes."""
    from rewire.export import nir_graph, onnx_int, onnx_unrolled
    from rewire.job.runner import run
    from rewire.training.train import TrainConfig

    spec = JobSpec(out=str(tmp_path), model="conv", channels=(4,), kernels=(3,), strides=(1,),
                   pools=(2,), steps=8, connectivity=0.9,
                   train=TrainConfig(epochs=3, lr=5e-3, progress=False))
    prep = prepare(spec)
    report = run(prep, log=lambda *_: None)
    assert set(report["formats"]["written"]) == {"netx", "onnx", "nir"}
    x = prep.split.x_test.numpy()
    y = prep.split.y_test.numpy()
    payload = np.round(x * prep.split.max_value).astype(np.int64)[None].repeat(8, 0)
    counts = onnx_int.run(tmp_path / "model_int.onnx", payload).sum(0)
    assert np.mean(counts.argmax(-1) == y) == report["result"]["quantized_accuracy"]
    imported = nir_frontend.load(tmp_path / "model.nir")
    assert imported.network.source == "nir:rewire"
    with torch.no_grad():
        images = torch.as_tensor(x).reshape(len(x), *imported.network.input_shape)
        norse = imported(images).numpy()
    onnx_z = onnx_unrolled.run(tmp_path / "model_unrolled.onnx", x.astype(np.float32))
    assert norse.sum() > 0
    np.testing.assert_array_equal(onnx_z, norse)


@pytest.mark.slow
def test_conv_defaults_learn_on_digits(tmp_path):
    """``--model conv`` with its default options (issue 15 item 4: with the mlp's lr 1e-3 and
    the controller's alpha_max 2 it trained a dead net, 10 %). A 12-epoch run of the defaults
    (82 % measured; the default 60 give 95.56 %, docs/conv.md) is well above chance, inside the 10 % budget, and
    every layer keeps synapses and spikes."""
    from rewire.job.runner import run

    default = JobSpec(model="conv").train
    spec = JobSpec(out=str(tmp_path), model="conv",
                   train=dataclasses.replace(default, epochs=12, progress=False))
    assert spec.connectivity == 0.1 and spec.channels == (16, 32)
    report = run(prepare(spec), log=lambda *_: None)
    res = report["result"]
    assert res["float_accuracy"] >= 0.6 and res["quantized_accuracy"] >= 0.6
    # the prunable synapses (the fixed pool1 kernel is outside the connectivity budget)
    kept = report["gradr"]["synapses"] - report["projection"]["removed_synapses"]
    assert kept <= report["budget"]["max_synapses"]
    assert all(layer["synapses"] > 0 for layer in report["layers"])
    assert all(layer["float_spikes"] > 0 for layer in report["equivalence"]["layers"])
    assert report["config"]["lr"] == 1e-2 and report["config"]["controller"]["alpha_max"] < 1
    # no dead or nearly dead layer, no silent check (the job's own warnings); a compiler
    # warning on a short run's quantization loss (class agreement) is the rule doing its job
    own = [w for w in report["warnings"]
           if not any(c["message"] in w for c in report["compiler_warnings"])]
    assert own == []
    assert {c["code"] for c in report["compiler_warnings"]} <= {"class_agreement"}
