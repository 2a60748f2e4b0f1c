"""The Xylo writer (rewire.export.xylo_spec): the ``.npz`` holds exactly keyword arguments of
rockpool 3.1's ``XyloSim.from_specification`` (read from rockpool's source text, since
``rockpool.devices.xylo`` imports samna), rockpool's own ``XyloSim`` takes it, the JSON
records the layout, and the check refuses what a specification cannot express. About 3 s.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from rewire.errors import ExportError
from rewire.export import build, write, xylo_run, xylo_spec
from rewire.ir.chip_neurons import chip_class
from rewire.ir.compiled_layers import CompiledConv
from rewire.ir.neurons import LIF

sys.path.insert(0, str(Path(__file__).parent))
from xylo_compiled_nets import XYLO, layer, network, random_network  # noqa: E402

NO_XYLOSIM = xylo_run.xylosim_missing()


def _rockpool_xylo() -> Path | None:
    spec = importlib.util.find_spec("rockpool")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent / "devices" / "xylo"
    return root if (root / "syns61201" / "xylo_sim.py").exists() else None


ROCKPOOL = _rockpool_xylo()


def _parameters(path: Path, func: str) -> tuple[set[str], bool]:
    """The named parameters of ``func`` in a source file, and whether it takes ``**kwargs``."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == func:
            args = node.args
            names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
            return names - {"cls", "self"}, args.kwarg is not None
    raise LookupError(f"{func} not in {path}")


def _net(seed=5, sizes=(5, 6, 4, 3), shifts=(2, 3, 4)):
    return random_network(np.random.default_rng(seed), list(sizes), list(shifts))


@pytest.mark.skipif(ROCKPOOL is None, reason="rockpool 3.1 (the readers extra) not installed")
def test_the_npz_keys_are_from_specification_keywords(tmp_path):
    path = xylo_spec.write(_net(), tmp_path / "model_xylo.npz")
    with np.load(path) as data:
        keys = set(data.files)
        assert data["weights_in"].dtype == data["weights_rec"].dtype == np.int8
        assert data["weights_out"].dtype == np.int8
    assert keys == set(xylo_spec.SPEC_KEYS)
    sim_params, _ = _parameters(ROCKPOOL / "syns61201" / "xylo_sim.py", "from_specification")
    assert keys <= sim_params, keys - sim_params
    config_params, absorbs = _parameters(ROCKPOOL / "syns61201" / "xylo_samna.py",
                                         "config_from_specification")
    assert keys - {"dt"} <= config_params and absorbs  # dt goes to its **kwargs


