"""rewire.export.write keeps its promise: every requested writer's check runs before any file
is written, a refusal is an ExportError naming the format and the layer, bad arguments are
refused by name, and cores.json / cores.png are writers of the registry."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import rewire
from rewire.io import verify_set
from rewire.errors import CompileError, ExportError
from rewire.export import WRITERS, write
from rewire.ir import nodes
from rewire.ir.compiled_layers import CompiledConv
from rewire.ir.network import Network


def _readout_net(loihi2):
    """A dense net ending in a leaky integrator: ONNX and NIR take it, netx refuses it."""
    rng = np.random.default_rng(0)
    net = Network(nodes=(nodes.Dense(rng.normal(0, 1.5, (6, 5))), nodes.CubaLIF(200.0, 100.0),
                         nodes.Dense(rng.normal(0, 1.5, (3, 6))), nodes.LI(100.0)),
                  input_shape=(5,), steps=6, encoding="current", input_gain=3.0)
    return rewire.compile(net, loihi2, 16)


def _huge_conv_net(loihi2):
    """A compiled conv net whose first conv layer's partial sums reach 2**24 (onnx_int refuses
    it; netx and NIR take it)."""
    rng = np.random.default_rng(1)
    ir = Network(nodes=(nodes.Conv2d(rng.normal(0, 1.0, (2, 1, 3, 3)), (1, 1), (1, 1), 1),
                        nodes.CubaLIF(200.0, 100.0), nodes.Flatten(),
                        nodes.Dense(rng.normal(0, 0.5, (3, 2 * 8 * 8))),
                        nodes.CubaLIF(200.0, 100.0)),
                 input_shape=(1, 8, 8), steps=4, encoding="current", input_gain=3.0)
    net = rewire.compile(ir, loihi2, 16)
    first = net.layers[0]
    assert isinstance(first, CompiledConv)
    w = np.full(first.weight_int.shape, 254, np.int32)
    big = dataclasses.replace(first, weight_int=w)
    return dataclasses.replace(net, layers=(big,) + net.layers[1:], input_max_value=2 ** 16)


def test_a_refusal_after_other_formats_writes_nothing(loihi2, tmp_path):
    """onnx_int refuses the conv layer; netx and NIR come first in the request, and still
    nothing exists afterwards."""
    net = _huge_conv_net(loihi2)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="layer conv1.*2\\*\\*24") as info:
        write(net, out, ["netx", "nir", "onnx"])
    assert info.value.format == "onnx_int" and info.value.layer == "conv1"
    assert isinstance(info.value, CompileError)  # old `except CompileError` callers still work
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left behind


def test_netx_refusal_writes_no_onnx(loihi2, tmp_path):
    net = _readout_net(loihi2)
    with pytest.raises(ExportError, match="netx export: layer fc2 .* LI leaky-integrator") as e:
        write(net, tmp_path / "out", ["onnx", "nir", "netx"])
    assert e.value.format == "netx" and e.value.layer == "fc2"
    assert not (tmp_path / "out").exists()
    written = write(net, tmp_path / "out", ["onnx", "nir"])  # what it can express, it writes
    assert sorted(written) == ["nir", "onnx_int", "onnx_step", "onnx_unrolled"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "manifest.json", "model.nir", "model_int.onnx", "model_step.onnx",
        "model_unrolled.onnx"]  # manifest.json: the set's record, written last
    assert sorted(verify_set(tmp_path / "out", "manifest.json")) == [
        "model.nir", "model_int.onnx", "model_step.onnx", "model_unrolled.onnx"]


@pytest.mark.parametrize("bad", [None, {"layers": []}, "net"])
def test_write_refuses_what_is_not_a_compiled_network(bad, tmp_path):
    with pytest.raises(TypeError, match="net: give a rewire CompiledNetwork"):
        write(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_refuses_an_ir_network_and_an_empty_path(loihi2, small_net, tmp_path):
    model, net = small_net
    ir = rewire.lower(model)
    with pytest.raises(TypeError, match="got Network"):
        write(ir, tmp_path / "out")
    with pytest.raises(ValueError, match="out_dir"):
        write(net, "")
    with pytest.raises(TypeError, match="out_dir"):
        write(net, None)


def test_cores_writers_are_in_the_registry(small_net, tmp_path):
    _, net = small_net
    assert [w.key for w in WRITERS["cores"]] == ["cores_json", "cores_png"]
    files = write(net, tmp_path / "out", ["cores"])
    assert sorted(files) == ["cores_json", "cores_png"]
    doc = json.loads(files["cores_json"].read_text())
    assert doc == net.mapping.to_dict()
    assert files["cores_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
