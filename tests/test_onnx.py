"""ONNX per-step export: checker-clean and equal to the Norse model in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import torch
from hypothesis import given, settings, strategies as st

from rewire.compile.quantize import compile_network
from rewire.export import onnx_step

from conftest import random_network


def test_file_passes_checker_with_metadata(small_net, tmp_path):
    _, net = small_net
    path = onnx_step.write(net, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["profile"] == "loihi2" and meta["encoding"] == "current"
    assert model.opset_import[0].version >= 17


@settings(max_examples=8)
@given(seed=st.integers(0, 1000), enc=st.sampled_from(["current", "rate"]))
def test_onnxruntime_equals_norse_over_24_steps(loihi2, tmp_path_factory, seed, enc):
    """Property: onnxruntime, looped over 24 steps with explicit state, gives Norse's spikes
    exactly and its states to within 1e-5."""
    steps = 24
    model = random_network((10, 16, 5), steps=steps, encoding=enc, seed=seed)
    net = compile_network(model, loihi2, 16)
    path = onnx_step.write(net, tmp_path_factory.mktemp("onnx") / "m.onnx")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 17, (3, 10)) / 16
    if enc == "rate":
        x = (rng.random((steps, 3, 10)) < x).astype(np.float32)
        inputs = torch.as_tensor(x)
    else:
        inputs = model.encode(torch.as_tensor(x, dtype=torch.float32))
    with torch.no_grad():
        ref = model.run_encoded(inputs).numpy()
    out = onnx_step.run(path, x, steps=steps)
    assert ref.sum() > 0
    np.testing.assert_array_equal(out, ref)


def test_exporter_does_not_change_the_network(small_net, tmp_path):
    _, net = small_net
    before = [l.weight.copy() for l in net.layers]
    onnx_step.write(net, tmp_path / "m.onnx")
    assert all(np.array_equal(a, l.weight) for a, l in zip(before, net.layers))
