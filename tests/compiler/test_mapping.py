"""Core mapping: packing, the optimum on cases where it is known, overflow errors that name the
limit, the layer, the excess and the fix, and the cores.json / cores.png outputs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from rewire.compiler.mapping import OUTPUT_CORE, LayerConnectivity, check_network, map_layers
from rewire.errors import CompileError, MappingError
from rewire.export.cores import write_json, write_png
from rewire.training.budget import make_budget
from rewire.training.data import Split
from rewire.training.model import SpikingMLP
from rewire.training.train import TrainConfig
from rewire.export.__main__ import main
from rewire.job.runner import JobSpec, Prepared, export_formats, run
from rewire.hw_profiles.profile import PROFILE_DIR, load_profile


def chip(base="loihi2", **limits):
    """A profile derived from a shipped one with some limits changed."""
    prof = load_profile(base)
    return dataclasses.replace(prof, name=f"{base}-test",
                               limits=dataclasses.replace(prof.limits, **limits))


def dense(name, n_out, n_in):
    return LayerConnectivity.from_mask(name, np.ones((n_out, n_in)))


def with_fan_ins(name, fan_ins, n_in):
    mask = np.zeros((len(fan_ins), n_in), bool)
    for i, f in enumerate(fan_ins):
        mask[i, :f] = True
    return LayerConnectivity.from_mask(name, mask)


# ----------------------------------------------------------------------------- packing

def test_neuron_bound_layer_fills_cores_in_order(loihi2):
    m = map_layers([LayerConnectivity.dense("fc1", 20000, 3)], loihi2)
    assert m.cores == 3 == math.ceil(20000 / 8192)
    assert [u.neurons for u in m.usage] == [8192, 8192, 3616]


def test_synapse_bound_packing_is_optimal():
    """Fan-ins 60,40,50,50,30,70 into cores of 100 synapses: 300 / 100 = 3 cores, which FFD
    reaches (70+30, 60+40, 50+50)."""
    prof = chip(synapses_per_core=100)
    m = map_layers([with_fan_ins("fc1", [60, 40, 50, 50, 30, 70], 80)], prof)
    assert m.cores == 3
    assert sorted(u.synapses for u in m.usage) == [100, 100, 100]


def test_layers_share_a_core_only_where_the_chip_allows():
    layers = [dense("fc1", 5, 4), dense("fc2", 3, 5)]
    assert map_layers(layers, chip(neurons_per_core=8, layers_per_core=0)).cores == 1
    assert map_layers(layers, chip(neurons_per_core=8, layers_per_core=1)).cores == 2
    shared = map_layers(layers, chip(neurons_per_core=8, layers_per_core=0)).usage[0]
    assert shared.layers == {"fc1": 5, "fc2": 3} and shared.input_axons == 4 + 5


def test_fan_in_and_fan_out_per_core(loihi2):
    mask2 = np.zeros((4, 6), bool)
    mask2[:2, 0] = True       # neuron 0 of fc1 feeds two fc2 neurons
    mask2[2:, 1] = True
    m = map_layers([dense("fc1", 6, 3), LayerConnectivity.from_mask("fc2", mask2)], loihi2)
    fc1, fc2 = m.usage
    assert (fc1.input_axons, fc2.input_axons) == (3, 2)   # distinct source neurons per core
    assert (fc1.output_routes, fc2.output_routes) == (2, 0)  # fc1 neurons 0, 1 route to fc2
    assert (fc1.max_fan_in, fc2.max_fan_in) == (3, 1)   # per-neuron fan-in, not axons


def test_every_neuron_placed_and_old_import_works(small_net):
    from rewire.ir.cores import CoreMapping

    _, net = small_net
    assert isinstance(net.mapping, CoreMapping)
    for layer, where in zip(net.layers, net.mapping.placement):
        assert len(where) == layer.shape[0]
    assert sum(u.neurons for u in net.mapping.usage) == net.neurons
    assert sum(u.connected for u in net.mapping.usage) == net.synapses


def test_speck_assigns_whole_layers_to_fitting_cores():
    speck = load_profile("speck")
    # kernel words C_in * 2**ceil(log2 C_out): 64*256 = 16 Ki, 256*16 = 4 Ki, 300*2**9 = 150 Ki
    m = map_layers([dense("fc1", 256, 64), dense("fc2", 10, 256)], speck)
    assert m.cores == 2 and [u.synapses for u in m.usage] == [16384, 4096]
    assert all(u.synapses <= speck.core_synapses(u.core) for u in m.usage)
    with pytest.raises(MappingError, match=r"layer fc1 needs 153600 synapse words on one core"):
        map_layers([dense("fc1", 300, 300)], speck)
    with pytest.raises(MappingError, match=r"10 layers on cores .*over by 1\): use fewer layers$"):
        map_layers([dense(f"fc{k}", 4, 4) for k in range(10)], speck)


def test_speck_matching_finds_a_placement_greedy_would_miss():
    """Cores 3, 4 hold 32 Ki kernel words, cores 5, 6 hold 64 Ki: two 64 Ki layers and two 32 Ki
    layers fit only if the 32 Ki layers do not take cores 5 and 6."""
    speck = load_profile("speck")
    layers = [dense("a", 128, 256), dense("b", 256, 128), dense("c", 256, 256), dense("d", 256, 256)]
    m = map_layers(layers, speck)
    assert sorted(u.core for u in m.usage) == [3, 4, 5, 6]


def test_xylo_readout_uses_the_output_neurons():
    xylo = load_profile("xylo")
    m = map_layers([dense("fc1", 100, 16), LayerConnectivity.from_mask(
        "fc2", np.random.default_rng(0).random((8, 100)) < 0.3)], xylo)
    assert m.cores == 1 and m.usage[-1].core == OUTPUT_CORE and m.usage[-1].neurons == 8


# ----------------------------------------------------------------------------- errors

def test_overflow_names_limit_layer_excess_and_fix(loihi2):
    with pytest.raises(MappingError) as err:
        map_layers([LayerConnectivity.dense("fc1", 70000, 10)], loihi2, cores=4)
    e = err.value
    assert isinstance(e, CompileError)
    assert (e.limit, e.layer, e.needed, e.allowed) == ("limits.neurons_per_core", "fc1", 9, 4)
    assert "layer fc1 needs 9 cores" in str(e) and "over by 5" in str(e)
    assert "--cores 9" in str(e)


def test_synapse_overflow_suggests_a_connectivity():
    prof = chip(synapses_per_core=100, cores=2)
    with pytest.raises(MappingError, match=r"needs 4 cores .*over by 2\): train with --connectivity <= 0\.6667"):
        map_layers([dense("fc1", 10, 30)], prof)


@pytest.mark.parametrize("profile, layers, limit, needle", [
    ("truenorth", [dense("fc1", 4, 300)], "limits.fan_in", "--max-fan-in 256"),
    ("loihi", [dense("fc1", 2, 5000)], "limits.axons_in_per_core", "--max-fan-in 4096"),
    ("xylo", [dense("fc1", 10, 64), dense("fc2", 8, 10)], "limits.max_inputs", "over by 48"),
    ("xylo", [dense("fc1", 10, 16), dense("fc2", 10, 10)], "limits.output_neurons", "over by 2"),
    ("xylo", [dense("fc1", 100, 16), dense("fc2", 100, 100), dense("fc3", 8, 100)],
     "limits.fan_out", "over by 36"),
    ("truenorth", [dense("fc1", 10, 4), dense("fc2", 300, 10)],
     "limits.dest_cores_per_neuron", "reaches 2 cores of fc2"),
])
def test_chip_specific_overflows(profile, layers, limit, needle):
    with pytest.raises(MappingError, match=needle) as err:
        map_layers(layers, load_profile(profile))
    assert err.value.limit == limit and err.value.needed > err.value.allowed


def test_structural_check_ignores_what_pruning_fixes(loihi2):
    """Before training the synapses are unknown: a dense 784-800-10 net fits loihi2's neurons."""
    assert check_network(loihi2, (784, 800, 10)).cores == 2
    with pytest.raises(MappingError, match="max_inputs"):
        check_network(load_profile("xylo"), (64, 256, 10))


