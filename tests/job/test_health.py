"""The report's warnings (issue 15, item 3): each is triggered by a run that builds the bad
case, and ``--strict`` turns them into exit code 3. A healthy run has none
(``tests/job/test_main_job.py``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rewire.frontends import lower
from rewire.job import health
from rewire.job.cli import main
from rewire.job.preparation import prepare
from rewire.job.runner import run
from rewire.job.spec import JobSpec
from rewire.training.data import load_digits_split
from rewire.training.model import SpikingMLP
from rewire.training.train import TrainConfig, encoded_batches

from conftest import lava_missing


def test_chance_threshold():
    m, t = health.chance_threshold([0, 0, 1, 2])
    assert m == 0.5 and t == pytest.approx(0.5 + 3 * np.sqrt(0.25 / 4))
    with pytest.raises(ValueError, match="empty"):
        health.chance_threshold([])


@pytest.mark.slow
def test_dead_network_warns_and_strict_exits_3(tmp_path, capsys):
    """An input gain so small that no neuron fires: a silent output, a chance-level accuracy,
    a float-vs-integer check (and a Lava check) of no spike. The files are still written;
    without ``--strict`` the exit code is 0, with it 3."""
    argv = ["--hidden", "16", "--epochs", "1", "--input-gain", "0.001", "--no-progress",
            "--lava-samples", "2"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    text = " | ".join(report["warnings"])
    assert "dead network: the output layer fc2 emitted no spike" in text
    assert "accuracy at chance level" in text
    assert "float-vs-integer check compared no output spike" in text
    if lava_missing() is None:
        assert "the Lava check compared no output spike" in text
    out = capsys.readouterr().out
    assert "WARNING(S): this result may be bad" in out
    assert out.rstrip().splitlines()[-2].startswith("WARNING: ")  # loud, at the very end
    assert main(argv + ["--out", str(tmp_path / "b"), "--strict"]) == 3
    assert "--strict" in capsys.readouterr().err
    assert (tmp_path / "b" / "report.json").exists()


@pytest.mark.slow
def test_costly_projection_warns(tmp_path):
    """GradR without its controller (gains 0: a fixed prior) ends far over a 3 % budget, so
    the projection cuts most synapses at the end and costs accuracy: the report says how
    much, names the missed limit, and warns."""
    spec = JobSpec(out=str(tmp_path), hidden=(64,), connectivity=0.03, lava_samples=0,
                   train=TrainConfig(epochs=6, lr=5e-3, progress=False,
                                     controller={"kp": 0.0, "ki": 0.0}))
    report = run(prepare(spec), log=lambda *_: None)
    g, p = report["gradr"], report["projection"]
    assert not g["met_budget"] and g["missed"][0].startswith(f"synapses {g['synapses']} > ")
    assert p["removed_synapses"] > 0.5 * g["synapses"]
    assert p["accuracy_cost"] > health.PROJECTION_COST
    assert any(w.startswith("the end-of-training projection removed") and
               f"{100 * p['accuracy_cost']:.2f} points" in w for w in report["warnings"])


def test_nearly_dead_hidden_layer_warns():
    """One of 200 hidden neurons fires (0.5 % < 1 %) while the output still spikes: a nearly
    dead layer, not a dead network."""
    split = load_digits_split()
    torch.manual_seed(0)
    model = SpikingMLP((64, 200, 10), steps=8)
    with torch.no_grad():
        model.linears[0].weight.zero_()
        model.linears[0].weight[0] = 1.0
        model.linears[1].weight.zero_()
        model.linears[1].weight[:, 0] = 2.0
    inputs = (enc for _, enc in encoded_batches(model, split.x_test))
    activity = health.float_activity(lower(model), inputs)
    assert [a["float_active"] for a in activity] == [1, 10]
    warned = health.warnings({"activity": activity})
    assert len(warned) == 1 and "nearly dead layer" in warned[0] and "linears.0" in warned[0]
    assert "(1 in the float model)" in warned[0]
    healthy = [dict(a, float_active=a["neurons"]) for a in activity]
    assert health.warnings({"activity": healthy}) == []


def test_a_healthy_report_has_no_warnings():
    report = {"projection": {"removed_synapses": 3, "accuracy_cost": 0.002},
              "activity": [{"name": "fc1", "neurons": 100, "float_spikes": 900,
                            "float_active": 60, "integer_active": 61, "spiking": True},
                           {"name": "fc2", "neurons": 10, "float_spikes": 300,
                            "float_active": 10, "integer_active": 10, "spiking": True}],
              "lava_check": {"samples": 10, "output_spikes": 120},
              "equivalence": {"samples": 360, "layers": [
                  {"float_spikes": 300, "integer_spikes": 301, "spiking": True}]},
              "test_set": {"majority_share": 0.1, "chance_threshold": 0.15},
              "result": {"float_accuracy": 0.95, "quantized_accuracy": 0.94}}
    assert health.warnings(report) == []
    bad = replace_nested(report, ("result", "quantized_accuracy"), 0.12)
    assert health.warnings(bad) == [w for w in health.warnings(bad) if "chance" in w] != []


def replace_nested(d: dict, path: tuple, value) -> dict:
    out = json.loads(json.dumps(d))
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out
