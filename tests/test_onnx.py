"""ONNX exports: checker-clean files with metadata; float per-step and unrolled models equal
to Norse; the integer model equal to the chip's integer reference simulator."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from rewire.compile import simulate
from rewire.compile.quantize import compile_network
from rewire.export import onnx_graph, onnx_int, onnx_step, onnx_unrolled
from rewire.training.model import NeuronConfig, SpikingMLP

from conftest import random_network

BLOCKS = 8  # independent random networks per generated example (block-diagonal packing)
EQUIV = settings(max_examples=25, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])


def _block(layers: int):
    return st.fixed_dictionaries({
        "widths": st.tuples(*[st.integers(1, 8)] * (layers + 1)),
        "seed": st.integers(0, 2 ** 16), "gain": st.floats(2.0, 16.0),
        "density": st.floats(0.4, 1.0)})


#: One example = ``BLOCKS`` independent random networks of the same depth (1-3 layers) with
#: their own widths, weight scale, pruning and seed, run side by side as one block-diagonal
#: network (no synapse between blocks, so every block evolves exactly as it would alone),
#: plus the encoding, input gain and an input seed. 25 examples = 200 networks.
cases = st.integers(1, 3).flatmap(lambda layers: st.fixed_dictionaries({
    "blocks": st.lists(_block(layers), min_size=BLOCKS, max_size=BLOCKS),
    "encoding": st.sampled_from(["current", "rate"]),
    "input_gain": st.floats(1.0, 8.0), "seed": st.integers(0, 2 ** 16)}))


def block_network(case: dict, steps: int, neuron: NeuronConfig = NeuronConfig()) -> SpikingMLP:
    """The block-diagonal :class:`SpikingMLP` of a :data:`cases` example.

    Block ``b``'s weights are uniform in ``±gain / sqrt(fan-in)``, a fraction ``1 - density``
    of them pruned; a layer left with no synapse at all gets one (the compiler refuses
    all-zero layers).
    """
    blocks = case["blocks"]
    layers = len(blocks[0]["widths"]) - 1
    sizes = tuple(sum(b["widths"][l] for b in blocks) for l in range(layers + 1))
    model = SpikingMLP(sizes, steps=steps, encoding=case["encoding"], neuron=neuron,
                       input_gain=case["input_gain"])
    with torch.no_grad():
        for l, lin in enumerate(model.linears):
            w = torch.zeros(sizes[l + 1], sizes[l])
            r = c = 0
            for b in blocks:
                gen = torch.Generator().manual_seed(b["seed"] * 7 + l)
                n_in, n_out = b["widths"][l], b["widths"][l + 1]
                sub = (torch.rand(n_out, n_in, generator=gen) * 2 - 1) * b["gain"] / n_in ** 0.5
                sub *= torch.rand(n_out, n_in, generator=gen) < b["density"]
                w[r:r + n_out, c:c + n_in] = sub
                r, c = r + n_out, c + n_in
            if not w.abs().sum() > 0:
                w[0, 0] = 1.0
            lin.weight.copy_(w)
    return model


def case_inputs(case: dict, model: SpikingMLP, batch: int = 3):
    """Float input as the exporters take it and the Norse-encoded ``(T, B, n_in)`` sequence."""
    rng = np.random.default_rng(case["seed"])
    x = rng.integers(0, 17, (batch, model.sizes[0])) / 16
    if case["encoding"] == "rate":
        x = (rng.random((model.steps, batch, model.sizes[0])) < x).astype(np.float32)
        return x, torch.as_tensor(x)
    return x, model.encode(torch.as_tensor(x, dtype=torch.float32))


@pytest.mark.parametrize("build", [onnx_step.build, onnx_unrolled.build, onnx_int.build,
                                   onnx_int.build_step])
def test_files_pass_checker_with_metadata(small_net, tmp_path, build):
    _, net = small_net
    path = onnx_graph.save(build(net), tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["profile"] == "loihi2" and meta["encoding"] == "current"
    assert meta["dt"] == repr(net.neuron.dt) and meta["steps"] == str(net.steps)
    assert meta["rewire_version"] and "layer0" in meta["state_layout"]
    assert model.opset_import[0].version >= 17


@EQUIV
@given(case=cases)
def test_float_onnx_step_equals_norse_per_step(loihi2, case):
    """Property (25 examples x 8 = 200 random networks, 3 inputs each, 50 steps): from Norse's
    state at every step, the ONNX step gives Norse's next state within 1e-6 (relative to the
    magnitude of the terms summed, when above 1) and its spikes exactly; looping ONNX alone and
    the unrolled (Scan) model give Norse's spike trains exactly."""
    steps = 50
    model = block_network(case, steps)
    net = compile_network(model, loihi2, 16)
    x, seq = case_inputs(case, model)
    batch = seq.shape[1]
    sess = onnx_graph.session(onnx_step.build(net))
    names = [o.name for o in sess.get_outputs()]
    states, ref = None, []
    with torch.no_grad():
        for t in range(steps):
            feeds = {"x": np.asarray(x[t] if x.ndim == 3 else x, np.float32)}
            for k, layer in enumerate(net.layers):
                zeros = np.zeros((batch, layer.shape[0]), np.float32)
                feeds[f"v{k}"] = states[k].v.numpy() if states else zeros
                feeds[f"i{k}"] = states[k].i.numpy() if states else zeros
            z, new = model.step(seq[t], states)
            res = dict(zip(names, sess.run(None, feeds)))
            s_in = np.abs(seq[t].numpy())
            for k, layer in enumerate(net.layers):
                # magnitude of the terms each state sums: torch (MKL) and onnxruntime (MLAS)
                # add them in different orders, so float32 rounding differs by ~eps * this
                scale = s_in @ np.abs(layer.weight.T) + np.abs(feeds[f"i{k}"]) + np.abs(feeds[f"v{k}"])
                for name, want in ((f"v{k}", new[k].v), (f"i{k}", new[k].i)):
                    err = np.abs(res[name + "_out"] - want.numpy()) / np.maximum(1, scale)
                    assert err.max() <= 1e-6, (name, t, float(err.max()))
                s_in = np.abs(res[f"z{k}"])
            states = new
            np.testing.assert_array_equal(res["z"], z.numpy())
            ref.append(z.numpy())
    ref = np.stack(ref)
    np.testing.assert_array_equal(onnx_step.run(None, x, steps, sess=sess), ref)
    np.testing.assert_array_equal(onnx_unrolled.run(onnx_unrolled.build(net), x, steps), ref)


