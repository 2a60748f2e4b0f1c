"""The compiler's warnings (issue 23, item 4): each rule of rewire.compiler.diagnostics is
raised by a network built to break it, kept on the compiled network and in every exported
file's metadata, and refused with ``strict=True``; a clean network raises none."""

from __future__ import annotations

import dataclasses
import json
import warnings

import h5py
import nir
import numpy as np
import onnx
import pytest
import torch

import rewire
from rewire.compiler import diagnostics
from rewire.errors import (SEMANTIC_NOTE, CompileError, RewireWarning, StrictError,
                           WarningRecord)
from rewire.export import build
from rewire.frontends import lower
from rewire.ir.compiled import CompiledNetwork

from conftest import random_network


def _codes(net):
    return [(w.code, w.layer) for w in net.warnings]


def _compile(model, profile, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = rewire.compile(model, profile, **kw)
    issued = [w.message.record for w in caught if issubclass(w.category, RewireWarning)]
    assert issued == list(net.warnings)  # every record was issued, once, in order
    return net


def _outlier_model(seed=0):
    """64-32-10 (uniform weights), fc1 with one weight 340 standard deviations out: the
    grid rounds about 77 % of fc1's synapses to 0 (issue 23)."""
    model = random_network((64, 32, 10), encoding="rate", seed=seed)
    with torch.no_grad():
        model.linears[0].weight[0, 0] = 340 * model.linears[0].weight.std()
    return model


def test_clean_network_raises_no_warning(loihi2):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RewireWarning)
        net = rewire.compile(random_network((12, 20, 5), encoding="rate"), loihi2, strict=True)
    assert net.warnings == () and "warnings" not in net.to_dict()
    assert diagnostics.diagnose(net) == ()


def test_outlier_weight_rounds_most_synapses_to_zero(loihi2):
    """Issue 23: one outlier weight sets fc1's scale; the 8-bit grid rounds most of the
    layer's synapses to 0. fc2 is untouched and stays quiet."""
    net = _compile(_outlier_model(), loihi2)
    lost = [w for w in net.warnings if w.code == "synapses_lost"]
    assert [w.layer for w in lost] == ["fc1"]
    fig = lost[0].figures
    fc1 = net.layers[0]
    assert fig["float_synapses"] == fc1.float_synapses == 64 * 32
    assert fig["synapses"] == fc1.synapses
    assert fig["lost_share"] == pytest.approx(1 - fc1.synapses / fc1.float_synapses)
    assert 0.7 < fig["lost_share"] < 0.85
    assert fig["lost_weight_share"] > diagnostics.LOST_SHARE
    assert fig["lost_weight_share"] <= fig["lost_share"]  # the smallest weights go first
    assert "weight grid rounds" in lost[0].message and "fc1" in lost[0].text
    with pytest.raises(StrictError, match=r"synapses_lost\] fc1") as err:
        rewire.compile(_outlier_model(), loihi2, strict=True)
    assert isinstance(err.value, CompileError) and err.value.warnings == net.warnings


def test_few_lost_small_weights_do_not_warn(loihi2):
    """Weights near 0 that the grid drops but that carry almost no weight (as the main job's
    fc1: 1.8 % of its synapses, 0.015 % of its weight) are no loss."""
    model = random_network((64, 32, 10), encoding="rate", seed=1)
    with torch.no_grad():
        w = model.linears[0].weight
        w[:, :2] = 1e-4 * torch.sign(w[:, :2])  # 64 of 2048 synapses (3 %) round to 0
    net = _compile(model, loihi2)
    assert net.layers[0].float_synapses - net.layers[0].synapses >= 64
    assert "synapses_lost" not in [w.code for w in net.warnings]


def test_threshold_with_too_few_bits(loihi2):
    """Every weight far above the threshold: the scale is set by the weight bits and vThMant
    is a few weight-grid steps (log2(vThMant / 2) < 6). No synapse is lost."""
    model = random_network((16, 8, 4), encoding="rate", seed=2)
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.copy_(torch.sign(lin.weight) * (40 + 10 * lin.weight.abs()))
    net = _compile(model, loihi2)
    found = {w.layer: w for w in net.warnings if w.code == "threshold_resolution"}
    assert set(found) == {"fc1", "fc2"} and "synapses_lost" not in _codes(net)
    for layer in net.layers:
        fig = found[layer.name].figures
        assert fig["v_th_mant"] == layer.v_th_mant and fig["weight_step"] == 2
        assert fig["bits"] == pytest.approx(np.log2(layer.v_th_mant / 2)) and fig["bits"] < 6
    with pytest.raises(StrictError, match="threshold_resolution"):
        rewire.compile(model, loihi2, strict=True)


