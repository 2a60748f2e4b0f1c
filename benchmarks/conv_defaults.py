"""The ``--model conv`` defaults against the changes that led to them (docs/conv.md, Defaults).

Trains the conv job's network with GradR inside the connectivity budget, as
``python -m rewire.export --model conv`` does (``init_rates`` on 128 training images, then
:func:`rewire.training.train.train`), for each row of a small grid around the defaults, and
prints one table: float test accuracy, connectivity before the projection, the synapses the
projection removed and each GradR layer's connected synapses (a 0 there is a dead layer).
No compile or export: the main job's report gives those figures for the defaults.

    .venv/bin/python benchmarks/conv_defaults.py                      # digits, the grid
    .venv/bin/python benchmarks/conv_defaults.py --rows defaults --seeds 0 1 2
    .venv/bin/python benchmarks/conv_defaults.py --dataset mnist \\
        --data-dir ../shared/datasets/mnist --rows defaults

Rows (``--rows``): ``old`` (channels 8 16, lr 1e-3, ``alpha_max`` 2: the defaults before
issue 15), ``lr1e-3`` (16 32, lr 1e-3), ``lr5e-3`` (16 32, lr 5e-3), ``nocap`` (the defaults
with ``alpha_max`` 2), ``defaults``. ``--epochs`` overrides every row's epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch

from rewire.job.runner import JobSpec, prepare
from rewire.training.gradr import hidden_params
from rewire.training.train import train

ROWS = {
    "old": dict(channels=(8, 16), lr=1e-3, controller={}),
    "lr1e-3": dict(lr=1e-3),
    "lr5e-3": dict(lr=5e-3),
    "nocap": dict(controller={}),
    "defaults": dict(),
}


def run_row(name: str, dataset: str, data_dir: str | None, seed: int,
            epochs: int | None) -> dict:
    """Train one row; return its figures."""
    change = dict(ROWS[name])
    channels = change.pop("channels", None)
    base = JobSpec(model="conv", dataset=dataset).train
    config = dataclasses.replace(base, seed=seed, progress=False,
                                 **({"epochs": epochs} if epochs else {}), **change)
    spec = JobSpec(out="build/conv_defaults", dataset=dataset, data_dir=data_dir,
                   model="conv", train=config,
                   **({"channels": channels} if channels else {}))
    prep = prepare(spec)
    torch.manual_seed(seed)
    prep.model.init_rates(prep.split.x_train[:128])
    start = time.perf_counter()
    res = train(prep.model, prep.split, prep.budget, config)
    return {"row": name, "seed": seed, "epochs": config.epochs, "lr": config.lr,
            "alpha_max": config.controller.get("alpha_max", 2.0),
            "channels": spec.channels, "accuracy": res.accuracy,
            "gradr_conn": res.gradr_synapses / prep.budget.total_synapses,
            "removed": res.projected_away,
            "layers": [int((t > 0).sum()) for t in hidden_params(prep.model)],
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits", choices=("digits", "mnist"))
    p.add_argument("--data-dir", default=None)
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--epochs", type=int, default=None, help="override every row's epochs")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{'row':9s} {'seed':>4s} {'epochs':>6s} {'lr':>6s} {'a_max':>5s} {'channels':9s} "
          f"{'accuracy':>8s} {'GradR conn':>10s} {'projected':>9s} {'layer synapses':18s} "
          f"{'train s':>7s}", flush=True)
    for name in args.rows:
        for seed in args.seeds:
            r = run_row(name, args.dataset, args.data_dir, seed, args.epochs)
            print(f"{r['row']:9s} {r['seed']:4d} {r['epochs']:6d} {r['lr']:6g} "
                  f"{r['alpha_max']:5g} {' '.join(map(str, r['channels'])):9s} "
                  f"{100 * r['accuracy']:7.2f}% {100 * r['gradr_conn']:9.2f}% "
                  f"{r['removed']:9d} {str(r['layers']):18s} {r['seconds']:7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
