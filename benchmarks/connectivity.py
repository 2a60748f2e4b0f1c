"""Accuracy vs connectivity on MNIST: GradR against Deep R and magnitude pruning.

Setup (issue 5): the first 8,000 images of the MNIST t10k set train, the last 2,000 test
(``--dataset mnist-t10k``, :func:`rewire.training.data.load_mnist_split`; not the standard
60,000/10,000 split, which ``benchmarks/paper_mnist.py`` uses);
a fully connected 784-800-10 SNN (:class:`rewire.training.model.SpikingMLP`, Norse LIF,
constant-current input, T = 8, spike-count cross-entropy), Adam, batch 64, each method at its
own learning rate (``--lr``; default :data:`BEST_LR`, chosen with ``--validation``). For every
connectivity level each method trains a fresh network per seed (``--seeds``, the same seeds
for every method) and ends with at most ``round(level * total)`` connected synapses:

* ``gradr``: GradR steered by the budget controller (``--controller``; default: PI gains
  ``kp=4, ki=40``, aim at the budget itself, reach it by 80 % of the run, prior off while
  under the schedule), then the projection safety net;
* ``deep-r``: Deep R (Bellec et al. 2018) with exactly that many active synapses;
* ``magnitude``: gradual magnitude pruning (Zhu & Gupta 2017, cubic schedule).

It also times one optimizer step on the same model, GradR vs ``torch.optim.Adam`` (median of
interleaved repetitions, random gradients), and prints the ratio.

Outputs (in ``--out``): ``connectivity.csv`` (one row per run, rewritten after each run, so
a cut-short run keeps its finished rows), ``connectivity.png`` (accuracy vs connectivity) and
``step_time.json``; the table (mean ± sd over the seeds) is printed, and by ``--merge``
also the gap of each method's mean to magnitude pruning per level (:func:`gap_table`).

Hyper-parameters are chosen with ``--validation 1000``: the last 1,000 training images are
held out and scored, and the test set is not read.

Usage (one process per level runs side by side on a multi-core CPU; ``--merge`` joins them)::

    .venv/bin/python benchmarks/connectivity.py --data-dir ../shared/datasets/mnist \\
        --epochs 30 --levels 0.02 --seeds 0 1 2 --out build/bench/c2
    .venv/bin/python benchmarks/connectivity.py --data-dir ../shared/datasets/mnist \\
        --epochs 30 --levels 0.01 --seeds 0 1 2 --step-reps 0 --out build/bench/c1
    .venv/bin/python benchmarks/connectivity.py --merge build/bench/c2/connectivity.csv \\
        build/bench/c1/connectivity.csv --out benchmarks/results/connectivity
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import statistics
import sys
import time
from pathlib import Path

import matplotlib
import torch

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402

from rewire.io import atomic_path, write_text  # noqa: E402
from rewire.training.budget import SynapseBudget  # noqa: E402
from rewire.training.data import load_split, validation_split  # noqa: E402
from rewire.training.gradr import GradR, apply_gradr  # noqa: E402
from rewire.training.model import SpikingMLP  # noqa: E402
from rewire.training.train import METHODS, TrainConfig, train  # noqa: E402

FIELDS = ("method", "lr", "eval", "level", "seed", "budget_synapses", "synapses",
          "connectivity", "accuracy", "gradr_connectivity", "gradr_accuracy", "projected_away",
          "epochs", "seconds")


# Adam learning rate per method, each the best mean accuracy over 1 % and 2 % on the
# validation split (last 1,000 training images, seeds 0-2) among 1e-3, 2e-3, 3e-3, 4e-3, 6e-3
# (Deep R: 1e-3, 3e-3, 6e-3, 1e-2, 2e-2, 5e-2, 1e-1); docs/mnist.md, "Benchmark";
# benchmarks/results/connectivity/validation.csv.
BEST_LR = {"gradr": 4e-3, "deep-r": 5e-2, "magnitude": 1e-3}


def _per_method(spec: str, methods: list[str]) -> dict[str, float]:
    """``"4e-3"`` (every method) or ``"gradr=4e-3,magnitude=1e-3"`` -> learning rate per method.

    Raises:
        ValueError: a value is not a positive number, or a method in ``methods`` has no rate.
    """
    if "=" not in spec:
        lrs = dict.fromkeys(methods, float(spec))
    else:
        lrs = {k.strip(): float(v) for k, v in (kv.split("=", 1) for kv in spec.split(",") if kv)}
    missing = [m for m in methods if m not in lrs]
    if missing:
        raise ValueError(f"no learning rate for {', '.join(missing)}; give method=value for each")
    if any(not v > 0 for v in lrs.values()):
        raise ValueError(f"learning rates must be > 0, got {spec!r}")
    return lrs


def step_time_ratio(sizes: tuple[int, ...], steps: int, reps: int, alpha: float = 0.1) -> dict:
    """Median seconds of one optimizer step, GradR vs ``torch.optim.Adam``, on ``sizes``.

    Both optimizers see the same parametrized model and the same random gradients; their
    steps alternate so that load on a shared machine hits both alike.
    """
    def model():
        torch.manual_seed(0)
        net = SpikingMLP(sizes, steps=steps)
        return apply_gradr(net)

    adam_params, gradr_params = model(), model()
    adam = torch.optim.Adam(adam_params, lr=1e-3)
    gradr = GradR(gradr_params, lr=1e-3, alpha=alpha)
    gen = torch.Generator().manual_seed(0)
    for a, g in zip(adam_params, gradr_params):
        a.grad = torch.randn(a.shape, generator=gen)
        g.grad = a.grad.clone()
    times = {"adam": [], "gradr": []}
    for _ in range(reps):
        for name, opt in (("adam", adam), ("gradr", gradr)):
            t0 = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t0)
    adam_s, gradr_s = statistics.median(times["adam"]), statistics.median(times["gradr"])
    return {"adam_ms": adam_s * 1e3, "gradr_ms": gradr_s * 1e3, "ratio": gradr_s / adam_s,
            "reps": reps, "parameters": sum(p.numel() for p in adam_params)}


def write_csv(path: Path, rows: list[dict]) -> None:
    """All rows so far, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def plot(path: Path, rows: list[dict], title: str) -> None:
    """Accuracy vs final connectivity (log x), one line per method and rate: the mean over
    seeds per level, with the sample sd as error bars when several seeds ran."""
    fig, ax = plt.subplots(figsize=(6, 4))
    several_lr = len({r["lr"] for r in rows}) > 1
    for method, lr in dict.fromkeys((r["method"], r["lr"]) for r in rows):
        mine = [r for r in rows if r["method"] == method and r["lr"] == lr]
        pts = []
        for level in sorted({r["level"] for r in mine}):
            rs = [r for r in mine if r["level"] == level]
            acc = [100 * r["accuracy"] for r in rs]
            pts.append((statistics.mean(100 * r["connectivity"] for r in rs),
                        statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0))
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts],
                    fmt="o-", capsize=3, label=f"{method}, lr {lr:g}" if several_lr else method)
    ax.set_xscale("log")
    ax.set_xlabel("connectivity (%)")
    ax.set_ylabel(f"{_scored(rows)} accuracy (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _mean_sd(values: list[float], digits: int) -> str:
    """``mean ± sd`` (sample sd) of ``values`` in percent; the bare value for one run."""
    pct = [100 * v for v in values]
    if len(pct) == 1:
        return f"{pct[0]:.{digits}f}"
    return f"{statistics.mean(pct):.{digits}f} ± {statistics.stdev(pct):.{digits}f}"


def _scored(rows: list[dict]) -> str:
    """What the accuracies were scored on: ``test`` or ``validation`` (one kind per table)."""
    return rows[0]["eval"]


def table(rows: list[dict]) -> str:
    """Markdown table, one line per method, learning rate and level: final connectivity and
    accuracy (mean ± sd over the seeds run), accuracy per seed, synapses the projection
    removed (summed over seeds) and the mean time of one run."""
    lines = [f"| method | lr | budget | seeds | connectivity (%) | {_scored(rows)} accuracy (%) | "
             "per seed (%) | projected away | time (s) |", "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["level"], r["method"], r["lr"]), []).append(r)
    for (level, method, lr), rs in sorted(groups.items(),
                                          key=lambda kv: (-kv[0][0], kv[0][1], kv[0][2])):
        rs = sorted(rs, key=lambda r: r["seed"])
        per_seed = ", ".join(f"{100 * r['accuracy']:.2f}" for r in rs)
        lines.append(f"| {method} | {lr:g} | {100 * level:g} % | {len(rs)} | "
                     f"{_mean_sd([r['connectivity'] for r in rs], 3)} | "
                     f"{_mean_sd([r['accuracy'] for r in rs], 2)} | {per_seed} | "
                     f"{sum(r['projected_away'] for r in rs)} | "
                     f"{statistics.mean(r['seconds'] for r in rs):.0f} |")
    return "\n".join(lines)


def gap_table(rows: list[dict], baseline: str = "magnitude") -> str:
    """Markdown table, one line per level and method (one learning rate per method and level
    expected): accuracy mean ± sd over the seeds and the gap of the means to ``baseline``
    in percentage points (``–`` where ``baseline`` did not run at that level).

    Raises:
        ValueError: a method ran at several learning rates at one level (the gap would mix
            them; merge one rate per method, e.g. the chosen one).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["level"], r["method"]), []).append(r)
    for (level, method), rs in groups.items():
        if len({r["lr"] for r in rs}) > 1:
            raise ValueError(f"{method} ran at several learning rates at {100 * level:g} %; "
                             "give one rate per method and level for the gap table")
    lines = [f"| budget | method | lr | seeds | {_scored(rows)} accuracy (%) | "
             f"gap to {baseline} (points) |", "|---|---|---|---|---|---|"]
    order = {"gradr": 0, "magnitude": 1, "deep-r": 2}
    for (level, method), rs in sorted(groups.items(),
                                      key=lambda kv: (-kv[0][0], order.get(kv[0][1], 9), kv[0][1])):
        mean = statistics.mean(r["accuracy"] for r in rs)
        base = groups.get((level, baseline))
        gap = ("–" if base is None or method == baseline else
               f"{100 * (mean - statistics.mean(r['accuracy'] for r in base)):+.2f}")
        lines.append(f"| {100 * level:g} % | {method} | {rs[0]['lr']:g} | {len(rs)} | "
                     f"{_mean_sd([r['accuracy'] for r in rs], 2)} | {gap} |")
    return "\n".join(lines)


def read_csv(path: Path) -> list[dict]:
    """Rows written by :func:`write_csv`, numbers parsed back."""
    ints = {"seed", "budget_synapses", "synapses", "projected_away", "epochs"}
    text = {"method", "eval"}
    with open(path, newline="") as f:
        return [{k: v if k in text else int(v) if k in ints else float(v)
                 for k, v in row.items()} for row in csv.DictReader(f)]


def merge(paths: list[str], out: Path) -> int:
    """Write the rows of several ``connectivity.csv`` files as one CSV, plot and table."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        print(f"--merge: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = [r for p in paths for r in read_csv(Path(p))]
    if len({r["eval"] for r in rows}) > 1:
        print("--merge: these files mix test and validation runs (column eval), which the "
              "table would average together; merge each kind on its own", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "connectivity.csv", rows)
    epochs = sorted({r["epochs"] for r in rows})
    plot(out / "connectivity.png", rows, f"MNIST SNN, {'/'.join(map(str, epochs))} epochs")
    print(table(rows))
    try:
        print("\n" + gap_table(rows))
    except ValueError as err:  # several rates per method (a validation sweep): no gap table
        print(f"\n(no gap table: {err})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code (2 on bad arguments)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default="../shared/datasets/mnist",
                    help="folder with the MNIST t10k IDX files")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--levels", type=float, nargs="+", default=[0.1, 0.05, 0.02, 0.01],
                    help="connectivity budgets, run in this order")
    ap.add_argument("--methods", nargs="+", default=["gradr", "deep-r", "magnitude"],
                    choices=METHODS)
    ap.add_argument("--out", default="build/bench/connectivity")
    ap.add_argument("--hidden", type=int, default=800)
    ap.add_argument("--steps", type=int, default=8, help="time steps T")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", default=",".join(f"{m}={v:g}" for m, v in BEST_LR.items()),
                    help="Adam learning rate: one value for every method, or method=value "
                         "pairs (default: each method's rate chosen on the validation split)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="one run per seed and method and level; the table gives mean ± sd")
    ap.add_argument("--limit", type=int, default=0,
                    help="use only the first N training images (smoke tests); 0 = all 8,000")
    ap.add_argument("--step-reps", type=int, default=1000,
                    help="repetitions for the optimizer step timing (0 = skip)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--merge", nargs="+", metavar="CSV",
                    help="no training: merge connectivity.csv files of runs made side by "
                         "side (e.g. one process per level) into --out and print the table")
    ap.add_argument("--controller",
                    default="kp=4,ki=40,margin=1,ramp=0.8,off_below=1",
                    help="BudgetController settings for gradr (comma-separated key=value)")
    ap.add_argument("--validation", type=int, default=0, metavar="N",
                    help="hyper-parameter selection: hold out the last N training images and "
                         "report accuracy on them (column eval = validation); the test set "
                         "is not read")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))
    if args.epochs < 1 or any(not 0 < lv <= 1 for lv in args.levels):
        ap.error("--epochs must be >= 1 and every --levels value in (0, 1]")
    try:
        gains = {k: float(v) for k, v in (kv.split("=") for kv in args.controller.split(",") if kv)}
    except ValueError:
        ap.error(f"--controller must look like kp=4,ki=40, got {args.controller!r}")
    try:
        lrs = _per_method(args.lr, args.methods)
    except ValueError as err:
        ap.error(f"--lr: {err}")
    torch.set_num_threads(args.threads)
    split = load_split("mnist-t10k", args.data_dir)  # the 8k/2k split its results report
    if args.validation:
        if not 0 < args.validation < len(split.x_train):
            ap.error(f"--validation must be in (0, {len(split.x_train)})")
        split = validation_split(split, args.validation)
    if args.limit:
        split = dataclasses.replace(split, x_train=split.x_train[:args.limit],
                                    y_train=split.y_train[:args.limit])
    sizes = (split.num_features, args.hidden, split.num_classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.step_reps:
        timing = step_time_ratio(sizes, args.steps, args.step_reps)
        write_text(out / "step_time.json", json.dumps(timing, indent=2) + "\n")
        print(f"optimizer step on {timing['parameters']:,} parameters (median of "
              f"{args.step_reps}): Adam {timing['adam_ms']:.3f} ms, GradR "
              f"{timing['gradr_ms']:.3f} ms, ratio GradR/Adam = {timing['ratio']:.3f}",
              flush=True)
    total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    rows = []
    for level in args.levels:
        budget = SynapseBudget(max_synapses=round(level * total), max_fan_in=0,
                               total_synapses=total, source=f"--levels {level}")
        for seed, method in ((s, m) for s in args.seeds for m in args.methods):
            torch.manual_seed(seed)
            model = SpikingMLP(sizes, steps=args.steps)
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lrs[method],
                              seed=seed, device=args.device, progress=False,
                              method=method, controller=gains)
            res = train(model, split, budget, cfg)
            rows.append({"method": method, "lr": lrs[method],
                         "eval": "validation" if args.validation else "test",
                         "level": level, "seed": seed,
                         "budget_synapses": budget.max_synapses, "synapses": res.synapses,
                         "connectivity": res.synapses / total, "accuracy": res.accuracy,
                         "gradr_connectivity": res.gradr_synapses / total,
                         "gradr_accuracy": res.gradr_accuracy,
                         "projected_away": res.projected_away, "epochs": args.epochs,
                         "seconds": res.seconds})
            print(f"{method:>10} seed {seed} budget {100 * level:g} %: "
                  f"{100 * res.accuracy:.2f} % at "
                  f"{100 * res.synapses / total:.3f} % connectivity ({res.seconds:.0f} s)",
                  flush=True)
            write_csv(out / "connectivity.csv", rows)
            plot(out / "connectivity.png", rows,
                 f"MNIST 784-{args.hidden}-10 SNN, T={args.steps}, {args.epochs} epochs")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