@EQUIV
@given(case=cases, lava_delay=st.booleans())
def test_integer_onnx_equals_integer_reference(loihi2, case, lava_delay):
    """Property (25 examples x 8 = 200 random networks, 4 inputs, 40 steps): the integer ONNX
    model (Scan) reproduces ``simulate.simulate`` spike for spike, with and without Lava's
    per-layer delay; so does the per-step integer model."""
    steps = 40
    model = block_network(case, steps)
    net = compile_network(model, loihi2, 16)
    rng = np.random.default_rng(case["seed"])
    if case["encoding"] == "current":
        payload = simulate.encode_input(net, rng.integers(0, 17, (4, net.sizes[0])) / 16)
    else:
        payload = (rng.random((steps, 4, net.sizes[0])) < 0.4).astype(np.int64)
    ref = simulate.simulate(net, payload, lava_delay=lava_delay)[-1]
    np.testing.assert_array_equal(onnx_int.run(onnx_int.build(net, lava_delay), payload), ref)
    step = onnx_int.run(onnx_int.build_step(net, lava_delay), payload)
    np.testing.assert_array_equal(step, ref)


def test_integer_onnx_wraps_and_saturates_like_the_chip(loihi2):
    """Strong input drives u past 2**23 (wrap) and v into the clip: still exact."""
    model = random_network((6, 8, 3), steps=30, seed=5, weight_gain=40.0)
    net = compile_network(model, loihi2, 16)
    payload = np.full((30, 2, 6), 16, np.int64) * 64  # far beyond the calibrated range
    ref = simulate.simulate(net, payload, record_all=True)
    out = onnx_int.run(onnx_int.build(net), payload)
    np.testing.assert_array_equal(out, ref[-1])


def test_integer_onnx_with_delay_is_lavas_output(small_net, rng):
    """``lava_delay=True`` on the padded input, shifted by L steps, is the undelayed output
    (what :func:`simulate.align` says a netx file gives in Lava)."""
    _, net = small_net
    payload = simulate.encode_input(net, rng.integers(0, 17, (3, 12)) / 16)
    delayed = onnx_int.run(onnx_int.build(net, lava_delay=True),
                           simulate.pad_for_lava(net, payload))
    np.testing.assert_array_equal(delayed[len(net.layers):], simulate.align(net, payload))
    assert delayed.sum() > 0


def test_unrolled_runs_any_number_of_steps(small_net, rng):
    model, net = small_net
    x = rng.random((2, 12))
    sess = onnx_graph.session(onnx_unrolled.build(net))
    with torch.no_grad():
        long = model.run_encoded(model.encode(torch.as_tensor(x, dtype=torch.float32))
                                 .repeat(5, 1, 1)).numpy()
    np.testing.assert_array_equal(onnx_unrolled.run(None, x, 5 * net.steps, sess=sess), long)


def test_exporters_do_not_change_the_network(small_net, tmp_path):
    _, net = small_net
    before = [(l.weight.copy(), l.weight_int.copy()) for l in net.layers]
    onnx_step.write(net, tmp_path / "m.onnx")
    onnx_unrolled.write(net, tmp_path / "u.onnx")
    onnx_int.write(net, tmp_path / "i.onnx")
    assert all(np.array_equal(w, l.weight) and np.array_equal(wi, l.weight_int)
               for (w, wi), l in zip(before, net.layers))
