"""Budgets: derived from the profile, infeasible ones refused, projection always meets them."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings, strategies as st

from rewire.training.budget import (BudgetController, BudgetError, SynapseBudget,
                                    cap_neurons, connected_synapses, make_budget, max_fan_in,
                                    max_fan_out,
                                    model_budget, project_to_budget, prunable_synapses,
                                    within_budget)
from rewire.training.gradr import GradR, apply_gradr, hidden_params
from rewire.training.model import SpikingMLP


def test_smallest_limit_binds(loihi2):
    b = make_budget(loihi2, (64, 256, 10), connectivity=0.1, max_synapses=5000)
    assert b.max_synapses == 1895 and b.source == "--connectivity 0.1"
    b = make_budget(loihi2, (64, 256, 10), connectivity=None, max_synapses=500)
    assert b.max_synapses == 500
    b = make_budget(loihi2, (64, 256, 10), connectivity=None)
    assert b.max_synapses == 18944  # whole chip: not binding for a tiny net


@pytest.mark.parametrize("kwargs, match", [
    ({"cores": 0}, "^cores must be"), ({"cores": 999}, "^cores must be"),
    ({"connectivity": 0.0}, "^connectivity must be"),
    ({"connectivity": 1.5}, "^connectivity must be"),
    ({"max_synapses": 0}, "^max_synapses must be"),
    ({"max_synapses": 5}, "output neurons"), ({"max_fan_in": 0}, "^max_fan_in must be"),
])
def test_infeasible_budgets(loihi2, kwargs, match):
    """Each bad argument is refused naming the field (not a command-line flag)."""
    with pytest.raises(BudgetError, match=match) as err:
        make_budget(loihi2, (64, 256, 10), **kwargs)
    assert match == "output neurons" or "--" not in str(err.value)


def test_neurons_must_fit_cores(loihi2):
    with pytest.raises(BudgetError, match="neurons_per_core"):
        make_budget(loihi2, (64, 9000, 10), cores=1)


@given(seed=st.integers(0, 10_000), n_in=st.integers(1, 30), n_hid=st.integers(1, 30),
       n_out=st.integers(1, 10), frac=st.floats(0.0, 1.0), fan=st.integers(0, 8))
def test_projection_always_meets_the_budget(seed, n_in, n_hid, n_out, frac, fan):
    """Property: for any model and any feasible budget, projection ends inside it, keeps the
    largest theta, and never disconnects more than needed."""
    torch.manual_seed(seed)
    model = SpikingMLP((n_in, n_hid, n_out), steps=2)
    apply_gradr(model)
    total = n_in * n_hid + n_hid * n_out
    budget = SynapseBudget(max_synapses=max(1, int(frac * total)), max_fan_in=fan,
                           total_synapses=total, source="test")
    before = connected_synapses(model)
    removed = project_to_budget(model, budget)
    assert within_budget(model, budget)
    assert connected_synapses(model) == before - removed
    if fan == 0:
        assert connected_synapses(model) == min(before, budget.max_synapses)
    else:
        assert max_fan_in(model) <= fan


def _controlled_steps(sizes, budget, steps, ramp, each=lambda t, model, ctl: None):
    """A seeded SpikingMLP of ``sizes`` trained ``steps`` GradR steps on 64 random samples
    under ``budget`` with the controller; ``each(t, model, ctl)`` after each step. Returns
    ``(model, controller, alphas)``."""
    torch.manual_seed(0)
    model = SpikingMLP(sizes, steps=4)
    opt = GradR(apply_gradr(model), lr=0.01, alpha=0.1)
    ctl = BudgetController(opt, model, budget, total_steps=steps, ramp=ramp)
    x, y = torch.rand(64, sizes[0]), torch.randint(0, sizes[-1], (64,))
    alphas = []
    for t in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).sum(0), y).backward()
        opt.step()
        alphas.append(ctl.step())
        each(t, model, ctl)
    return model, ctl, alphas


def test_controller_reaches_budget_without_projection():
    """A short GradR run on random data: the controller steers alpha up until the budget."""
    budget = SynapseBudget(max_synapses=120, max_fan_in=0, total_synapses=560, source="test")
    model, _, alphas = _controlled_steps((10, 40, 4), budget, 300, 0.6)
    assert connected_synapses(model) <= budget.max_synapses
    assert max(alphas) > 0.1  # it had to push harder than the initial alpha
    assert alphas[-1] < max(alphas)  # and relaxed once the budget was reached


def _controller_at(connected: int, off_below: bool) -> tuple[BudgetController, torch.Tensor]:
    """A controller over one 100-synapse layer with ``connected`` synapses connected; the
    schedule starts at 50 % and falls to 20 % (budget 20, margin 1)."""
    lin = torch.nn.Linear(100, 1, bias=False)
    theta = apply_gradr(lin)[0]
    with torch.no_grad():
        theta.fill_(-1.0)
        theta[0, :connected] = 1.0
    opt = GradR([theta], lr=1e-3, alpha=0.1)
    ctl = BudgetController(opt, lin, SynapseBudget(20, 0, 100, "test"), total_steps=10,
                           ramp=1.0, margin=1.0, off_below=off_below)
    ctl.start = 0.5
    return ctl, theta


@pytest.mark.parametrize("connected", [25, 45])
def test_off_below_switches_the_prior_off_only_under_the_schedule(connected):
    """Under the schedule (25 % < 42 % after one step) ``off_below`` gives ``alpha_min``; over
    it (45 %) the PI value, exactly as without ``off_below``; the integral part is the same
    either way."""
    (plain, _), (off, _) = _controller_at(connected, False), _controller_at(connected, True)
    a_plain, a_off = plain.step(), off.step()
    assert off.alpha_integral == plain.alpha_integral
    if connected / 100 < off.schedule(1):
        assert a_off == off.alpha_min < a_plain
    else:
        assert a_off == a_plain > off.alpha_min


def test_freeze_holds_the_pattern_after_the_ramp():
    """With ``freeze`` the prior is off after the ramp and no synapse that was pruned when the
    ramp ended ever reconnects, however the gradients push, so the connectivity never exceeds
    the pattern's."""
    torch.manual_seed(0)
    model = SpikingMLP((10, 40, 4), steps=4)
    opt = GradR(apply_gradr(model), lr=0.01, alpha=0.1)
    budget = SynapseBudget(max_synapses=120, max_fan_in=0, total_synapses=560, source="test")
    ctl = BudgetController(opt, model, budget, total_steps=200, ramp=0.5, freeze=True)
    x, y = torch.rand(64, 10), torch.randint(0, 4, (64,))
    counts, pattern = [], None
    for t in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).sum(0), y).backward()
        opt.step()
        alpha = ctl.step()
        if t + 1 > 100:  # after the ramp
            assert alpha == 0.0 and all(g["alpha"] == 0.0 for g in ctl.groups)
            pattern = pattern or [m.clone() for m in ctl.frozen]
            for theta, allowed in zip(hidden_params(model), pattern):
                assert not (theta[~allowed] > 0).any()
            counts.append(connected_synapses(model))
    assert max(counts) <= sum(int(m.sum()) for m in pattern)


