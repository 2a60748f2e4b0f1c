"""The main job on a user's conv net (issue 23 item 6): the job lays the data's flat features
out as the images the model's forward takes, ``(B, 1, 8, 8)`` for the digits, and carries
that layout through training, the compiler, the float-vs-integer check, the metrics and
Lava."""

from __future__ import annotations

import pytest
import torch
from norse.torch import LIFCell, SequentialState
from torch import nn

import rewire
from rewire.job.preparation import prepare
from rewire.job.spec import JobSpec

from conftest import lava_missing


def _conv(channels: int = 1) -> SequentialState:
    torch.manual_seed(0)
    return SequentialState(nn.Conv2d(channels, 4, 3, bias=False), LIFCell(), nn.Flatten(),
                           nn.Linear(4 * 6 * 6, 10, bias=False), LIFCell())


def test_prepare_lays_the_data_out_as_the_models_images(tmp_path):
    prep = prepare(JobSpec(out=str(tmp_path / "a"), steps=4), model=_conv())
    assert prep.input_shape == (1, 8, 8) and prep.run_options["input_shape"] == (1, 8, 8)
    assert tuple(prep.split.x_train.shape[1:]) == (1, 8, 8)
    assert prep.split.num_features == 64 and prep.sizes[0] == 64
    spikes = prepare(JobSpec(out=str(tmp_path / "b"), steps=4, input="spikes"), model=_conv())
    assert tuple(spikes.spikes.x_test.shape[1:]) == (4, 1, 8, 8)
    with pytest.raises(ValueError, match="takes 3 channel.*not 3 square image"):
        prepare(JobSpec(out=str(tmp_path / "c"), steps=4), model=_conv(3))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["dense", "spikes"])
def test_a_conv_net_of_the_users_own_through_the_main_job(tmp_path, kind):
    report = rewire.run_job(model=_conv(), out=str(tmp_path), steps=8, connectivity=0.5,
                            lava_samples=1 if kind == "dense" else 0,
                            input="spikes" if kind == "spikes" else "dense",
                            train=rewire.TrainConfig(epochs=1, lr=1e-2, progress=False),
                            log=lambda *_: None)
    assert report["network"]["sizes"][0] == 64
    assert report["equivalence"]["samples"] == 360
    assert (tmp_path / "model.net").exists() and (tmp_path / "model_int.onnx").exists()
    if kind == "dense" and lava_missing() is None:
        lava = report["lava_check"]
        assert lava["samples"] == 1 and lava["spike_exact"] == 1
