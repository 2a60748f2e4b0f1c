"""Every chip limit is steered during training, not cut at the end (issue 15, item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewire.job.runner import JobSpec, prepare, run
from rewire.training.train import TrainConfig

SMALL_CHIP = Path(__file__).parent.parent / "data" / "small_chip.toml"


@pytest.mark.slow
def test_small_chip_fan_in_binds_and_is_met_during_training(tmp_path):
    """A user's 4-core chip (128 neurons and 4,096 synapses per core, fan-in 32) with
    ``--max-fan-in 6`` on the digits: the budget aims at the fan-in capacity (6 x 138
    neurons = 828, under the 10 % = 948), the fan-in is held on its schedule during training,
    so the projection removes (almost) nothing, and cores.json shows each core's largest
    per-neuron fan-in beside the chip's limit, apart from its input axons."""
    spec = JobSpec(profile=str(SMALL_CHIP), out=str(tmp_path), hidden=(128,), max_fan_in=6,
                   train=TrainConfig(epochs=20, lr=3e-3, progress=False))
    prep = prepare(spec)
    assert (prep.budget.max_synapses, prep.budget.source) == (828, "--max-fan-in 6 x 138 neurons")
    report = run(prep, log=lambda *_: None)
    assert report["gradr"]["max_fan_in"] <= 6 and report["gradr"]["missed"] == []
    assert report["projection"]["removed_synapses"] <= 0.01 * report["gradr"]["synapses"]
    assert report["result"]["max_fan_in"] <= 6
    assert report["result"]["float_accuracy"] > 0.8 and report["warnings"] == []
    cores = json.loads((tmp_path / "cores.json").read_text())["cores"]
    assert all(c["max_fan_in"] <= 6 and c["limits"]["fan_in"] == 32 for c in cores)
    assert max(c["input_axons"] for c in cores) > 6  # axons are not the per-neuron fan-in
