"""Sequential GNN editing, the SEED-GNN protocol (ICML 2024): test drawdown and success
rate after edits 1, 10, 25 and 50 of a sequence, max and mean drawdown over the sequence.

Protocol: as ``benchmarks/editing.py`` (Planetoid split, 2-layer GCN / GraphSAGE, 32
hidden, trained 200 epochs, seed 0; EGNN versions with ``--egnn``); targets: 50
misclassified validation nodes drawn with seed 42, edited one after another on the same
model (``mode="sequential"``). After edit t:

* ``DD@t`` = (test accuracy before any edit − after edit t) × 100;
* ``SR@t`` = fraction of the first t targets the model predicts right after edit t (edits
  undone by later ones count as failures; ``SR@50`` is the fraction of edited nodes still
  right after the last edit);
* ``own SR`` = edits whose own targets were right at their end / edits;
* ``max DD`` and ``mean DD`` over t = 1..50.

Methods: ``gd``; the paper's GRE+ (K=10, gradient projected); rewire's default GRE+
without protection of the edited nodes (``protect=False``: only the training anchors, as
before issue 16) and with it (``EditConfig(mode="sequential")``, the default: earlier
edited nodes join the constraints and are repaired if a step flips them).

Usage::

    .venv/bin/python benchmarks/gnn_sequential.py                  # Cora + CiteSeer, GCN + SAGE
    .venv/bin/python benchmarks/gnn_sequential.py --datasets cora --models gcn --egnn

Writes ``sequential.csv`` and ``sequential.md`` to ``--out`` (default
benchmarks/results/sequential/).
"""

from __future__ import annotations

import argparse
import csv
import io
import sys

if __name__ == "__main__":  # BLAS threads for numpy/scipy too (set before they load)
    from _threads import limit_blas_threads

    limit_blas_threads(sys.argv)
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewire.io import write_text  # noqa: E402
from rewire.gnn.data import load_planetoid  # noqa: E402
from rewire.gnn.editor import EditConfig, edit, misclassified  # noqa: E402
from editing import base_models  # noqa: E402  (benchmarks/editing.py, beside this file)
from rewire.gnn.models import MODELS, predict  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "planetoid"
#: label -> EditConfig fields (mode="sequential" added).
VARIANTS = {
    "gd": {"method": "gd"},
    "gre+ K=10 (gradient, paper)": {"method": "gre+", "k": 10, "project": "gradient",
                                    "protect": False},
    "gre+ default, no protect": {"protect": False},
    "gre+ default (protect)": {},
}
CHECKPOINTS = (1, 10, 25, 50)


def run_sequence(model, data, targets, config: EditConfig) -> dict:
    """Edit ``targets`` in sequence; per-edit DD and SR (see the module docstring)."""
    mask = data.test_mask
    acc0 = float((predict(model, data)[mask] == data.y[mask]).float().mean())
    dds, srs, done = [], [], []

    def on_edit(edited, outcome):
        done.extend(outcome.nodes)
        pred = predict(edited, data)
        dds.append(100 * (acc0 - float((pred[mask] == data.y[mask]).float().mean())))
        srs.append(float((pred[done] == data.y[done]).float().mean()))

    _, record = edit(model, data, targets, config=config, on_edit=on_edit)
    row = {"own_SR": record.success_rate, "max_DD": max(dds), "mean_DD": sum(dds) / len(dds),
           "s_per_edit": record.seconds_per_edit, "acc_before": acc0,
           "steps": sum(record.steps) / len(record.steps)}
    for t in CHECKPOINTS:
        if t <= len(dds):
            row[f"DD@{t}"], row[f"SR@{t}"] = dds[t - 1], srs[t - 1]
    return row


def table_markdown(rows) -> str:
    """Rows as a GitHub markdown table."""
    cols = [c for t in CHECKPOINTS for c in (f"DD@{t}", f"SR@{t}")]
    head = ("| dataset | model | method | " + " | ".join(cols)
            + " | max DD | mean DD | own SR | steps | s/edit |")
    lines = [head, "|" + " --- |" * (len(cols) + 8)]
    for r in rows:
        cells = [f"{r[c]:.2f}" if c in r else "" for c in cols]
        lines.append(f"| {r['dataset']} | {r['model']} | {r['method']} | " + " | ".join(cells)
                     + f" | {r['max_DD']:.2f} | {r['mean_DD']:.2f} | {r['own_SR']:.2f} | "
                     f"{r['steps']:.1f} | {r['s_per_edit']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(DEFAULT_DATA))
    p.add_argument("--datasets", nargs="+", default=["cora", "citeseer"],
                   choices=["cora", "citeseer"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--egnn", action="store_true", help="also the EGNN versions")
    p.add_argument("--egnn-only", action="store_true", help="only the EGNN versions")
    p.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--targets", type=int, default=50)
    p.add_argument("--seed", type=int, default=42, help="seed of the target draw (42)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sequential"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(tempfile.mkdtemp(prefix="rewire-sequential-"))
    rows = []
    for name in args.datasets:
        data = load_planetoid(name, args.data_root, cache)
        for model_name, model in base_models(data, args.models, args.egnn or args.egnn_only,
                                        args.epochs):
            if args.egnn_only and not model_name.startswith("egnn"):
                continue
            targets = misclassified(model, data, args.targets, args.seed)
            for label in args.methods:
                config = EditConfig(mode="sequential", **VARIANTS[label])
                start = time.perf_counter()
                row = {"dataset": name, "model": model_name, "method": label,
                       **run_sequence(model, data, targets, config)}
                rows.append(row)
                last = max(t for t in CHECKPOINTS if f"SR@{t}" in row)
                print(f"{name:8s} {model_name:9s} {label:28s} SR@{last} {row[f'SR@{last}']:.2f} "
                      f"mean DD {row['mean_DD']:5.2f} max DD {row['max_DD']:5.2f} own SR "
                      f"{row['own_SR']:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)
    text = table_markdown(rows)
    print("\n" + text)
    buf = io.StringIO()
    fields = ["dataset", "model", "method"] + [c for t in CHECKPOINTS for c in (f"DD@{t}", f"SR@{t}")] \
        + ["max_DD", "mean_DD", "own_SR", "steps", "s_per_edit", "acc_before"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    out = Path(args.out)
    write_text(out / "sequential.csv", buf.getvalue())
    settings = (f"{args.targets} misclassified validation nodes (seed {args.seed}) edited in "
                f"sequence; EditConfig defaults (GRE+ update projected, one anchor per "
                f"training node, lr 0.01, max steps 20) unless the method says otherwise; "
                f"{args.threads} CPU thread(s)")
    write_text(out / "sequential.md", f"# Sequential GNN editing (SEED-GNN protocol)\n\n"
                                      f"{settings}\n\n{text}")
    print(f"wrote {out / 'sequential.csv'} and {out / 'sequential.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
