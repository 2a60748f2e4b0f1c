"""GradR against magnitude pruning and Deep R on standard MNIST, beside the GradR paper's table.

Protocol (issue 26): the standard MNIST split (60,000 train / 10,000 test,
:func:`rewire.training.data.load_mnist_standard`); the GradR paper's MNIST network, a fully
connected 784-800-10 SNN (:class:`rewire.training.model.SpikingMLP`, Norse LIF,
constant-current input, T = 8); rewire's loss, the cross-entropy of the output spike counts
(:func:`rewire.training.model.spike_count_logits`), not the paper's; Adam, batch 64; at most
30 epochs a run (the paper trains far longer; ``--epochs`` is written into every row, with
the seconds per epoch). Each method ends with at most ``round(level * total)`` synapses:
``gradr`` (GradR steered by the budget controller, then the projection), ``magnitude``
(Zhu & Gupta 2017 gradual magnitude pruning), ``deep-r`` (Bellec et al. 2018) — the same
:func:`rewire.train` paths :mod:`benchmarks.connectivity` runs.

Learning rates are chosen with ``--validation 10000``: the last 10,000 TRAINING images are
held out and scored (column ``eval`` = ``validation``); the test set is not read.

Every finished run is appended to ``--results`` (a CSV, default
``benchmarks/results/paper_mnist.csv``) and, with ``--commit``, committed at once
(``git commit --only`` of that file and of the ``--table-out`` page rewritten from it), so
the table grows over several sessions; a run whose (method, lr, eval, level, seed, epochs)
is already in the file is skipped. ``--table``
trains nothing: it writes the paper's numbers beside rewire's (mean ± sd over seeds) and
the runs still missing to ``--table-out``.

Usage (one run at a time on a shared machine)::

    nice -n 15 .venv/bin/python benchmarks/paper_mnist.py --validation 10000 \\
        --levels 0.005 --methods gradr --lr 2e-3 4e-3 --seeds 0 --epochs 5 --commit
    # test runs at the rates that scored best on validation (chosen_lr)
    nice -n 15 .venv/bin/python benchmarks/paper_mnist.py --levels 0.005 0.0025 \\
        --methods gradr magnitude --seeds 0 1 2 --epochs 5 --commit
    .venv/bin/python benchmarks/paper_mnist.py --table
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from rewire.io import write_text
from rewire.training.budget import SynapseBudget
from rewire.training.data import load_mnist_standard, validation_split
from rewire.training.model import SpikingMLP
from rewire.training.train import METHODS, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("method", "lr", "eval", "level", "seed", "epochs", "split", "budget_synapses",
          "synapses", "connectivity", "accuracy", "gradr_connectivity", "gradr_accuracy",
          "projected_away", "seconds", "seconds_per_epoch")
KEY = ("method", "lr", "eval", "level", "seed", "epochs")
SIZES = (784, 800, 10)
TOTAL = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # 635,200 synapses

#: The GradR paper's MNIST results: Chen, Yu, Tian, Huang & Zhang, "Pruning of Deep Spiking
#: Neural Networks through Gradient Rewiring", IJCAI 2021, arXiv 2105.04916 (see
#: docs/mnist.md, "GradR on standard MNIST", for what was and was not retrieved).
#: (connectivity fraction, top-1 test accuracy %, method as the paper names it)
PAPER_MNIST: tuple[tuple[float, float, str], ...] = ()

#: Extra levels issue 26 asks for beyond the paper's: extreme sparsity.
EXTREME_LEVELS = (0.005, 0.0025)


def _key(row: dict) -> tuple:
    return (row["method"], float(row["lr"]), row["eval"], float(row["level"]), int(row["seed"]),
            int(row["epochs"]))


def read_rows(path: Path) -> list[dict]:
    """Rows of the results CSV (numbers parsed back); ``[]`` when it does not exist."""
    if not path.is_file():
        return []
    ints = {"seed", "epochs", "budget_synapses", "synapses", "projected_away"}
    text = {"method", "eval", "split"}
    with open(path, newline="") as f:
        return [{k: v if k in text else int(v) if k in ints else float(v)
                 for k, v in row.items()} for row in csv.DictReader(f)]


def append_row(path: Path, row: dict) -> None:
    """Rewrite ``path`` atomically with its rows plus ``row`` (header once)."""
    rows = read_rows(path) + [row]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def commit(paths: list[Path], message: str, tries: int = 5) -> None:
    """``git commit --only paths`` (other staged work stays staged); retries a busy index."""
    names = [str(p) for p in paths]
    for attempt in range(tries):
        subprocess.run(["git", "-C", str(ROOT), "add", "--", *names], check=False)
        done = subprocess.run(["git", "-C", str(ROOT), "commit", "-q", "-m", message, "--only",
                               "--", *names], capture_output=True, text=True)
        if done.returncode == 0:
            return
        time.sleep(5 * (attempt + 1))
    print(f"commit of {names} failed: {done.stderr.strip()}", file=sys.stderr, flush=True)


def run_one(split, method: str, lr: float, level: float, seed: int, epochs: int,
            evaluated: str, controller: dict) -> dict:
    """Train one fresh 784-800-10 network; return its results row."""
    budget = SynapseBudget(max_synapses=round(level * TOTAL), max_fan_in=0,
                           total_synapses=TOTAL, source=f"level {level}")
    torch.manual_seed(seed)
    model = SpikingMLP(SIZES, steps=8)
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=lr, seed=seed, progress=False,
                      method=method, controller=controller if method == "gradr" else {})
    res = train(model, split, budget, cfg)
    return {"method": method, "lr": lr, "eval": evaluated, "level": level, "seed": seed,
            "epochs": epochs, "split": split.name, "budget_synapses": budget.max_synapses,
            "synapses": res.synapses, "connectivity": res.synapses / TOTAL,
            "accuracy": res.accuracy, "gradr_connectivity": res.gradr_synapses / TOTAL,
            "gradr_accuracy": res.gradr_accuracy, "projected_away": res.projected_away,
            "seconds": round(res.seconds, 1), "seconds_per_epoch": round(res.seconds / epochs, 1)}


def chosen_lr(rows: list[dict], method: str, level: float, default: float,
              epochs: int | None = None) -> float:
    """The learning rate with the best mean validation accuracy (``eval == "validation"``
    rows only; the test set never chooses) for ``method`` at ``level``, taken from the
    validation runs of the same length (``epochs``) where there are any, else from every
    validation run at ``level``; where that level has no validation rows, the best over the
    method's validation rows at every level; where the method has none, ``default``.
    (A rate chosen on 5-epoch runs need not be the best for 15: magnitude pruning at 0.25 %
    lost 5-6 points from 5 to 15 epochs at the 5-epoch choice.)"""
    val = [r for r in rows if r["eval"] == "validation" and r["method"] == method]
    at_level = [r for r in val if r["level"] == level]
    here = [r for r in at_level if r["epochs"] == epochs] or at_level or val
    if not here:
        return default
    by_lr: dict[float, list[float]] = {}
    for r in here:
        by_lr.setdefault(r["lr"], []).append(r["accuracy"])
    return max(sorted(by_lr), key=lambda lr: statistics.mean(by_lr[lr]))


def _stat(rows: list[dict]) -> str:
    """``mean ± sd (n seeds: a, b, c)`` of the rows' accuracies in percent, seed order."""
    pct = [100 * r["accuracy"] for r in sorted(rows, key=lambda r: r["seed"])]
    each = ", ".join(f"{v:.2f}" for v in pct)
    if len(pct) == 1:
        return f"{pct[0]:.2f} (1 seed)"
    return f"{statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f} ({len(pct)} seeds: {each})"


