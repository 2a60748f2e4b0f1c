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

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, hidden, bias=False)
        self.lif1 = LIFBitshiftCell(dash_syn=1, dash_mem=2, v_th=1.0, max_spikes=31)
        self.fc2 = nn.Linear(hidden, 8, bias=False)
        self.out = LIFBitshiftCell(dash_syn=1, dash_mem=4, v_th=1.0, max_spikes=1)

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


def _xylosim_missing() -> str | None:
    from rewire.export.xylo_run import xylosim_missing

    return xylosim_missing()


@pytest.mark.slow
def test_user_model_trained_under_xylo_compiles_and_equals_xylosim(tmp_path):
    """The done-when line (about 30 s of CPU; 73 s on 2 cores shared by 6 helpers): the user's 16-64-8 model, 15 epochs
    of ``rewire.train`` under the xylo profile's budget (fan-out <= 64 steered; here every
    hidden neuron feeds the 8 readouts only), ``rewire.compile(model, "xylo")``, the
    specification written, and every test sample run in XyloSim: every recorded state equal
    to rewire's integer model, output spikes counted, the class the integer model's."""
    from rewire.compiler import equivalence, simulate
    from rewire.export import write
    from rewire.export.xylo_run import xylo_check
    from rewire.job.chip_checks import fan_out_rows
    from rewire.training.gradr import apply_gradr

    torch.manual_seed(0)
    model = UserXyloNet()
    split = load_split("digits-xylo")
    profile = load_profile("xylo")
    probe = UserXyloNet()
    apply_gradr(probe)
    budget = rewire.model_budget(probe, profile)
    assert budget.max_fan_out == 64
    result = rewire.train(model, split, budget,
                          rewire.TrainConfig(epochs=15, lr=3e-3, progress=False),
                          steps=8, encoding="current", input_gain=4.0)
    assert result.accuracy > 0.88
    x_train, x_test = split.x_train.numpy(), split.x_test.numpy()
    net = rewire.compile(model, "xylo", input_max_value=split.max_value, calibration=x_train)
    assert net.input_max_value == 15 and len(net.layers) == 2
    assert all(row["within"] for row in fan_out_rows(net))
    rep = equivalence.compare(net, x_test, labels=split.y_test.numpy())
    assert abs(result.accuracy - rep.integer_accuracy) <= 0.03
    files = write(net, tmp_path, ["xylo"])
    payload = simulate.encode_input(net, x_test)
    if _xylosim_missing():
        pytest.skip(f"XyloSim check: {_xylosim_missing()}")
    check = xylo_check(net, files["xylo"], payload, payload.shape[1])
    assert check["samples"] == check["samples_equal"] == len(x_test)
    assert check["states_equal"] == check["states_compared"] > 0
    assert check["output_spikes"] > 0 and check["passed"]


def test_qat_on_xylo_trains_the_compilers_grid():
    """QAT under the xylo profile (about 4 s): the grid is the compiler's own (int8 << one
    shift per matrix, no integer differs: ``grid_mismatch`` 0) and the compiled image's class
    is the float model's on every test sample."""
    import dataclasses

    from rewire.compiler import equivalence
    from rewire.training.budget import make_budget
    from rewire.training.qat import QAT, compile_image
    from rewire.training.xylo_model import XyloMLP

    full = load_split("digits-xylo")
    split = dataclasses.replace(full, x_train=full.x_train[:384], y_train=full.y_train[:384],
                                x_test=full.x_test[:96], y_test=full.y_test[:96])
    torch.manual_seed(0)
    sizes = (16, 32, 8)
    model = XyloMLP(sizes, steps=4)
    profile = load_profile("xylo")
    x = split.x_train.numpy()
    result = rewire.train(model, split, make_budget(profile, sizes),
                          rewire.TrainConfig(epochs=3, lr=3e-3, progress=False),
                          qat=QAT(profile, epochs=1, input_max_value=15, calibration=x))
    assert result.qat["on"] and result.qat["grid_mismatch"] == 0
    assert result.qat["payload"] == 15
    net = compile_image(model, profile, 15, calibration=x)
    rep = equivalence.compare(net, split.x_test.numpy())
    assert rep.prediction_agreement == 1.0
