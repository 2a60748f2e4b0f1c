"""GNN editing benchmark: success rate (SR), drawdown (DD) and time per edit of GD, GRE and
GRE+ (gradient projected, as in Jiang et al. NeurIPS 2024, and update projected, rewire's
default) on GCN, GraphSAGE and their EGNN versions, Cora and CiteSeer (Planetoid split).

Protocol (paper §5): 2-layer models, 32 hidden, dropout 0.1, trained full batch (Adam lr
0.01, weight decay 5e-4, 200 epochs, seed 0); targets: 50 misclassified validation nodes
drawn with seed 42 (per model); Adam lr 0.01, stop when right, at most ``--max-steps``
steps per edit (default 20, rewire's default; the paper uses 10: ``--max-steps 10``).
Method rows: ``gd``; the paper's GRE and GRE+ (K=10, gradient projected); GRE+ K=10 with
the Adam update projected; and rewire's default (update projected, one anchor per
training node).

Sequential rows use ``EditConfig``'s ``protect=True`` (issue 16: GRE/GRE+ keep the
earlier edited nodes in the QP and repair them); ``benchmarks/gnn_sequential.py`` reports
the SEED-GNN protocol with and without it.

* SR = targets whose edit succeeded / targets.
* DD = (test accuracy before − after) × 100: independent and batch mode average it over
  edits (each from the original model); sequential mode reports it for the model after all
  50 edits, and ``kept`` = targets still right at the end.
* s/edit = wall-clock seconds per edit (anchor gradients included), CPU; CPU s/edit = the
  process's CPU time per edit (what an idle machine's wall clock would show).

Usage::

    .venv/bin/python benchmarks/editing.py                      # everything, a few minutes
    .venv/bin/python benchmarks/editing.py --datasets cora --models gcn --modes independent

Writes ``editing.csv`` and ``editing.md`` to ``--out`` (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
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

from rewire.io import write_csv, write_text  # noqa: E402
from rewire.gnn.data import load_planetoid  # noqa: E402
from rewire.gnn.editor import MODES, EditConfig, edit, misclassified  # noqa: E402
from rewire.gnn.models import EGNN, MODELS, accuracy, train_model  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "planetoid"
#: Method variants: label -> EditConfig fields ("K" stands for --k, the paper-style K).
#: The last is rewire's default (EditConfig()).
VARIANTS = {
    "gd": {"method": "gd"},
    "gre (gradient)": {"method": "gre", "project": "gradient"},
    "gre+ K (gradient)": {"method": "gre+", "project": "gradient", "k": "K"},
    "gre+ K (update)": {"method": "gre+", "project": "update", "k": "K"},
    "gre+ default": {},
}
COLUMNS = ("dataset", "model", "mode", "method", "SR", "DD", "kept", "steps", "s_per_edit",
           "cpu_s_per_edit", "acc_before")


def base_models(data, archs, egnn: bool, epochs: int):
    """Train each GNN of ``archs`` (and its EGNN) on ``data``; yields (name, model)."""
    for arch in archs:
        torch.manual_seed(0)
        gnn = train_model(MODELS[arch](data.num_features, int(data.y.max()) + 1), data,
                          epochs=epochs, seed=0)
        yield arch, gnn
        if egnn:
            torch.manual_seed(0)
            wrapped = EGNN(gnn, data.num_features, int(data.y.max()) + 1)
            yield f"egnn-{arch}", train_model(wrapped, data, epochs=100, seed=0)


def run_one(model, data, targets, config: EditConfig, acc0: float) -> dict:
    """Edit ``targets`` with ``config``; SR, DD, kept, mean steps and seconds per edit."""
    drops = []

    def on_edit(edited, outcome):
        if config.mode != "sequential":
            drops.append(acc0 - accuracy(edited, data))

    edited, record = edit(model, data, targets, config=config, on_edit=on_edit)
    if config.mode == "sequential":
        drops.append(acc0 - accuracy(edited, data))
    steps = record.steps
    return {"SR": record.success_rate, "DD": 100 * sum(drops) / len(drops),
            "kept": record.final_correct if record.final_correct is not None else float("nan"),
            "steps": sum(steps) / len(steps), "s_per_edit": record.seconds_per_edit,
            "cpu_s_per_edit": record.cpu_seconds_per_edit}


def table_markdown(rows) -> str:
    """Rows as a GitHub markdown table."""
    head = ("| dataset | model | mode | method | SR | DD | kept | steps | s/edit | CPU s/edit "
            "| test acc |")
    lines = [head, "|" + " --- |" * 11]
    for r in rows:
        kept = "" if r["kept"] != r["kept"] else f"{r['kept']:.2f}"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['mode']} | {r['method']} | "
                     f"{r['SR']:.2f} | {r['DD']:.2f} | {kept} | {r['steps']:.1f} | "
                     f"{r['s_per_edit']:.3f} | {r['cpu_s_per_edit']:.3f} | "
                     f"{100 * r['acc_before']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(DEFAULT_DATA),
                   help="folder holding Cora/raw and CiteSeer/raw (default ../shared/...)")
    p.add_argument("--datasets", nargs="+", default=["cora", "citeseer"],
                   choices=["cora", "citeseer"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--no-egnn", action="store_true", help="skip the EGNN versions")
    p.add_argument("--egnn-only", action="store_true", help="only the EGNN versions")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--targets", type=int, default=50, help="targets per model (default 50)")
    p.add_argument("--seed", type=int, default=42, help="seed of the target draw (42)")
    p.add_argument("--k", type=int, default=10,
                   help="K of the paper-style GRE+ rows (default 10); the default row uses "
                        "one anchor per training node")
    p.add_argument("--lam", type=float, default=EditConfig.lam, help="GRE+ ridge λ")
    p.add_argument("--lr", type=float, default=EditConfig.lr, help="edit Adam lr")
    p.add_argument("--max-steps", type=int, default=EditConfig.max_steps)
    p.add_argument("--batch-size", type=int, default=EditConfig.batch_size)
    p.add_argument("--epochs", type=int, default=200, help="base training epochs")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(tempfile.mkdtemp(prefix="rewire-editing-"))
    rows = []
    for name in args.datasets:
        data = load_planetoid(name, args.data_root, cache)
        for model_name, model in base_models(data, args.models, not args.no_egnn, args.epochs):
            if args.egnn_only and not model_name.startswith("egnn"):
                continue
            acc0 = accuracy(model, data)
            targets = misclassified(model, data, args.targets, args.seed)
            for mode in args.modes:
                for label in args.methods:
                    fields = {f: (args.k if v == "K" else v) for f, v in VARIANTS[label].items()}
                    config = EditConfig(mode=mode, lam=args.lam, lr=args.lr,
                                        max_steps=args.max_steps, batch_size=args.batch_size,
                                        **fields)
                    label = label.replace(" K ", f" K={args.k} ")
                    start = time.perf_counter()
                    row = {"dataset": name, "model": model_name, "mode": mode, "method": label,
                           "acc_before": acc0, **run_one(model, data, targets, config, acc0)}
                    rows.append(row)
                    print(f"{name:8s} {model_name:9s} {mode:11s} {label:16s} SR {row['SR']:.2f} "
                          f"DD {row['DD']:6.2f} kept {row['kept']:.2f} steps {row['steps']:4.1f} "
                          f"{row['s_per_edit']:.3f} s/edit ({time.perf_counter() - start:.0f} s)",
                          flush=True)
    text = table_markdown(rows)
    print("\n" + text)
    out = Path(args.out)
    write_csv(out / "editing.csv", rows, COLUMNS)
    settings = (f"paper-style K={args.k}, default K = one per training node, λ={args.lam:g}, "
                f"lr={args.lr:g}, max steps={args.max_steps}, batch={args.batch_size}, "
                f"{args.targets} targets (seed {args.seed}), {args.threads} CPU thread(s)")
    write_text(out / "editing.md", f"# GNN editing benchmark\n\n{settings}\n\n{text}")
    print(f"wrote {out / 'editing.csv'} and {out / 'editing.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