def test_low_class_agreement_on_the_calibration_data(loihi2):
    """Given calibration inputs, the float and integer models are run on them: the outlier
    network's integer model picks another class on many of them."""
    model = random_network((64, 32, 10), seed=3)  # current encoding: x in [0, 1]
    with torch.no_grad():
        model.linears[0].weight[0, 0] = 400 * model.linears[0].weight.abs().max()
    x = np.random.default_rng(0).random((200, 64))
    net = _compile(model, loihi2, input_max_value=16, calibration=x)
    agree = [w for w in net.warnings if w.code == "class_agreement"]
    assert len(agree) == 1 and agree[0].figures["samples"] == 200
    measured = rewire.compiler.equivalence.compare(net, x).prediction_agreement
    assert agree[0].figures["agreement"] == pytest.approx(measured)
    assert measured < diagnostics.AGREEMENT
    plain = _compile(model, loihi2, input_max_value=16)  # no calibration: not measured
    assert "class_agreement" not in [w.code for w in plain.warnings]
    with pytest.raises(StrictError, match="class_agreement"):
        rewire.compile(model, loihi2, input_max_value=16, calibration=x, strict=True)


def test_semantic_note_becomes_a_warning_and_plain_notes_stay_notes(loihi2):
    network = lower(random_network((12, 20, 5), encoding="rate"))
    network = dataclasses.replace(network, notes=(
        "Identity dropped (no effect)", SEMANTIC_NOTE + "resets by subtraction"))
    net = _compile(network, loihi2)
    assert [(w.code, w.layer, w.message) for w in net.warnings] == [
        ("semantics", "", "resets by subtraction")]
    assert net.notes == network.notes  # the notes stay as they were
    with pytest.raises(StrictError, match=r"\[semantics\] resets by subtraction"):
        rewire.compile(network, loihi2, strict=True)


def test_snntorch_default_reset_warns(loihi2):
    """A NIR graph from snnTorch with its default reset (subtract, one step late) compiles
    with a semantics warning, not only a note."""
    pytest.importorskip("snntorch")
    import nirtorch
    import snntorch as snn
    from snntorch.export_nir import _extract_snntorch_module

    torch.manual_seed(0)
    kw = dict(init_hidden=True, reset_mechanism="subtract", reset_delay=True)
    net = torch.nn.Sequential(torch.nn.Linear(12, 20, bias=False), snn.Leaky(beta=0.9, **kw),
                              torch.nn.Linear(20, 5, bias=False),
                              snn.Leaky(beta=0.8, output=True, **kw))
    graph = nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(1, 12),
                                       model_name="snntorch")
    compiled = _compile(graph, loihi2, dt=1e-4)
    codes = [w.code for w in compiled.warnings]
    assert "semantics" in codes
    assert any("reset_mechanism='subtract'" in w.message for w in compiled.warnings)


def test_warnings_round_trip_and_reach_every_file(loihi2, tmp_path):
    net = _compile(_outlier_model(), loihi2)
    assert net.warnings
    again = CompiledNetwork.from_dict(json.loads(json.dumps(net.to_dict())))
    assert again.warnings == net.warnings
    files = build(net, tmp_path, ["netx", "onnx", "nir"])
    expected = [w.to_dict() for w in net.warnings]
    with h5py.File(files["netx"], "r") as f:
        assert json.loads(f.attrs["rewire_warnings"]) == expected
    for key in ("onnx_step", "onnx_unrolled", "onnx_int"):
        props = {p.key: p.value for p in onnx.load(files[key]).metadata_props}
        assert json.loads(props["rewire_warnings"]) == expected, key
    assert json.loads(nir.read(files["nir"]).metadata["rewire_warnings"]) == expected
    clean = rewire.compile(random_network((12, 20, 5), encoding="rate"), loihi2)
    files = build(clean, tmp_path / "clean", ["netx", "onnx", "nir"])
    with h5py.File(files["netx"], "r") as f:
        assert "rewire_warnings" not in f.attrs
    assert "rewire_warnings" not in {p.key for p in onnx.load(files["onnx_int"]).metadata_props}
    assert "rewire_warnings" not in nir.read(files["nir"]).metadata


def test_warning_record_from_dict_refuses_malformed():
    good = WarningRecord("synapses_lost", "fc1", "m", {"share": 0.5}).to_dict()
    for bad, field in [({**good, "code": 3}, "code"), ({**good, "figures": {"a": "x"}},
                                                         "figures"), ([], "dict")]:
        with pytest.raises(ValueError, match=field):
            WarningRecord.from_dict(bad)
    with pytest.raises(ValueError, match="warnings must be a list"):
        net = rewire.compile(random_network((4, 3), encoding="rate"), "loihi2")
        CompiledNetwork.from_dict({**net.to_dict(), "warnings": "none"})