def epoch_times(rows: list[dict]) -> str:
    """Markdown: seconds per epoch per method and kind of run (min–max, mean), as measured."""
    lines = ["| method | eval | runs | s/epoch min–max | mean |", "|---|---|---|---|---|"]
    for key in sorted({(r["method"], r["eval"]) for r in rows}):
        t = [r["seconds_per_epoch"] for r in rows if (r["method"], r["eval"]) == key]
        lines.append(f"| {key[0]} | {key[1]} | {len(t)} | {min(t):.0f}–{max(t):.0f} | "
                     f"{statistics.mean(t):.0f} |")
    return "\n".join(lines)


def _at_one_rate(rs: list[dict], rows: list[dict], method: str, level: float,
                 epochs: int | None) -> tuple[list[dict], str]:
    """The test rows ``rs`` of one method, level and length at ONE learning rate (never
    pooled across rates): where they hold several rates, the one :func:`chosen_lr` picks on
    validation runs of that length, else the rate with the most seeds; and a note listing
    the runs left out (``""`` when none)."""
    rates = sorted({r["lr"] for r in rs})
    if len(rates) < 2:
        return rs, ""
    most = max(rates, key=lambda lr: sum(r["lr"] == lr for r in rs))
    keep = chosen_lr(rows, method, level, most, epochs)
    keep = keep if keep in rates else most
    left = sorted((r for r in rs if r["lr"] != keep), key=lambda r: (r["lr"], r["seed"]))
    note = "; ".join(f"lr {r['lr']:g} seed {r['seed']}: {100 * r['accuracy']:.2f}"
                     for r in left)
    return [r for r in rs if r["lr"] == keep], f" (not pooled: {note})"


