"""Large networks and the writers: ONNX refuses weights over protobuf's 2 GiB before anything
is written (naming the file and the size), NIR goes uncompressed above its gzip bound and
reads back the same."""

from __future__ import annotations

import importlib

import h5py
import nir
import numpy as np
import pytest

import rewire
from rewire import export
from rewire.errors import ExportError
from rewire.export import nir_graph, onnx_graph
from rewire.ir import nodes
from rewire.ir.network import Network


def _compiled(n_out=300, n_in=200):
    rng = np.random.default_rng(0)
    net = Network(nodes=(nodes.Dense(rng.standard_normal((n_out, n_in)).astype(np.float32)),
                         nodes.LIF(100.0, v_th=1.0)), input_shape=(n_in,), steps=4,
                  encoding="current", input_gain=2.0)
    return rewire.compile(net, "loihi2", input_max_value=16)


def _tiny_limit(monkeypatch):
    monkeypatch.setattr(onnx_graph, "PROTOBUF_MAX", 60_000 * 4)
    monkeypatch.setattr(onnx_graph, "GRAPH_RESERVE", 1024)


def test_onnx_over_the_protobuf_limit_is_refused_up_front(tmp_path, monkeypatch):
    _tiny_limit(monkeypatch)
    with pytest.raises(ExportError, match=r"onnx_step export: .* 60000 weights need .* 2 GiB") \
            as e:
        export.write(_compiled(), tmp_path / "out", ["onnx"])
    assert e.value.format == "onnx_step"
    assert not any((tmp_path / "out").glob("*.onnx"))  # checks run before any file


@pytest.mark.parametrize("module, check", [("onnx_step", "check_size"),
                                           ("onnx_unrolled", "check_size"),
                                           ("onnx_int", "check")])
def test_each_onnx_file_checks_its_size(module, check, monkeypatch):
    _tiny_limit(monkeypatch)
    mod = importlib.import_module(f"rewire.export.{module}")
    with pytest.raises(ExportError, match=f"{module} export") as e:
        getattr(mod, check)(_compiled())
    assert e.value.format == module
    assert any(fw.check == check for fw in export.WRITERS["onnx"] if fw.key == module)


def test_onnx_below_the_limit_passes():
    export.check(_compiled(), ["onnx"])


def test_nir_uncompressed_above_the_gzip_bound_reads_back_equal(tmp_path, monkeypatch):
    net = _compiled()
    small = nir_graph.write(net, tmp_path / "gz.nir")
    monkeypatch.setattr(nir_graph, "GZIP_MAX_WEIGHTS", 1000)
    large = nir_graph.write(net, tmp_path / "raw.nir")
    with h5py.File(small) as f, h5py.File(large) as g:
        w = "node/nodes/fc1/weight"
        assert f[w].compression == "gzip" and g[w].compression is None
    a, b = nir.read(str(small)), nir.read(str(large))
    assert np.array_equal(a.nodes["fc1"].weight, b.nodes["fc1"].weight)
