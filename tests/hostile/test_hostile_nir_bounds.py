"""Hostile ``.nir`` files and graphs (issue 27, item 5): work bounded by the file before
anything is allocated. A 4.4 MB file of 400 nested subgraphs kept ``rewire.compile`` busy over
60 s in rewire's own HDF5 size check (quadratic: each object reopened from the root); now the
check is linear and refuses nesting past ``MAX_HDF5_DEPTH``. External HDF5 links (weights
pulled from another file) are refused, and nir's ``AssertionError`` on a malformed node ends
as a ``ValueError`` naming the file."""

from __future__ import annotations

import resource
import time

import h5py
import nir
import numpy as np
import pytest

import rewire
from rewire.errors import LoweringError
from rewire.frontends._nir_graph import MAX_NIR_DEPTH, check_size
from rewire.io.files import MAX_HDF5_DEPTH, check_hdf5


def _chain():
    return nir.NIRGraph.from_list(nir.Linear(weight=np.ones((2, 2))), nir.LIF(
        tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)))


def _nested(depth: int):
    g = _chain()
    for _ in range(depth):
        g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "sub": g,
                                "output": nir.Output(np.array([2]))},
                         edges=[("input", "sub"), ("sub", "output")], type_check=False)
    g.metadata["dt"] = 1e-3
    return g


@pytest.fixture(scope="module")
def nested_file(tmp_path_factory):
    """The layout nir 1.0.8 writes for 400 nested subgraphs (``nir.write`` itself takes
    ~20 s for it), written with h5py."""
    path = tmp_path_factory.mktemp("nest") / "nested.nir"
    with h5py.File(path, "w") as f:
        f["version"] = np.bytes_("0.0.1")
        g = f.create_group("node")
        for _ in range(400):
            g["type"] = np.bytes_("NIRGraph")
            g["edges/src"] = np.array([b"input", b"sub"])
            g["edges/dst"] = np.array([b"sub", b"output"])
            for end in ("input", "output"):
                g[f"nodes/{end}/type"] = np.bytes_(end.capitalize())
                g[f"nodes/{end}/shape"] = np.array([2])
            g = g.create_group("nodes/sub")
        g["type"] = np.bytes_("Linear")
        g["weight"] = np.ones((2, 2))
    return path


def test_400_nested_subgraphs_are_refused_fast(nested_file):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"nests groups deeper than {MAX_HDF5_DEPTH} levels"):
        rewire.lower(nested_file)
    assert time.perf_counter() - start < 5.0  # was > 60 s
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 100 * 1024


def test_the_size_check_is_linear_in_the_objects(tmp_path):
    """A wide file of 20,000 groups (below every bound) is checked in well under a second per
    10,000 objects: no per-object walk from the root."""
    path = tmp_path / "wide.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("node")
        for k in range(20):
            sub = g.create_group(f"g{k}")
            for j in range(1000):
                sub.create_group(f"n{j}")
    start = time.perf_counter()
    check_hdf5(path, "NIR file")
    assert time.perf_counter() - start < 10.0


def test_nested_graph_objects_are_bounded_without_recursion():
    with pytest.raises(LoweringError, match=rf"nests deeper than {MAX_NIR_DEPTH} levels"):
        check_size(_nested(2000))
    with pytest.raises(LoweringError, match="nests deeper"):
        rewire.lower(_nested(MAX_NIR_DEPTH + 1))


@pytest.mark.parametrize("kind", ["external", "soft"])
def test_links_are_refused(tmp_path, loihi2, kind):
    from rewire.export import nir_graph
    net = rewire.compile(_chain_model(), loihi2, steps=4)
    path = nir_graph.write(net, tmp_path / "m.nir")
    other = tmp_path / "secret.h5"
    with h5py.File(other, "w") as f:
        f["w"] = np.full((5, 6), 7.0)
    with h5py.File(path, "a") as f:
        name = next(n for n in f["node/nodes"] if "weight" in f["node/nodes"][n])
        del f[f"node/nodes/{name}/weight"]
        f[f"node/nodes/{name}/weight"] = h5py.ExternalLink(str(other), "/w") \
            if kind == "external" else h5py.SoftLink("/node/nodes/x")
    with pytest.raises(ValueError, match=f"is an? {kind} link"):
        rewire.lower(path)


def _chain_model():
    import torch
    from norse.torch import LICell, LIFCell, SequentialState
    torch.manual_seed(0)
    return SequentialState(torch.nn.Linear(6, 5, bias=False), LIFCell(),
                           torch.nn.Linear(5, 3, bias=False), LICell())


@pytest.mark.parametrize("weight", [np.ones(2), np.ones(())])
def test_nir_assertion_errors_name_the_file(tmp_path, weight):
    """nir 1.0.8 asserts inside its node classes (``Linear`` weight "must be at least 2D"):
    the reader turns it into a ValueError naming the file, not an AssertionError."""
    path = tmp_path / "bad.nir"
    g = _chain()
    g.metadata["dt"] = 1e-3
    nir.write(str(path), g)
    with h5py.File(path, "a") as f:
        for name in f["node/nodes"]:
            if "weight" in f[f"node/nodes/{name}"]:
                del f[f"node/nodes/{name}/weight"]
                f[f"node/nodes/{name}/weight"] = weight
    with pytest.raises(ValueError, match=rf"{path}: malformed NIR file \(AssertionError"):
        rewire.lower(path)
