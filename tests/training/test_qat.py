"""Quantization-aware training (issue 23, item 3): the fake-quantized model is the compiled
integer model's float image, gradients pass straight through, GradR's masks are untouched,
the rule that leaves QAT off changes nothing, and bad options are refused by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rewire
from rewire.compiler import equivalence, simulate
from rewire.ir import dynamics
from rewire.ir.compiled import float_network
from rewire.training.counting import connected_synapses
from rewire.training.data import load_digits_split
from rewire.training.gradr import apply_gradr, hidden_params, prunable_layers, remove_gradr
from rewire.training.model import SpikingMLP
from rewire.training.qat import (QAT, ChipGrid, QATRun, compile_image, grid_off, qat_grids,
                                 remove_qat)
from rewire.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def split():
    return load_digits_split()


def _budget(model, connectivity=0.2):
    return rewire.model_budget(model, rewire.load_profile("loihi2"), connectivity=connectivity)


@pytest.fixture(scope="module")
def trained(split):
    """A 64-32-10 net, 3 epochs of which the last 2 on the Loihi 2 grid."""
    torch.manual_seed(0)
    model = SpikingMLP((64, 32, 10), steps=16)
    apply_gradr(model)
    qat = QAT("loihi2", epochs=2, input_max_value=16, calibration=split.x_train.numpy())
    res = train(model, split, _budget(model), TrainConfig(epochs=3, progress=False), qat=qat)
    net = compile_image(model, "loihi2", 16, calibration=split.x_train.numpy(),
                        **res.run_options)
    return model, res, net


def test_fake_quantized_forward_is_the_compiled_integer_models_float_image(trained, split):
    """The trained torch model (grid on) spikes exactly as the float image of the compiled
    net, and that image and the integer chip model predict the same class on every test
    sample (here every spike agrees too)."""
    model, res, net = trained
    x = split.x_test
    with torch.no_grad():
        out = model(x).numpy()
    image = float_network(net)
    ref = dynamics.run(image, dynamics.encode(image, x))[-1].numpy()
    assert np.array_equal(out, ref)
    rep = equivalence.compare(net, x.numpy(), labels=split.y_test.numpy())
    assert rep.prediction_agreement == 1.0, rep.format()
    assert rep.float_accuracy == pytest.approx(res.accuracy)
    ints = simulate.class_scores(net, simulate.simulate(
        net, simulate.encode_input(net, x.numpy()))[-1]).argmax(-1)
    assert np.array_equal(ints, out.sum(0).argmax(-1))
    assert res.qat["on"] and res.qat["grid_mismatch"] == 0


def test_the_grid_is_the_compilers_and_thresholds_and_decays_are_rounded(trained):
    model, _, net = trained
    for k, layer in enumerate(net.layers):
        grid = [g for m, n, g in qat_grids(model) if m is model.linears[k]][0]
        with grid_off(model):
            plain = model.linears[k].weight
        assert np.array_equal(grid.integers(plain), layer.weight_int)
        p = model.cells[k].p
        assert float(p.v_th) * layer.scale == pytest.approx(layer.v_th_mant, abs=1e-3)
        assert 4096 * 1e-4 * float(p.tau_mem_inv) == pytest.approx(layer.v_decay, abs=1e-3)
        assert 4096 * 1e-4 * float(p.tau_syn_inv) == pytest.approx(layer.i_decay, abs=1e-3)


def test_gradient_passes_straight_through_the_grid():
    """dL/dtheta = s * dL/dw_q (GradR Eq. 7 with the straight-through estimator): the same
    gradient the layer gets without the grid for the same forward weights."""
    torch.manual_seed(0)
    lin = nn.Linear(5, 4, bias=False)
    apply_gradr(lin)
    grid = ChipGrid()
    grid.set(k=37.3, step=2, wmag=254)
    torch.nn.utils.parametrize.register_parametrization(lin, "weight", grid)
    x = torch.rand(3, 5)
    (lin(x) ** 2).sum().backward()
    theta = lin.parametrizations.weight.original
    w_q = lin.weight.detach()
    assert not torch.equal(w_q, lin.parametrizations.weight[0](theta).detach())  # rounded
    expected = (2 * (x @ w_q.T)).T @ x * lin.parametrizations.weight[0].sign
    assert torch.allclose(theta.grad, expected, atol=1e-6)
    assert theta.grad.abs().sum() > 0


def test_gradr_masks_stay_consistent_under_qat(trained):
    """theta is still the parameter, the layers are still GradR's, a pruned synapse stays 0
    on the grid, and the budget counts theta > 0 (a synapse rounding to 0 counts:
    ``grid_zero`` of them)."""
    model, res, net = trained
    assert [n for n, _ in prunable_layers(model)] == ["linears.0", "linears.1"]
    thetas = hidden_params(model)
    assert connected_synapses(model) == sum(int((t > 0).sum()) for t in thetas) == res.synapses
    for theta, lin, layer in zip(thetas, model.linears, net.layers):
        assert torch.all(lin.weight[theta <= 0] == 0)
        assert np.all(layer.weight_int[(theta <= 0).numpy()] == 0)
    grid_zero = sum(int(((t > 0).numpy() & (l.weight_int == 0)).sum())
                    for t, l in zip(thetas, net.layers))
    assert res.qat["grid_zero"] == grid_zero


def test_remove_qat_leaves_the_gradr_model(trained):
    model, _, _ = trained
    import copy

    plain = remove_qat(copy.deepcopy(model))
    assert not list(qat_grids(plain))
    remove_gradr(plain)
    rewire.compile(plain, "loihi2", 16)  # no hook, no parametrization left


def test_rule_leaving_qat_off_changes_nothing(split):
    """``below`` met: the agreement check runs, QAT stays off and training is bit for bit
    the run without the option (the job's files stay byte-identical)."""
    thetas = []
    for qat in (None, QAT("loihi2", 1, 16, below=1e-6, check_inputs=split.x_train[:50].numpy())):
        torch.manual_seed(0)
        model = SpikingMLP((64, 16, 10), steps=8)
        apply_gradr(model)
        res = train(model, split, _budget(model), TrainConfig(epochs=2, progress=False),
                    qat=qat)
        thetas.append([t.detach().clone() for t in hidden_params(model)])
    assert res.qat["on"] is False and res.qat["agreement_before"] >= 1e-6
    assert all(torch.equal(a, b) for a, b in zip(*thetas))


@pytest.mark.parametrize("kwargs, field", [
    (dict(epochs=0), "qat.epochs"), (dict(epochs=True), "qat.epochs"),
    (dict(below=1.5, check_inputs=np.zeros((1, 64))), "qat.below"),
    (dict(below=0.99), "qat.check_inputs"), (dict(profile=3), "qat.profile")])
def test_bad_qat_options_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        QAT(**{"profile": "loihi2", **kwargs})


def test_more_qat_epochs_than_the_run_is_refused():
    with pytest.raises(ValueError, match=r"qat\.epochs = 5 is more than the run's 3"):
        QATRun(QAT("loihi2", 5), nn.Linear(2, 2), 3, {})


def test_job_qat_option_is_checked_by_name():
    from rewire.job.cli import flagged, job_spec, parser
    from rewire.job.spec import JobSpec

    for bad in ("sometimes", 0, 61, True):
        with pytest.raises(ValueError, match="^qat must be"):
            JobSpec(qat=bad)
    assert JobSpec().qat == "auto"
    assert job_spec(parser().parse_args(["--qat", "off"])).qat == "off"
    assert job_spec(parser().parse_args(["--qat", "80", "--epochs", "100"])).qat == 80
    with pytest.raises(ValueError) as err:
        job_spec(parser().parse_args(["--qat", "5", "--epochs", "3"]))
    assert flagged(str(err.value)).startswith("--qat must be")
    with pytest.raises(SystemExit):
        parser().parse_args(["--qat", "sometimes"])


def test_job_table_line_says_what_qat_did():
    from rewire.job.qat_rule import qat_line

    assert qat_line({}) is None
    off = qat_line({"on": False, "below": 0.99, "epochs": 10, "agreement_before": 0.996})
    assert off.startswith("off: float vs int agreement 99.60% on training data >= 99%")
    on = qat_line({"on": True, "below": 0.99, "epochs": 10, "agreement_before": 0.95,
                   "grid_zero": 3})
    assert on.startswith("on for the final 10 epochs (float vs int agreement 95.00%")


def test_job_rule_builds_the_qat_option(tmp_path):
    """``--qat auto`` (the default): the final sixth of the epochs, below 99 %, measured on
    1,000 training inputs; ``--qat N``: always; ``off`` and a chip without a compiler: none."""
    from rewire.job.preparation import prepare
    from rewire.job.qat_rule import qat_option
    from rewire.job.spec import JobSpec

    q = qat_option(prepare(JobSpec(out=str(tmp_path / "a"))))
    assert (q.epochs, q.below, q.check_inputs.shape, q.input_max_value) == \
        (10, 0.99, (1000, 64), 16)
    q = qat_option(prepare(JobSpec(out=str(tmp_path / "b"), qat=3)))
    assert (q.epochs, q.below, q.check_inputs) == (3, None, None)
    assert qat_option(prepare(JobSpec(out=str(tmp_path / "c"), qat="off"))) is None
    assert qat_option(prepare(JobSpec(out=str(tmp_path / "d"), profile="speck"))) is None
    with pytest.raises(ValueError, match="^qat: profile 'speck'"):
        qat_option(prepare(JobSpec(out=str(tmp_path / "e"), profile="speck", qat=3)))


class _Recurrent(nn.Module):
    """LIFRecurrentCell(64, 16) -> Linear -> LIFCell over ``(T, B, 64)`` spike trains."""

    def __init__(self):
        super().__init__()
        from norse.torch import LIFCell, LIFRecurrentCell

        self.rec, self.fc, self.out = LIFRecurrentCell(64, 16), nn.Linear(16, 10, bias=False), \
            LIFCell()

    def forward(self, x):
        s1 = s2 = None
        out = []
        for t in range(x.shape[0]):
            z, s1 = self.rec(x[t], s1)
            z, s2 = self.out(self.fc(z), s2)
            out.append(z)
        return torch.stack(out)


@pytest.mark.parametrize("family", ["conv", "recurrent"])
def test_qat_model_and_integer_model_agree_on_the_conv_and_recurrent_families(family, split):
    """A sum pool's fixed weight and a recurrent layer's ``[W | W_rec]`` go on the grid too:
    the QAT torch model and the integer model predict the same class on every test sample."""
    from torch.utils.data import TensorDataset

    from rewire.training.conv import SpikingConvNet

    torch.manual_seed(0)
    n, m = 300, 120
    if family == "conv":
        model = SpikingConvNet((1, 8, 8), channels=(4,), kernels=(3,), pools=(2,), steps=8)
        x_tr, x_te, comp = split.x_train[:n], split.x_test[:m], dict(input_max_value=16)
    else:
        model = _Recurrent()
        g = torch.Generator().manual_seed(0)
        x_tr, x_te = (torch.bernoulli(x.unsqueeze(1).expand(-1, 8, -1), generator=g)
                      for x in (split.x_train[:n], split.x_test[:m]))
        comp = {}
    import copy

    probe = copy.deepcopy(model)
    apply_gradr(probe)
    res = train(model, TensorDataset(x_tr, split.y_train[:n]), _budget(probe, 0.3),
                TrainConfig(epochs=2, lr=1e-2, progress=False),
                test_data=TensorDataset(x_te, split.y_test[:m]),
                qat=QAT("loihi2", 1, **comp), **({} if family == "conv" else {"time_axis": 1}))
    net = compile_image(model, "loihi2", **comp, **res.run_options)
    with torch.no_grad():
        inputs = x_te if family == "conv" else x_te.transpose(0, 1)
        floats = model(inputs).sum(0).argmax(-1).numpy()
    payload = simulate.encode_input(net, x_te.numpy()) if family == "conv" else \
        inputs.numpy().astype(np.int64)
    ints = simulate.class_scores(net, simulate.simulate(net, payload)[-1]).argmax(-1)
    assert res.qat["on"] and res.qat["grid_mismatch"] == 0
    assert np.array_equal(floats, ints)
