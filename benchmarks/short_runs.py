"""Short runs that learn (issue 26, item 3): ``rewire.train`` on the digits at a 10 % budget
after few epochs, against a plain loop of the same model (plain Adam, no pruning).

The model is the main job's: SpikingMLP 64-256-10, T = 16, current input (gain 4), batch 64,
lr 1e-3, the budget ``--connectivity 0.1`` on the loihi2 profile (1,895 synapses of 18,944).
Weights are seeded as the job seeds them (``torch.manual_seed(seed)`` before the model).

Usage::

    PYTHONPATH=$PWD python benchmarks/short_runs.py                    # the table below
    PYTHONPATH=$PWD python benchmarks/short_runs.py --runs 3:0 10:0,1  # epochs:seeds ...

Prints one markdown row per run (epochs, seed, rewire's accuracy and connectivity, the
plain loop's accuracy). Results: benchmarks/results/short_runs.md.
"""

from __future__ import annotations

import argparse
import time

import torch

from rewire.hw_profiles.profile import load_profile
from rewire.training.budget import make_budget
from rewire.training.data import load_split
from rewire.training.model import SpikingMLP, predict, spike_count_logits
from rewire.training.train import TrainConfig, evaluate, train

SIZES = (64, 256, 10)
DEFAULT_RUNS = "1:0,1,2 3:0,1,2 10:0,1,2 60:0"


def plain_loop(split, epochs: int, seed: int, lr: float = 1e-3, batch: int = 64) -> float:
    """Plain Adam on the dense model, batches shuffled as ``train`` shuffles them; test
    accuracy (fraction) by output spike count."""
    torch.manual_seed(seed)
    model = SpikingMLP(SIZES, steps=16)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(split.x_train), generator=gen)
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            out = model(split.x_train[idx])
            loss = torch.nn.functional.cross_entropy(spike_count_logits(out),
                                                     split.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return evaluate(model, split.x_test, split.y_test, seed=seed)


def rewire_run(split, budget, epochs: int, seed: int) -> tuple[float, float]:
    """``rewire.train`` with its defaults; (accuracy, connectivity) at the end."""
    torch.manual_seed(seed)
    model = SpikingMLP(SIZES, steps=16)
    result = train(model, split, budget, TrainConfig(epochs=epochs, seed=seed, progress=False))
    return result.accuracy, result.synapses / budget.total_synapses


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=DEFAULT_RUNS.split(),
                        help="epochs:seed,seed,... (default: %(default)s)")
    args = parser.parse_args(argv)
    split = load_split("digits")
    budget = make_budget(load_profile("loihi2"), SIZES, connectivity=0.1)
    print("| epochs | seed | rewire.train acc | connectivity | plain loop acc | time (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for run in args.runs:
        epochs, seeds = run.split(":")
        for seed in (int(s) for s in seeds.split(",")):
            start = time.perf_counter()
            acc, conn = rewire_run(split, budget, int(epochs), seed)
            plain = plain_loop(split, int(epochs), seed)
            print(f"| {epochs} | {seed} | {acc:.2%} | {conn:.2%} | {plain:.2%} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