def table(rows: list[dict], seeds: int = 3) -> str:
    """Markdown: per level (the paper's and :data:`EXTREME_LEVELS`) and epochs per run, the
    paper's accuracy and rewire's per method on the test set (mean ± sd over seeds, the lr),
    the gap of GradR to magnitude pruning, and the runs still missing (``seeds`` for GradR
    and magnitude, 1 for Deep R). Runs of different lengths are never pooled: each
    (level, epochs) pair is a row of its own."""
    test = [r for r in rows if r["eval"] == "test"]
    levels = sorted({p[0] for p in PAPER_MNIST} | set(EXTREME_LEVELS) |
                    {r["level"] for r in test}, reverse=True)
    paper = {}
    for level, acc, name in PAPER_MNIST:
        paper.setdefault(level, []).append(f"{acc:.2f} ({name})")
    lines = ["| connectivity | epochs | paper (test %) | rewire GradR | rewire magnitude | "
             "rewire Deep R | GradR − magnitude (points) | missing runs |",
             "|---|---|---|---|---|---|---|---|"]
    for level in levels:
        for epochs in sorted({r["epochs"] for r in test if r["level"] == level}) or [None]:
            at = [r for r in test if r["level"] == level and r["epochs"] == epochs]
            cells, means, missing = [], {}, []
            for method, want in (("gradr", seeds), ("magnitude", seeds), ("deep-r", 1)):
                rs, others = _at_one_rate([r for r in at if r["method"] == method], rows,
                                          method, level, epochs)
                if rs:
                    means[method] = statistics.mean(r["accuracy"] for r in rs)
                    cells.append(f"{_stat(rs)}, lr {rs[0]['lr']:g}{others}")
                else:
                    cells.append("–")
                if len({r["seed"] for r in rs}) < want:
                    missing.append(f"{method} {want - len({r['seed'] for r in rs})}")
            gap = (f"{100 * (means['gradr'] - means['magnitude']):+.2f}"
                   if {"gradr", "magnitude"} <= means.keys() else "–")
            lines.append(f"| {100 * level:g} % | {epochs or '–'} | "
                         f"{'; '.join(paper.get(level, ['–']))} | {' | '.join(cells)} | "
                         f"{gap} | {', '.join(missing) or 'none'} |")
    return "\n".join(lines)


def validation_table(rows: list[dict]) -> str:
    """Markdown: every validation run (lr choice), accuracy on the held-out training images."""
    val = sorted((r for r in rows if r["eval"] == "validation"),
                 key=lambda r: (-r["level"], r["method"], r["lr"], r["seed"]))
    lines = ["| method | level | lr | seed | epochs | validation accuracy (%) | s/epoch |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {100 * r['level']:g} % | {r['lr']:g} | {r['seed']} | "
              f"{r['epochs']} | {100 * r['accuracy']:.2f} | {r['seconds_per_epoch']:.0f} |"
              for r in val]
    return "\n".join(lines)