def _load_rockpool_xylosim():
    """rockpool's ``XyloSim`` (syns61201) without ``rockpool.devices.xylo``'s ``__init__``,
    which imports samna: the package folders are registered bare, then the two module
    files are loaded from rockpool's own sources."""
    import rockpool  # noqa: F401

    for name, sub in (("rockpool.devices.xylo", ROCKPOOL),
                      ("rockpool.devices.xylo.syns61300", ROCKPOOL / "syns61300"),
                      ("rockpool.devices.xylo.syns61201", ROCKPOOL / "syns61201")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(sub)]
            sys.modules[name] = package
    mod = None
    for name, file in (("syns61300.xylo_sim", "syns61300/xylo_sim.py"),
                       ("syns61201.xylo_sim", "syns61201/xylo_sim.py")):
        full = f"rockpool.devices.xylo.{name}"
        if full not in sys.modules:
            spec = importlib.util.spec_from_file_location(full, ROCKPOOL / file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[full] = module
            spec.loader.exec_module(module)
        mod = sys.modules[full]
    return mod.XyloSim


@pytest.mark.skipif(ROCKPOOL is None or NO_XYLOSIM is not None,
                    reason=f"rockpool 3.1 and xylosim needed: {NO_XYLOSIM or 'no rockpool'}")
def test_rockpools_xylosim_takes_the_file_as_it_is(tmp_path):
    """``XyloSim.from_specification(**np.load(path))``, rockpool's own code, runs the file and
    records what rewire's runner records."""
    path = xylo_spec.write(_net(), tmp_path / "model_xylo.npz")
    sim = _load_rockpool_xylosim().from_specification(**np.load(path))
    x = np.random.default_rng(1).integers(0, 16, (10, 5))
    out, _, rec = sim(x, record=True)
    ours = xylo_run.run_specification(path, x)
    assert out.sum() > 0 and np.array_equal(out, ours["Spikes_out"])
    for key in ("Vmem", "Isyn", "Vmem_out", "Isyn_out"):
        assert np.array_equal(rec[key], ours[key]), key


def test_layout_json_and_loader(tmp_path):
    net = _net(sizes=(5, 6, 4, 3))
    out = build(dataclasses.replace(net, profile=dataclasses.replace(XYLO, formats=("xylo",))),
                tmp_path)
    meta = xylo_spec.load_layout(out["xylo_json"])
    assert meta == json.loads(out["xylo_json"].read_text())
    assert meta["format"] == xylo_spec.FORMAT and meta["version"] == xylo_spec.FORMAT_VERSION
    (tmp_path / "v9.json").write_text(json.dumps({**meta, "version": 9}))
    with pytest.raises(ValueError, match="reads version 1"):
        xylo_spec.load_layout(tmp_path / "v9.json")
    assert [(l["name"], l["role"], l["matrix"], l["neurons"], l["delay"]) for l in meta["layers"]] \
        == [("fc1", "hidden", "weights_in", [0, 6], 0), ("fc2", "hidden", "weights_rec", [6, 10], 1),
            ("fc3", "readout", "weights_out", [0, 3], 2)]
    spec = xylo_spec.load_specification(out["xylo"])
    assert spec["weights_in"].shape == (5, 10) and spec["weights_rec"].shape == (10, 10)
    assert spec["weights_out"].shape == (10, 3) and float(spec["dt"]) == net.dt
    # the blocks hold the layers' integer weights: m << shift
    w_rec = spec["weights_rec"].astype(np.int64) << int(spec["weight_shift_rec"])
    assert np.array_equal(w_rec[0:6, 6:10], net.layers[1].weight_int.T)
    assert not w_rec[6:].any() and not w_rec[:, :6].any()
    w_out = spec["weights_out"].astype(np.int64) << int(spec["weight_shift_out"])
    assert np.array_equal(w_out[6:], net.layers[2].weight_int.T) and not w_out[:6].any()
    np.savez(tmp_path / "bad.npz", **spec, name=np.array(1))
    with pytest.raises(ValueError, match="name"):
        xylo_spec.load_specification(tmp_path / "bad.npz")


def test_written_as_one_published_set(tmp_path):
    net = dataclasses.replace(_net(), profile=dataclasses.replace(XYLO, formats=("xylo",)))
    out = write(net, tmp_path / "build")
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == \
        ["manifest.json", "model_xylo.json", "model_xylo.npz"]
    assert set(out) == {"xylo", "xylo_json"}


def _refused(net, match):
    with pytest.raises(ExportError, match=match) as info:
        xylo_spec.check(net)
    assert info.value.format == "xylo"


def test_the_check_refuses_what_a_specification_cannot_express():
    rng = np.random.default_rng(0)
    hidden = layer("fc1", rng.integers(-128, 128, (4, 3)), 2, 2, 100, 31)
    readout = layer("fc2", rng.integers(-128, 128, (2, 4)), 2, 2, 100, 1)
    _refused(network([hidden]), "at least two neuron layers")
    _refused(network([layer("fc1", hidden.weight_int, 2, 2, 100, 1), readout]),
             "fc1 .hidden. has max_spikes = 1")
    _refused(network([hidden, layer("fc2", readout.weight_int, 2, 2, 100, 31)]),
             "fc2 .readout. has max_spikes = 31")
    lif = LIF(tau_mem_inv=100.0)
    _refused(network([hidden, dataclasses.replace(readout, chip=chip_class(lif)(lif, 0, 400, 10))]),
             "fc2 has LIF neurons")
    odd = hidden.weight_int.copy()
    odd[0, 0] = 129  # needs a shift of 1, but is odd
    _refused(network([dataclasses.replace(hidden, weight_int=odd), readout]),
             r"weights_in: .*largest \|w\| 129.*fc1 in weights_in")
    _refused(network([hidden, readout], input_max_value=16), "input_max_value = 16")
    wide = layer("fc1", rng.integers(-128, 128, (4, 17)), 2, 2, 100, 31)  # the mapper
    _refused(dataclasses.replace(network([hidden, readout]), layers=(wide, readout)),  # refuses
             "17 input channels")
    wide = [layer("fc2", np.ones((66, 4), np.int64), 2, 2, 100, 31),  # 66 > 64 targets
            layer("fc3", np.ones((2, 66)), 2, 2, 100, 1)]
    _refused(dataclasses.replace(network([hidden, readout]), layers=(hidden, *wide)),  # (the
             "layer fc1: neuron 0 has 66 outgoing synapses, above the 64")  # mapper refuses)
    big = layer("fc1", hidden.weight_int, 2, 2, 40000, 31)
    _refused(network([big, readout]), "threshold 40000")
    biased = dataclasses.replace(hidden, bias=np.zeros(4, np.float32),
                                 bias_int=np.ones(4, np.int32))
    _refused(network([biased, readout]), "fc1 has a bias")
    rec_readout = layer("fc2", readout.weight_int, 2, 2, 100, 1, np.zeros((2, 2)))
    _refused(network([hidden, rec_readout]), "fc2 is the readout and recurrent")
    kernel = rng.integers(-128, 128, (1, 1, 2, 2)).astype(np.int32)  # (1, 3, 3) -> (1, 2, 2)
    conv = CompiledConv(name="conv1", weight=kernel.astype(np.float32), weight_int=kernel,
                        scale=1.0, input_scale=1.0, scale_limited_by="weight bits",
                        chip=hidden.chip, in_shape=(1, 3, 3), out_shape=(1, 2, 2))
    _refused(dataclasses.replace(network([hidden, readout]), layers=(conv, readout)),
             "conv1 has a CompiledConv")


def test_a_recurrent_hidden_layer_is_its_diagonal_block():
    rng = np.random.default_rng(1)
    w_rec = rng.integers(-128, 128, (5, 5)) << 2
    net = network([layer("fc1", rng.integers(-128, 128, (4, 3)), 2, 2, 100, 31),
                   layer("fc2", rng.integers(-128, 128, (5, 4)) << 2, 2, 2, 100, 31, w_rec),
                   layer("fc3", rng.integers(-128, 128, (2, 5)), 2, 2, 100, 1)])
    spec = xylo_spec.specification(net)
    full = spec["weights_rec"].astype(np.int64) << int(spec["weight_shift_rec"])
    assert np.array_equal(full[4:9, 4:9], w_rec.T)
    assert np.array_equal(full[0:4, 4:9], net.layers[1].weight_int.T)
    assert int(spec["weight_shift_rec"]) == 2


def test_nothing_is_written_when_the_check_refuses(tmp_path):
    rng = np.random.default_rng(0)
    net = network([layer("fc1", rng.integers(-128, 128, (4, 3)), 2, 2, 100, 1),
                   layer("fc2", rng.integers(-128, 128, (2, 4)), 2, 2, 100, 1)])
    with pytest.raises(ExportError):
        xylo_spec.write(net, tmp_path / "model_xylo.npz")
    assert not list(tmp_path.iterdir())
