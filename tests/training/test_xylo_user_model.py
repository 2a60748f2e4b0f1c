"""Issue 24, "done when": a model written by a user as Norse users write them (a time loop
over ``nn.Linear`` and a ``LIFCell``-like cell, here Xylo's
:class:`~rewire.frontends.bitshift.LIFBitshiftCell`: 16 inputs, a hidden layer, 8 outputs),
trained with ``rewire.train`` under the xylo profile, compiles with
``rewire.compile(model, "xylo")``, is written, and runs in XyloSim state for state as
rewire's integer model runs it. Also: the 16-channel 8-class task and what the xylo profile
refuses before training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rewire
from rewire.errors import MappingError
from rewire.frontends.bitshift import LIFBitshiftCell
from rewire.hw_profiles.profile import load_profile
from rewire.training.data import load_split


class UserXyloNet(nn.Module):
    """16 -> hidden -> 8 with its own time loop over ``(T, B, 16)`` input."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, hidden, bias=False)
        self.lif1 = LIFBitshiftCell(dash_syn=1, dash_mem=2, v_th=1.0, max_spikes=31)
        self.fc2 = nn.Linear(hidden, 8, bias=False)
        self.out = LIFBitshiftCell(dash_syn=1, dash_mem=2, v_th=1.0, max_spikes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = s2 = None
        spikes = []
        for x_t in x:
            z, s1 = self.lif1(self.fc1(x_t), s1)
            z, s2 = self.out(self.fc2(z), s2)
            spikes.append(z)
        return torch.stack(spikes)


def test_digits_xylo_is_16_event_counts_of_8_classes():
    """The task's figures (<1 s): 1,154 / 289 samples, 16 features, counts 0..15 exactly."""
    split = load_split("digits-xylo")
    assert (len(split.x_train), len(split.x_test)) == (1154, 289)
    assert split.num_features == 16 and split.num_classes == 8 and split.max_value == 15
    counts = split.x_test * 15
    assert torch.equal(counts, counts.round()) and counts.max() == 15 and counts.min() == 0
    assert set(split.y_train.tolist()) == set(range(8))


def test_xylo_refuses_what_cannot_fit_before_training(tmp_path):
    """64 inputs or 10 classes on Xylo's 16 channels and 8 outputs are refused before any
    training, by name (<1 s)."""
    from rewire.job.preparation import prepare
    from rewire.job.spec import JobSpec

    with pytest.raises(MappingError, match="16 input channels"):
        prepare(JobSpec(profile="xylo", dataset="digits", out=str(tmp_path / "a")))
    with pytest.raises(MappingError, match="1000 neurons|neurons_per_core"):
        prepare(JobSpec(profile="xylo", hidden=(1200,), out=str(tmp_path / "b")))