def write_table(results: Path, out: Path) -> str:
    """Write the markdown page of ``results`` (the table beside the paper, the validation
    runs, the seconds per epoch) to ``out``; return its text."""
    rows = read_rows(results)
    paper = ("the paper's numbers: PAPER_MNIST" if PAPER_MNIST else
             "the paper's MNIST table was not retrieved (docs/mnist.md and "
             "paper_mnist_search.md say what was searched and found), so its column is "
             "empty and its levels are not run yet")
    text = (f"# GradR vs magnitude pruning and Deep R on standard MNIST\n\n"
            f"Written by `benchmarks/paper_mnist.py --table` from `{results.name}`: "
            f"60,000 train / 10,000 test, 784-800-10, T = 8, spike-count cross-entropy, "
            f"Adam, batch 64; test accuracy of the final model, mean ± sample sd over "
            f"seeds; {paper}.\n\n"
            f"## Test accuracy beside the paper\n\n{table(rows)}\n\n"
            f"## Learning-rate choice (validation: last 10,000 training images)\n\n"
            f"{validation_table(rows)}\n\n"
            f"## Seconds per epoch (wall, 1 thread, nice 15 or 19 on a shared 2-core "
            f"machine)\n\n{epoch_times(rows)}\n")
    write_text(out, text)
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the missing runs one after another; return the exit code (2 on bad arguments)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent.parent / "shared" / "datasets" /
                                              "mnist"),
                    help="folder with the four MNIST IDX files (train and t10k)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" /
                                             "paper_mnist.csv"))
    ap.add_argument("--methods", nargs="+", default=["gradr", "magnitude"], choices=METHODS)
    ap.add_argument("--levels", type=float, nargs="+", default=list(EXTREME_LEVELS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lr", type=float, nargs="+", default=None,
                    help="learning rates to run (every one for every method); default: per "
                         "method and level the best on the validation rows of --results "
                         "(chosen_lr), else the rate in --default-lr")
    ap.add_argument("--default-lr", default="gradr=4e-3,magnitude=1e-3,deep-r=5e-2",
                    help="method=rate pairs for methods without validation rows (the rates "
                         "chosen on the 8k/2k split's validation, benchmarks/connectivity.py)")
    ap.add_argument("--epochs", type=int, default=5,
                    help="epochs per run, at most 30 (5 on 60,000 images = 4,690 steps, more "
                         "than the 3,750 of 30 epochs on the 8k/2k split)")
    ap.add_argument("--validation", type=int, default=0, metavar="N",
                    help="score on the last N training images (lr choice); test set unread")
    ap.add_argument("--controller", default="kp=4,ki=40,margin=1,ramp=0.8,off_below=1")
    ap.add_argument("--commit", action="store_true",
                    help="git-commit the results and the rewritten --table-out per run")
    ap.add_argument("--table", action="store_true", help="no training: write the table")
    ap.add_argument("--table-out", default=str(ROOT / "benchmarks" / "results" /
                                               "paper_mnist.md"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    results = Path(args.results)
    if args.table:
        print(write_table(results, Path(args.table_out)))
        return 0
    if not 1 <= args.epochs <= 30 or any(not 0 < lv <= 1 for lv in args.levels):
        ap.error("--epochs must be in 1..30 and every --levels value in (0, 1]")
    defaults = {k: float(v) for k, v in (kv.split("=") for kv in args.default_lr.split(","))}
    controller = {k: float(v) for k, v in (kv.split("=") for kv in args.controller.split(","))}
    torch.set_num_threads(args.threads)
    split = load_mnist_standard(args.data_dir)
    evaluated = "test"
    if args.validation:
        split, evaluated = validation_split(split, args.validation), "validation"
    print(f"{split.name}: {split.split}", flush=True)
    done = {_key(r) for r in read_rows(results)}
    for level in args.levels:
        for seed in args.seeds:
            for method in args.methods:
                lrs = args.lr or [chosen_lr(read_rows(results), method, level,
                                            defaults[method], args.epochs)]
                for lr in lrs:
                    key = (method, lr, evaluated, level, seed, args.epochs)
                    if key in done:
                        print(f"skip {key}: already in {results.name}", flush=True)
                        continue
                    row = run_one(split, method, lr, level, seed, args.epochs, evaluated,
                                  controller)
                    append_row(results, row)
                    done.add(key)
                    msg = (f"paper_mnist: {method} lr {lr:g} {evaluated} {100 * level:g} % "
                           f"seed {seed}, {args.epochs} epochs: "
                           f"{100 * row['accuracy']:.2f} % at "
                           f"{100 * row['connectivity']:.3f} % ({row['seconds_per_epoch']:.0f} "
                           f"s/epoch)")
                    print(msg, flush=True)
                    if args.commit:
                        write_table(results, Path(args.table_out))
                        commit([results, Path(args.table_out)], msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
