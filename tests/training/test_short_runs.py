"""Short runs that learn (issue 26): the readout floor, the per-matrix cut and the
controller's short-run schedule; one digits run at the main job's budget."""

from __future__ import annotations

import pytest
import torch

from rewire.training.budget import BudgetController, SynapseBudget, make_budget
from rewire.training.controller import SHORT_RUN_STEPS
from rewire.training.counting import connected_synapses, keep_strongest, readout_floor
from rewire.training.gradr import GradR, apply_gradr, hidden_params
from rewire.training.model import SpikingMLP


def _mlp(sizes=(12, 20, 4), seed=0):
    torch.manual_seed(seed)
    model = SpikingMLP(sizes, steps=4)
    return model, apply_gradr(model)


def test_readout_floor_reconnects_a_silenced_output_neuron_and_what_it_reads():
    """An output neuron with every input cut gets its ``k`` strongest back, and each hidden
    neuron those read keeps an input; neurons already above the floor are untouched."""
    model, (fc1, fc2) = _mlp()
    with torch.no_grad():
        fc2[0] = -fc2[0].abs() - 0.1  # output 0: no input left
        fc2[0, :3] = torch.tensor([-0.01, -0.02, -0.03])  # its three "strongest"
        fc1[:3] = -1.0  # and the hidden neurons those read have no input either
        fc1[3:] = fc1[3:].abs() + 0.01  # every other hidden neuron has all its inputs
    others = fc2[1:].clone()
    read = set(fc2.topk(2, dim=1).indices.flatten().tolist())
    mask, revived = readout_floor(model, 2)
    assert int((fc2[0] > 0).sum()) == 2 and bool((fc2[0, :2] > 0).all())
    for j in range(3):  # a cut hidden neuron the floor reads gets its strongest input back
        assert int((fc1[j] > 0).sum()) == (1 if j in read else 0)
    assert torch.equal(fc2[1:], others)
    assert revived == 2 + len(read & {0, 1, 2})
    assert int(mask.sum()) == 4 * 2 + len(read)


@pytest.mark.parametrize("k, revive", [(-1, 0.01), (2, 0.0)])
def test_readout_floor_refuses_bad_arguments(k, revive):
    model, _ = _mlp()
    with pytest.raises(ValueError, match="readout_floor"):
        readout_floor(model, k, revive)


@pytest.mark.parametrize("count", [0, 7, 60, 300])
def test_keep_strongest_keeps_exactly_the_count_with_per_matrix_shares(count):
    """At most ``count`` stay; each matrix keeps its share of its largest, protected first;
    with ``rescale`` every neuron's summed connected theta is what it was."""
    model, thetas = _mlp()
    before = [t.clone() for t in thetas]
    sums = [t.clamp(min=0).sum(1) for t in before]
    protect = torch.zeros(sum(t.numel() for t in thetas), dtype=torch.bool)
    weakest = int(before[1].view(-1).masked_fill(before[1].view(-1) <= 0, 9).argmin())
    protect[thetas[0].numel() + weakest] = True
    keep_strongest(model, count, protect, rescale=True)
    assert connected_synapses(model) <= count
    total = sum(t.numel() for t in thetas)
    share = count * thetas[1].numel() // total
    kept = thetas[1].view(-1) > 0
    assert int(kept.sum()) == min(share, int((before[1] > 0).sum()))
    if share:
        assert bool(kept[weakest])
    for theta, old in zip(thetas, sums):
        alive = (theta > 0).any(1)
        assert torch.allclose(theta.clamp(min=0).sum(1)[alive], old[alive], rtol=1e-5)


def _short_run(total_steps, **options):
    model, thetas = _mlp((12, 40, 4))
    opt = GradR(thetas, lr=0.01, alpha=0.1)
    budget = SynapseBudget(max_synapses=64, max_fan_in=0, total_synapses=640, source="test")
    ctl = BudgetController(opt, model, budget, total_steps=total_steps,
                           short_below=SHORT_RUN_STEPS, **options)
    x, y = torch.rand(32, 12), torch.randint(0, 4, (32,))
    trace = []
    for _ in range(total_steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).sum(0), y).backward()
        opt.step()
        alpha = ctl.step()
        trace.append((alpha, connected_synapses(model),
                      int((hidden_params(model)[-1] > 0).sum(1).min())))
    return ctl, trace, budget


def test_short_schedule_learns_dense_then_cuts_then_holds_the_budget():
    """60 steps: no prior at all; no cut in the dense steps; the cubic schedule is followed
    (never above it); from the end of the ramp on, within the budget, every output neuron
    with at least the floor of inputs."""
    ctl, trace, budget = _short_run(60)
    assert ctl.short and (ctl.dense_steps, ctl.ramp_end) == (6, 42)  # 10 % dense, 30 % frozen
    assert all(alpha == 0.0 for alpha, _, _ in trace)
    assert trace[ctl.dense_steps][1] > 0.5 * budget.total_synapses  # still dense
    for t, (_, conn, _) in enumerate(trace[ctl.dense_steps:ctl.ramp_end], ctl.dense_steps + 1):
        assert conn <= ctl.schedule(t) * budget.total_synapses
    for _, conn, fan in trace[ctl.ramp_end - 1:]:
        assert conn <= budget.max_synapses and fan >= ctl.floor == 4


def test_long_runs_keep_the_steered_schedule():
    """A ramp of at least SHORT_RUN_STEPS steps is steered by the prior, as before."""
    model, thetas = _mlp()
    budget = SynapseBudget(max_synapses=60, max_fan_in=0, total_synapses=320, source="test")
    ctl = BudgetController(GradR(thetas, lr=0.01, alpha=0.1), model, budget,
                           total_steps=SHORT_RUN_STEPS * 2, short_below=SHORT_RUN_STEPS)
    assert not ctl.short and ctl.step() > 0


@pytest.mark.parametrize("options", [{"dense": 0.7, "short_ramp": 0.6}, {"floor": -1},
                                     {"short_below": -5}])
def test_short_schedule_options_are_checked(options):
    model, thetas = _mlp()
    budget = SynapseBudget(max_synapses=60, max_fan_in=0, total_synapses=320, source="test")
    with pytest.raises(ValueError):
        BudgetController(GradR(thetas, lr=0.01, alpha=0.1), model, budget, 10, **options)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_three_epochs_on_the_digits_learn_at_the_main_jobs_budget(loihi2, seed):
    """The issue's failure: 3 epochs at 10 % ended at 10 % accuracy (a silent readout). Now
    every seed reaches >= 85 % (issue 26) within the budget, with nothing left for the
    projection (measured 88.3 / 89.4 / 91.9 %, benchmarks/results/short_runs.md; the
    schedule before, dense for 40 % of the run, gave 82.8 % on seed 1). 11-16 s a seed on
    2 shared cores under load."""
    from rewire.training.data import load_split
    from rewire.training.train import TrainConfig, train

    split = load_split("digits")
    budget = make_budget(loihi2, (64, 256, 10), connectivity=0.1)
    torch.manual_seed(seed)
    model = SpikingMLP((64, 256, 10), steps=16)
    result = train(model, split, budget, TrainConfig(epochs=3, seed=seed, progress=False))
    assert result.synapses <= budget.max_synapses and result.projected_away == 0
    assert result.accuracy >= 0.85
