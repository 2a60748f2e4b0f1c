"""The main job on a model of the user's own (issue 15, item 1): ``rewire.run_job(model=...)``
trains it under the chip's budget, compiles, exports and reports, as for rewire's own models;
what it cannot take is refused before any work."""

from __future__ import annotations

import json

import pytest
import torch
from norse.torch import LIFCell, SequentialState
from torch import nn

import rewire
from rewire.errors import CompileError, LoweringError

from conftest import lava_missing
from training.test_train_any import Recurrent


def _mlp() -> SequentialState:
    torch.manual_seed(0)
    return SequentialState(nn.Linear(64, 128, bias=False), LIFCell(),
                           nn.Linear(128, 10, bias=False), LIFCell())


@pytest.mark.slow
def test_sequential_state_model_through_the_main_job(tmp_path):
    """A Norse SequentialState written as Norse's docs write it, 16 epochs on the digits under
    Loihi 2 with fan-in 24: inside every limit, compiled, exported, Lava spike-exact, and a
    healthy report."""
    report = rewire.run_job(model=_mlp(), out=str(tmp_path), max_fan_in=24, lava_samples=3,
                            train=rewire.TrainConfig(epochs=16, lr=3e-3, progress=False),
                            log=lambda *_: None)
    res = report["result"]
    assert res["within_budget"] and res["max_fan_in"] <= 24
    assert res["float_accuracy"] > 0.85 and abs(res["quantization_drop"]) <= 0.03
    assert report["projection"]["removed_synapses"] <= 0.01 * report["gradr"]["synapses"]
    assert report["warnings"] == []
    assert (tmp_path / "model.net").exists() and (tmp_path / "model.nir").exists()
    if lava_missing() is None:
        lava = report["lava_check"]
        assert lava["spike_exact"] == lava["samples"] == 3 and lava["output_spikes"] > 0


@pytest.mark.slow
def test_recurrent_model_on_spike_trains_through_the_main_job(tmp_path):
    """A LIFRecurrentCell model with its own time loop, on the job's fixed spike trains: its
    input and recurrent synapses count in the budget and in each neuron's fan-in."""
    torch.manual_seed(0)
    report = rewire.run_job(model=Recurrent(), out=str(tmp_path), input="spikes", steps=16,
                            max_fan_in=24, lava_samples=0,
                            train=rewire.TrainConfig(epochs=8, lr=1e-2, progress=False),
                            log=lambda *_: None)
    assert report["network"]["sizes"][1:] == [64, 10] and report["result"]["within_budget"]
    assert report["result"]["max_fan_in"] <= 24
    assert report["network"]["total_synapses"] == 64 * 64 + 64 * 64 + 64 * 10  # W, W_rec, fc
    assert report["result"]["float_accuracy"] > 0.5


@pytest.mark.parametrize("model, profile, error, needle", [
    (nn.Sequential(nn.Linear(64, 10, bias=False), nn.BatchNorm1d(10), LIFCell()), "loihi2",
     LoweringError, "BatchNorm1d"),
    (SequentialState(nn.Linear(20, 10, bias=False), LIFCell()), "loihi2", ValueError,
     "20 values per step"),
    (SequentialState(nn.Linear(64, 5, bias=False), LIFCell()), "loihi2", ValueError,
     "5 neurons but digits has 10 classes"),
    (SequentialState(nn.Linear(64, 10, bias=False), LIFCell()), "speck", CompileError,
     "model of your own"),
    ("not a model", "loihi2", TypeError, "nn.Module"),
])
def test_what_the_job_cannot_take_is_refused_before_any_work(tmp_path, model, profile, error,
                                                             needle):
    out = tmp_path / "out"
    with pytest.raises(error, match=needle):
        rewire.run_job(model=model, profile=profile, out=str(out), log=lambda *_: None)
    assert not out.exists()