def _conv_model(seed, c_in, c_out, k, n_out):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, k), torch.nn.BatchNorm2d(c_out),
                              torch.nn.Flatten(), torch.nn.Linear(c_out * 4, n_out))
    apply_gradr(net)
    return net


def test_conv_counting_convention():
    """A conv synapse is a kernel entry; an output channel's fan-in is in_ch*kh*kw at most."""
    net = _conv_model(0, 3, 5, 3, 4)
    assert prunable_synapses(net) == 5 * 3 * 3 * 3 + 4 * 5 * 4
    assert max_fan_in(net) == 27 and connected_synapses(net) == 135 + 80
    theta = net[0].parametrizations.weight.original
    with torch.no_grad():
        theta[:, :, 0, :] = -1.0  # first kernel row pruned in every output channel
    assert max_fan_in(net) == 20  # linear rows: 20 inputs; conv rows now 18
    b = model_budget(net, connectivity=0.5, max_fan_in=6)
    # fan-in 6 allows 6 per output channel (5) and per readout neuron (4): 54 < 108 = 50 %
    assert (b.max_synapses, b.max_fan_in, b.total_synapses) == (54, 6, 215)
    assert b.source == "--max-fan-in 6 x 9 neurons"
    assert [c for c, _ in b.limits] == [54, 108, 215]
    b = model_budget(net, connectivity=0.2, max_fan_in=6)
    assert (b.max_synapses, b.source) == (43, "--connectivity 0.2")


