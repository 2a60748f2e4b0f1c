"""Properties of the exports: each file equals the compiled model it came from (per-step
ONNX vs Norse, netx vs the integer model's parameters, the Lava-delayed integer model vs the
undelayed one), exporting never changes the network, and every write is atomic."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from rewire.compiler import simulate as sim
from rewire import compile as compile_network
from rewire.export import netx, onnx_step
from rewire.io import atomic_path, write_text
from rewire.hw_profiles.profile import load_profile

from conftest import examples, random_network

LOIHI2 = load_profile("loihi2")

layer_sizes = st.lists(st.integers(1, 12), min_size=2, max_size=4).map(tuple)


def _net(sizes, seed, enc="current", steps=8, density=0.7):
    model = random_network(sizes, steps=steps, encoding=enc, seed=seed, density=density)
    return model, compile_network(model, LOIHI2, input_max_value=16)


def _payload(net, seed, steps, batch=3):
    rng = np.random.default_rng(seed)
    if net.encoding == "rate":
        return (rng.random((steps, batch, net.sizes[0])) < 0.5).astype(np.int64)
    return sim.encode_input(net, rng.integers(0, 17, (batch, net.sizes[0])) / 16)[:steps]


@given(sizes=layer_sizes, seed=st.integers(0, 5000), enc=st.sampled_from(["current", "rate"]),
       steps=st.integers(1, 16))
def test_every_layer_of_the_lava_delayed_model_is_the_undelayed_one_shifted(sizes, seed, enc,
                                                                           steps):
    """For any depth and either encoding, layer ``k`` (0-based) of the Lava-delayed integer
    model emits exactly the undelayed model's spikes ``k + 1`` steps later and nothing before;
    so :func:`align` recovers the undelayed output spike for spike."""
    _, net = _net(sizes, seed, enc, steps)
    payload = sim.pad_for_lava(net, _payload(net, seed, steps))
    plain = sim.simulate(net, payload, record_all=True)
    delayed = sim.simulate(net, payload, lava_delay=True, record_all=True)
    for k, (p, d) in enumerate(zip(plain, delayed)):
        assert not d[:k + 1].any()
        np.testing.assert_array_equal(d[k + 1:], p[:len(p) - k - 1])
    np.testing.assert_array_equal(sim.align(net, payload[:steps]),
                                  sim.simulate(net, payload[:steps])[-1])


@examples(8)
@given(sizes=layer_sizes, seed=st.integers(0, 5000), enc=st.sampled_from(["current", "rate"]),
       steps=st.integers(1, 20))
def test_per_step_onnx_equals_the_norse_model(tmp_path_factory, sizes, seed, enc, steps):
    """For any depth, layer sizes, encoding and number of steps, the per-step ONNX file looped
    in onnxruntime emits exactly the Norse model's output spikes."""
    model, net = _net(sizes, seed, enc, steps)
    path = onnx_step.write(net, tmp_path_factory.mktemp("onnx") / "m.onnx")
    rng = np.random.default_rng(seed)
    x = (rng.integers(0, 17, (3, sizes[0])) / 16).astype(np.float32)
    if enc == "rate":
        x = (rng.random((steps, 3, sizes[0])) < x).astype(np.float32)
        inputs = torch.as_tensor(x)
    else:
        inputs = model.encode(torch.as_tensor(x))
    with torch.no_grad():
        ref = model.run_encoded(inputs).numpy()
    np.testing.assert_array_equal(onnx_step.run(path, x, steps=steps), ref)


@examples(20)
@given(sizes=layer_sizes, seed=st.integers(0, 5000), enc=st.sampled_from(["current", "rate"]))
def test_netx_file_holds_exactly_the_compiled_parameters(tmp_path_factory, sizes, seed, enc):
    """The netx file of any dense network holds, per layer and in order, the compiled integer
    weights and ``iDecay``/``vDecay``/``vThMant``, plus the encoding attributes; writing it
    leaves the network unchanged, and writing it again gives the same bytes."""
    _, net = _net(sizes, seed, enc, density=1.0)
    before = [(l.weight.copy(), l.weight_int.copy()) for l in net.layers]
    folder = tmp_path_factory.mktemp("netx")
    path = netx.write(net, folder / "a.net")
    weights = netx.read_weights(path)
    assert len(weights) == len(net.layers)
    with h5py.File(path, "r") as f:
        assert f.attrs["encoding"] == enc and int(f.attrs["steps"]) == net.steps
        assert int(f.attrs["input_message_bits"]) == net.input_message_bits
        for k, layer in enumerate(net.layers):
            np.testing.assert_array_equal(weights[k], layer.weight_int)
            nrn = f["layer"][str(k)]["neuron"]
            assert (int(nrn["iDecay"][()]), int(nrn["vDecay"][()]), int(nrn["vThMant"][()])) \
                == (layer.i_decay, layer.v_decay, layer.v_th_mant)
    for (w, wi), layer in zip(before, net.layers):
        assert np.array_equal(w, layer.weight) and np.array_equal(wi, layer.weight_int)
    again = netx.write(net, folder / "b.net")
    assert path.read_bytes() == again.read_bytes()


@given(old=st.binary(max_size=200),
       new=st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
       fail_after=st.booleans())
def test_atomic_write_failure_keeps_the_previous_file(tmp_path_factory, old, new, fail_after):
    """An exception inside an atomic write, before or after data reached the temporary file,
    leaves the previous file byte for byte and no temporary file behind; without one the
    target holds exactly the new content."""
    folder = tmp_path_factory.mktemp("atomic")
    target = folder / "out.txt"
    target.write_bytes(old)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            if fail_after:
                tmp.write_text(new[: len(new) // 2], encoding="utf-8")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == old
    assert os.listdir(folder) == ["out.txt"]
    write_text(target, new)
    assert target.read_bytes() == new.encode("utf-8")
    assert os.listdir(folder) == ["out.txt"]


@examples(10)
@given(seed=st.integers(0, 1000), fail_at=st.integers(0, 30),
       fmt=st.sampled_from(["netx", "onnx"]))
def test_export_interrupted_at_any_point_keeps_the_previous_file(tmp_path_factory, seed, fail_at,
                                                                 fmt):
    """Whichever HDF5 dataset (netx) or save call (ONNX) fails, the previously exported file
    is left byte for byte and no temporary file remains."""
    _, net = _net((5, 7, 3), seed)
    folder = tmp_path_factory.mktemp("export")
    writer = netx if fmt == "netx" else onnx_step
    target = writer.write(net, folder / f"model.{fmt}")
    old = target.read_bytes()
    _, other = _net((5, 7, 3), seed + 1)
    calls = {"n": 0}
    if fmt == "netx":
        original = h5py.Group.create_dataset

        def flaky(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] > fail_at:
                raise OSError("disk full (simulated)")
            return original(self, *args, **kwargs)

        patch = (h5py.Group, "create_dataset", flaky)
    else:
        import onnx

        original = onnx.save

        def flaky(model, f, *args, **kwargs):
            with open(f, "wb") as fh:  # half a file, then the failure
                fh.write(model.SerializeToString()[: fail_at * 7])
            raise OSError("disk full (simulated)")

        patch = (onnx, "save", flaky)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(*patch)
        try:
            writer.write(other, target)
        except OSError:
            pass
        else:
            assert fmt == "netx"  # fewer datasets than fail_at: a complete, new file
            assert target.read_bytes() != old
            return
    assert target.read_bytes() == old
    assert os.listdir(folder) == [target.name]