@pytest.mark.parametrize("argv, needle", [
    (["--profile", "xylo", "--dataset", "digits"],
     "accepts 16 input channels (limits.max_inputs; over by 48)"),
    (["--profile", "loihi2", "--cores", "1", "--hidden", "9000"], "layer fc1 needs 2 cores"),
    (["--profile", "SIXTEEN_INPUTS"], "'loihi2' accepts 16 input channels"),
])
def test_cli_refuses_before_any_work(tmp_path, capsys, argv, needle):
    """Exit code 2, the message, and no output folder: nothing was trained or written."""
    mine = tmp_path / "mine.toml"
    mine.write_text((PROFILE_DIR / "loihi2.toml").read_text().replace(
        "max_inputs = 0 ", "max_inputs = 16 "))
    argv = [str(mine) if a == "SIXTEEN_INPUTS" else a for a in argv]
    out = tmp_path / "out"
    assert main(argv + ["--out", str(out)]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


# ----------------------------------------------------------------------------- outputs

def test_cores_json_and_png(tmp_path, loihi2):
    m = map_layers([with_fan_ins("fc1", [3, 2, 2], 4), dense("fc2", 2, 3)], loihi2)
    doc = json.loads(write_json(m, tmp_path / "cores.json").read_text())
    assert doc["cores_used"] == 2 and doc["profile"] == "loihi2"
    core = doc["cores"][0]
    assert core["synapses"] == 7 and core["utilisation"]["neurons"] == pytest.approx(3 / 8192)
    assert set(core) >= {"neurons", "synapses", "input_axons", "output_routes", "max_fan_in",
                         "limits", "utilisation"}
    # every figure is shown with the limit it is held against; null = the chip sets none
    assert core["max_fan_in"] == 3 and core["input_axons"] == 3
    assert core["limits"] == {"neurons": 8192, "synapses": 937500, "input_axons": None,
                              "output_routes": None, "fan_in": None}
    png = write_png(m, tmp_path / "cores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_export_formats_say_what_was_skipped_and_why():
    info = export_formats(load_profile("loihi"), {"onnx": "model_step.onnx"})
    assert info["chip"] == ["onnx", "nir"] and info["written"] == ["onnx"]
    assert "not a format of loihi" in info["skipped"]["netx"]
    assert "no writer" in info["skipped"]["nir"]


def test_uncompiled_chip_refuses_a_conv_net_before_training(tmp_path):
    speck = load_profile("speck")
    prep = Prepared(JobSpec(profile="speck", out=str(tmp_path / "o")), speck, None,
                    torch.nn.Conv2d(1, 1, 3), None, tmp_path / "o")
    with pytest.raises(CompileError, match="neuron model 'iaf' has no fixed-point compiler"):
        run(prep, log=lambda _: None)
    assert not (tmp_path / "o").exists()


def test_xylo_run_on_a_network_that_fits_trains_compiles_and_checks(tmp_path):
    """A 16-input, 4-class task fits Xylo: the job trains rewire's Xylo model
    (:class:`~rewire.training.xylo_model.XyloMLP`), compiles it, writes the specification
    and runs the XyloSim check on every test sample (issue 24; before it, the float network
    was only mapped onto the cores)."""
    from rewire.training.xylo_model import XyloMLP

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 16, (256, 16), generator=gen).float() / 15
    y = (x[:, :4].argmax(1)).long()
    split = Split("toy16", x[:192], y[:192], x[192:], y[192:], max_value=15, num_classes=4)
    xylo = load_profile("xylo")
    sizes = (16, 24, 4)
    spec = JobSpec(profile="xylo", out=str(tmp_path / "out"), hidden=(24,), steps=4,
                   train=TrainConfig(epochs=1, batch_size=64, progress=False))
    prep = Prepared(spec, xylo, split, XyloMLP(sizes, steps=4),
                    make_budget(xylo, sizes, connectivity=0.5), tmp_path / "out")
    report = run(prep, log=lambda _: None)
    assert report["result"]["quantized_accuracy"] is not None
    assert report["formats"]["written"] == ["onnx", "nir", "xylo"]
    assert set(report["formats"]["skipped"]) == {"netx"}
    assert [r["limit"] for r in report["fan_out"]] == [None, 64]
    check = report["xylo_check"]
    if "skipped" not in check:
        assert check["samples"] == check["samples_equal"] == 64 and check["passed"]
    assert (tmp_path / "out" / "model_xylo.npz").exists()


def test_recurrent_layer_after_a_dense_one_maps(loihi2):
    """The output routes of a layer read only its axons from a recurrent layer's [W | W_rec]
    mask (a recurrent layer after a dense one crashed with a broadcast error)."""
    from rewire.compiler.quantize import compile_network
    from rewire.ir import nodes
    from rewire.ir.network import Network

    rng = np.random.default_rng(0)
    net = Network((nodes.Dense(rng.normal(0, 1, (12, 8)).astype("f")), nodes.LIF(100.0),
                   nodes.RecurrentDense(rng.normal(0, 1, (10, 12)).astype("f"),
                                        rng.normal(0, 1, (10, 10)).astype("f")),
                   nodes.LIF(100.0)), input_shape=(8,), steps=4)
    compiled = compile_network(net, loihi2, 16)
    assert [len(p) for p in compiled.mapping.placement] == [12, 10]