def test_model_budget_uses_profile_and_needs_a_limit(loihi2):
    net = _conv_model(0, 1, 2, 3, 3)
    b = model_budget(net, loihi2, cores=1)
    assert b.max_synapses == min(prunable_synapses(net), loihi2.limits.synapses_per_core)
    with pytest.raises(BudgetError, match="connectivity"):
        model_budget(net)
    with pytest.raises(BudgetError, match="output neurons"):
        model_budget(net, max_synapses=2)


@given(seed=st.integers(0, 10_000), c_in=st.integers(1, 4), c_out=st.integers(1, 6),
       k=st.integers(1, 4), n_out=st.integers(1, 5), frac=st.floats(0.0, 1.0),
       fan=st.integers(0, 10))
def test_projection_meets_conv_budgets(seed, c_in, c_out, k, n_out, frac, fan):
    """Property: on conv + linear models the projection ends inside the synapse budget and the
    per-output-channel fan-in, keeping only the largest theta of each kernel."""
    net = _conv_model(seed, c_in, c_out, k, n_out)
    total = prunable_synapses(net)
    budget = SynapseBudget(max_synapses=max(1, int(frac * total)), max_fan_in=fan,
                           total_synapses=total, source="test")
    theta = net[0].parametrizations.weight.original.detach().clone()
    before = connected_synapses(net)
    removed = project_to_budget(net, budget)
    assert within_budget(net, budget) and connected_synapses(net) == before - removed
    after = net[0].parametrizations.weight.original.detach()
    kept, dropped = theta[after > 0], theta[(after <= 0) & (theta > 0)]
    if kept.numel() and dropped.numel() and fan == 0:
        assert kept.min() >= dropped.max()  # global top-k by theta
    rows = (after > 0).flatten(1).sum(1)
    assert int(rows.max()) <= (fan or c_in * k * k)


def _tiny_split(seed, n_in, n_out, n=48):
    from rewire.training.data import Split
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, n_in, generator=gen)
    y = torch.randint(0, n_out, (2 * n,), generator=gen)
    return Split("synthetic", x[:n], y[:n], x[n:], y[n:], max_value=1, num_classes=n_out)


@settings(max_examples=30)  # each example trains: keep the file fast
@given(seed=st.integers(0, 10_000), n_in=st.integers(2, 24), n_hid=st.integers(2, 24),
       n_out=st.integers(2, 6), frac=st.floats(0.02, 1.0), fan=st.integers(0, 12),
       epochs=st.integers(1, 4), method=st.sampled_from(["gradr", "deep-r", "magnitude"]))
