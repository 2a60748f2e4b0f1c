"""One input layout per model across the writers' runners (issue 23 item 6): the ONNX
runners and Lava's netx runner take ``(B, 1, 8, 8)`` (the conv net's and the image MLP's
forward layout) and the flat ``(B, 64)``, with the same output; the ONNX files record the
layout (``input_shape`` metadata) where it is not the first layer's own."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from norse.torch import LIFCell, SequentialState

import rewire
from rewire.compiler import simulate
from rewire.export import onnx_int, onnx_step, onnx_unrolled
from rewire.export.lava_run import run_netx

from conftest import requires_lava

IMAGE = (1, 8, 8)


def compiled(kind: str):
    """A small conv net, or an MLP that flattens the image itself: both take (B, 1, 8, 8)."""
    torch.manual_seed(0)
    model = SequentialState(torch.nn.Conv2d(1, 4, 3, bias=False), LIFCell(),
                            torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10, bias=False),
                            LIFCell()) if kind == "conv" else \
        SequentialState(torch.nn.Flatten(), torch.nn.Linear(64, 32, bias=False), LIFCell(),
                        torch.nn.Linear(32, 10, bias=False), LIFCell())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    return rewire.compile(model, "loihi2", steps=8, encoding="current", input_gain=4.0,
                          input_max_value=16, input_shape=IMAGE)


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *IMAGE)).astype(np.float32)


@pytest.fixture(scope="module", params=["conv", "mlp"])
def files(request, tmp_path_factory):
    net = compiled(request.param)
    out = tmp_path_factory.mktemp(f"layout_{request.param}")
    return net, rewire.export.write(net, out, formats=["onnx", "netx"])


def test_onnx_files_record_the_layout(files):
    net, paths = files
    for key in ("onnx_step", "onnx_unrolled", "onnx_int"):
        meta = {p.key: p.value for p in onnx.load(str(paths[key])).metadata_props}
        assert json.loads(meta["input_shape"]) == list(IMAGE)


def test_float_onnx_runners_take_both_layouts(files):
    net, paths = files
    x = images()
    for run in (onnx_step.run, onnx_unrolled.run):
        image = run(paths[run.__module__.split(".")[-1]], x)
        flat = run(paths[run.__module__.split(".")[-1]], x.reshape(len(x), 64))
        assert image.shape == (8, len(x), 10) and np.array_equal(image, flat)
        per_step = np.broadcast_to(x, (8, *x.shape))  # (T, B, 1, 8, 8)
        assert np.array_equal(run(paths[run.__module__.split(".")[-1]], per_step), image)


def test_integer_onnx_runner_takes_both_layouts(files):
    net, paths = files
    payload = simulate.encode_input(net, images())
    want = simulate.simulate(net, payload)[-1]
    assert want.sum() > 0
    assert np.array_equal(onnx_int.run(paths["onnx_int"], payload), want)
    assert np.array_equal(onnx_int.run(paths["onnx_int"], payload.reshape(8, -1, *IMAGE)), want)
    with pytest.raises(ValueError, match="has a time axis"):
        onnx_int.run(paths["onnx_int"], payload[0])
    with pytest.raises(ValueError, match=r"neither \(B, \*S\) nor \(T, B, \*S\)"):
        onnx_step.run(paths["onnx_step"], images().reshape(6, 8, 8))


@requires_lava
@pytest.mark.lava
def test_run_netx_takes_both_layouts_and_a_batch(files):
    net, paths = files
    payload = simulate.encode_input(net, images(2))          # (T, 2, 64)
    want = simulate.simulate(net, payload)[-1]
    batch = run_netx(paths["netx"], payload.reshape(8, 2, *IMAGE), aligned=True,
                     input_shape=net.input_shape)
    assert batch.shape == (8, 2, 10) and np.array_equal(batch, want)
    one = run_netx(paths["netx"], payload[:, 0], aligned=True)   # (T, 64): one sample
    assert np.array_equal(one, want[:, 0])
    with pytest.raises(ValueError, match="is none of"):
        run_netx(paths["netx"], payload[:, 0].reshape(8, 8, 8), input_shape=IMAGE)