def test_training_always_ends_inside_the_budget(seed, n_in, n_hid, n_out, frac, fan, epochs,
                                                method):
    """Property (issue 5): for any small model and feasible budget (total synapses and
    fan-in), training ends inside it — GradR steered by the controller, with the projection as
    the safety net. ``--hypothesis-show-statistics`` shows how often GradR alone met it."""
    from hypothesis import event

    from rewire.training.train import TrainConfig, train
    torch.manual_seed(seed)
    model = SpikingMLP((n_in, n_hid, n_out), steps=3)
    total = n_in * n_hid + n_hid * n_out
    budget = SynapseBudget(max_synapses=max(n_out, round(frac * total)), max_fan_in=fan,
                           total_synapses=total, source="test")
    res = train(model, _tiny_split(seed, n_in, n_out), budget,
                TrainConfig(epochs=epochs, batch_size=16, lr=0.01, seed=seed, progress=False,
                            method=method))
    assert within_budget(model, budget)
    assert res.synapses == connected_synapses(model) <= budget.max_synapses
    if fan:
        assert res.max_fan_in <= fan
    event(f"{method}: met the budget without the projection" if res.projected_away == 0
          else f"{method}: projection needed")


def test_cap_neurons_keeps_the_strongest_per_neuron_over_all_its_matrices():
    """A recurrent neuron's fan-in is its row of ``[W | W_rec]``: the cap keeps its ``k``
    largest theta over both matrices, and leaves neurons under ``k`` alone."""
    w = torch.tensor([[3.0, -1.0, 0.5], [0.25, 0.5, -0.75]])
    w_rec = torch.tensor([[2.0, 0.375], [-1.0, -2.0]])
    removed = cap_neurons([w, w_rec], 2, dim=0)
    assert removed == 2  # neuron 0 had 4 (3, 0.5, 2, 0.375): keeps 3 and 2
    assert w.tolist() == [[3.0, -1.0, 0.0], [0.25, 0.5, -0.75]]
    assert w_rec.tolist() == [[2.0, 0.0], [-1.0, -2.0]]
    cols = torch.tensor([[1.0, 1.0], [2.0, -1.0], [3.0, 1.0]])
    assert cap_neurons([cols], 1, dim=1) == 3 and (cols > 0).sum(0).tolist() == [1, 1]
    with pytest.raises(ValueError, match="dim"):
        cap_neurons([torch.ones(2, 2, 2)], 1, dim=1)


def test_controller_steers_fan_in_on_the_schedule():
    """With a fan-in limit the controller caps every neuron's fan-in on the cubic schedule
    during training (never above it at any step), reaches the limit by the end of the ramp,
    and the projection then removes no synapse for fan-in."""
    budget = SynapseBudget(max_synapses=500, max_fan_in=5, total_synapses=680, source="test")
    over = []
    model, ctl, _ = _controlled_steps((30, 20, 4), budget, 60, 0.5, lambda t, m, c: over.append(
        max_fan_in(m) > c.fan_schedule(t, 5, c.fan_start[0])))
    assert not any(over)
    assert ctl.fan_start[0] == 30 and ctl.fan_schedule(30, 5, 30) == 5
    assert max_fan_in(model) <= 5 and ctl.capped > 0
    before = connected_synapses(model)
    assert project_to_budget(model, budget) == max(0, before - budget.max_synapses)


def test_budget_names_fan_out_and_steers_it(loihi2):
    """Xylo's fan-out limit (64 outgoing synapses per hidden neuron) enters the budget and
    is held during training; the first matrix (input channels) has no fan-out limit."""
    from rewire.hw_profiles.profile import load_profile

    xylo = load_profile("xylo")
    b = make_budget(xylo, (16, 200, 100, 8), connectivity=1.0)
    # fc1 from the 16 input channels: no limit; fc2: each of 200 hidden neurons feeds at
    # most 64 of the 100; the readout into the dedicated output neurons: no limit
    assert b.max_fan_out == 64 and b.fan_out_skip_last
    assert b.max_synapses == 16 * 200 + 200 * 64 + 100 * 8
    assert b.source == "limits.fan_out 64 per source neuron"
    torch.manual_seed(0)
    model = SpikingMLP((16, 200, 100, 8), steps=2)
    apply_gradr(model)
    assert max_fan_out(model, True) == 100
    project_to_budget(model, b)
    assert max_fan_out(model, True) == 64 and within_budget(model, b)
