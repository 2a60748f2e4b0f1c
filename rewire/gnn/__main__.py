"""``python -m rewire.gnn``: train a GNN node classifier and edit a saved one (GD, GRE, GRE+).

Examples::

    python -m rewire.gnn train --dataset cora --data-root ../shared/datasets/planetoid \\
        --arch gcn --out build/gcn_cora.pt
    python -m rewire.gnn edit build/gcn_cora.pt --data-root ../shared/datasets/planetoid \\
        --misclassified 20 --mode sequential --out build/gcn_cora_edited.pt
    python -m rewire.gnn edit build/gcn_cora.pt --data-root ../shared/datasets/planetoid \\
        --targets 1701 2045 --labels 3 3 --method gre+ --k 10 --project update \\
        --out build/edited.pt --record build/record.json
    python -m rewire.gnn train --dataset toy --arch sage --egnn --out build/toy.pt

``edit --mode sequential`` also prints the SEED-GNN table of the sequence to stderr (DD and
SR after edits 1, 10, 25, 50, max and mean DD, kept, own SR, CPU s per edit; the JSON on
stdout holds the same figures under ``sequence``); ``--no-protect`` and ``--max-anchors``
set the protection of earlier edits, ``--locality-steps`` (``--locality-lr``,
``--locality-sample``, ``--locality-extra``, ``--locality-rise``, ``--locality-every``) the
locality restore after each edit (:mod:`rewire.gnn.locality`).

Exit codes: 0 success, 2 bad input or out of memory (one line; ``python -m rewire.gnn``
then ends at once), 130 on Ctrl-C (one line; no file is left half written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import torch

from rewire.io import write_text
from rewire.gnn.data import DATASETS, GraphDataError, load_graph
from rewire.gnn.editor import METHODS, MODES, PROJECTIONS, EditConfig, edit, misclassified
from rewire.gnn.models import (EGNN, MAX_PARAMETERS, MODELS, ModelConfig, accuracy,
                               build_model, load_checkpoint, save_checkpoint, train_model)
from rewire.gnn.sequence import run_sequence, table_markdown

USER_ERRORS = (GraphDataError, ValueError, OSError)
#: Upper bounds of the count options, each far above what the paper's protocol uses (hidden
#: 32, 200 epochs, 50 targets, 1,000 editing steps); above them a run would take hours or
#: the model gigabytes, so the value is more likely a typo than a wish.
BOUNDS = {"hidden": 1 << 16, "epochs": 100_000, "misclassified": 1 << 20, "k": 1 << 20,
          "max_steps": 1_000_000, "batch_size": 1 << 20, "max_anchors": 1 << 20}


def _int(text: str) -> int:
    """An integer option that fits torch's int64 (a larger one is a usage error, exit 2,
    never torch's 'Overflow when unpacking long' later)."""
    value = int(text)
    if not -(1 << 63) <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"{text}: outside the 64-bit integer range")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line parser (``train`` and ``edit`` sub-commands)."""
    p = argparse.ArgumentParser(prog="python -m rewire.gnn", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a GCN / GraphSAGE (optionally EGNN) and save it")
    e = sub.add_parser("edit", help="edit a saved model so that target nodes are right")
    for q in (t, e):
        q.add_argument("--data-root", help="folder holding Cora/raw, CiteSeer/raw "
                       "(e.g. ../shared/datasets/planetoid); not needed for toy")
        q.add_argument("--seed", type=_int, default=None,
                       help="train: init seed (0); edit: target draw seed (42)")
    t.add_argument("--dataset", choices=DATASETS, default="toy", help="graph (default toy)")
    t.add_argument("--arch", choices=sorted(MODELS), default="gcn", help="GNN (default gcn)")
    t.add_argument("--egnn", action="store_true", help="stitch a peer MLP (EGNN)")
    t.add_argument("--hidden", type=_int, default=32, help="hidden units (32)")
    t.add_argument("--dropout", type=float, default=0.1, help="dropout (0.1)")
    t.add_argument("--epochs", type=_int, default=200, help="epochs (200)")
    t.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    e.add_argument("checkpoint", help="a checkpoint written by `train`")
    e.add_argument("--dataset", choices=DATASETS, help="graph (default: the checkpoint's)")
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--targets", type=_int, nargs="+", help="node indices to fix")
    who.add_argument("--misclassified", type=_int, metavar="N",
                     help="fix N misclassified validation nodes drawn with --seed")
    e.add_argument("--labels", type=_int, nargs="+",
                   help="correct classes of --targets (default: the graph's labels)")
    e.add_argument("--method", choices=METHODS, default=EditConfig.method)
    e.add_argument("--mode", choices=MODES, default="batch",
                   help="batch (default: one edit of all targets), sequential or independent "
                        "(record only: each target from the original model)")
    e.add_argument("--project", choices=PROJECTIONS, default=EditConfig.project,
                   help="project Adam's update (default) or the gradient (paper)")
    e.add_argument("--k", type=_int, default=EditConfig.k,
                   help="GRE+ anchor chunks K (default: one per training node)")
    e.add_argument("--lam", type=float, default=EditConfig.lam, help="GRE+ ridge λ")
    e.add_argument("--lr", type=float, default=EditConfig.lr, help="Adam lr (0.01)")
    e.add_argument("--max-steps", type=_int, default=EditConfig.max_steps)
    e.add_argument("--batch-size", type=_int, help="batch mode: targets per edit (all)")
    q = e.add_argument_group("sequential mode (each edit on the model the last one left)")
    q.add_argument("--no-protect", dest="protect", action="store_false",
                   help="GRE/GRE+: do not keep earlier edited nodes as QP constraints")
    q.add_argument("--max-anchors", type=_int, default=EditConfig.max_anchors,
                   help=f"most QP rows: training chunks plus edited nodes "
                        f"({EditConfig.max_anchors})")
    q.add_argument("--locality-steps", type=_int, default=EditConfig.locality_steps,
                   help="after each edit, at most this many steps pulling the other nodes "
                        "back to the original model's predictions, every edit kept (0: off)")
    q.add_argument("--locality-lr", type=float, default=EditConfig.locality_lr,
                   help=f"first step size of those steps ({EditConfig.locality_lr:g})")
    q.add_argument("--locality-sample", type=_int, default=None,
                   help="locality nodes per restore (default: every node not edited)")
    q.add_argument("--locality-extra", type=_int, default=EditConfig.locality_extra,
                   help="at most this many restore steps more while its KL is above "
                        "--locality-rise times its level before the edit (0: off)")
    q.add_argument("--locality-rise", type=float, default=EditConfig.locality_rise,
                   help=f"that factor ({EditConfig.locality_rise:g})")
    q.add_argument("--locality-every", type=_int, default=EditConfig.locality_every,
                   help="a restore inside an edit after every this many of its steps "
                        "(0: off)")
    e.add_argument("--out", help="edited checkpoint to write (sequential / batch mode)")
    e.add_argument("--record", help="JSON file for the edit record")
    return p


def _check_path(option: str, value: str | None, output: bool = False) -> None:
    if value is None:
        return
    if not value.strip() or "\x00" in value:
        raise ValueError(f"{option}: {value!r} is not a path; give a file name")
    if output:
        if os.path.isdir(value) or value.endswith(os.sep):
            raise ValueError(f"{option} {value}: is a folder; give a file name, e.g. "
                             f"{os.path.join(value, 'model.pt')}")
        if os.path.islink(value) and not os.path.exists(value):
            raise ValueError(f"{option} {value}: is a dangling symbolic link; remove it or "
                             f"give another file name")


def _check_args(args) -> None:
    """Refuse bad option values before any graph is read or model trained."""
    for name, hi in BOUNDS.items():
        value = getattr(args, name, None)
        if value is not None and not 1 <= value <= hi:
            raise ValueError(f"--{name.replace('_', '-')} must be in [1, {hi}], got {value}")
    for name in ("dropout", "lam", "lr"):
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number, got {value}")
    if getattr(args, "dropout", None) is not None and not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if getattr(args, "lr", None) is not None and not 0 < args.lr <= 10:
        raise ValueError(f"--lr must be in (0, 10], got {args.lr}")
    _check_path("--data-root", args.data_root)
    _check_path("--out", args.out, output=True)
    _check_path("--record", getattr(args, "record", None), output=True)
    if args.command == "edit":
        _check_path("checkpoint", args.checkpoint)
        if args.targets is not None and len(args.targets) > BOUNDS["batch_size"]:
            raise ValueError(f"--targets: at most {BOUNDS['batch_size']} nodes")
        if args.targets is not None and any(not 0 <= t < 1 << 62 for t in args.targets):
            raise ValueError("--targets: node indices are >= 0 and below the graph's node "
                             "count")
        if args.labels is not None and args.targets is not None \
                and len(args.labels) != len(args.targets):
            raise ValueError(f"--labels: give one label per target ({len(args.targets)}), "
                             f"got {len(args.labels)}")
        if args.labels is not None and min(args.labels) < 0:
            raise ValueError("--labels: classes are numbered from 0")


def _train(args) -> dict:
    data = load_graph(args.dataset, args.data_root, seed=0)
    seed = 0 if args.seed is None else args.seed
    classes = int(data.y.max()) + 1
    config = ModelConfig(args.arch, data.num_features, classes, args.hidden, args.dropout,
                         egnn=args.egnn)
    params = (data.num_features + classes) * args.hidden * (4 if args.egnn else 2)
    if params > MAX_PARAMETERS:
        raise ValueError(f"--hidden {args.hidden}: about {params:,} parameters on "
                         f"{args.dataset}, more than {MAX_PARAMETERS:,}; use a smaller --hidden")
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    torch.manual_seed(seed)
    model = build_model(config)
    gnn = model.gnn if isinstance(model, EGNN) else model
    for p_ in gnn.parameters():
        p_.requires_grad_(True)
    train_model(gnn, data, epochs=args.epochs, seed=seed)
    if isinstance(model, EGNN):
        for p_ in gnn.parameters():
            p_.requires_grad_(False)
        train_model(model, data, epochs=100, seed=seed)
    acc = accuracy(model, data)
    save_checkpoint(model, config, args.out, meta={"dataset": args.dataset, "test_acc": acc})
    return {"checkpoint": str(args.out), "dataset": args.dataset, "test_acc": acc}


def _edit(args) -> dict:
    model, config, meta = load_checkpoint(args.checkpoint)
    name = args.dataset or meta.get("dataset")
    if name is None:
        raise ValueError("--dataset: the checkpoint does not name its graph; pass --dataset")
    data = load_graph(name, args.data_root, seed=0)
    if data.num_features != config.in_channels:
        raise ValueError(f"--dataset {name}: {data.num_features} features per node, but the "
                         f"checkpoint expects {config.in_channels}; pass the graph it was "
                         f"trained on")
    if args.out and args.mode == "independent":
        raise ValueError("--out: independent mode edits each target from the original model "
                         "and yields no single edited model; use --mode batch or sequential")
    if args.labels is not None and args.targets is None:
        raise ValueError("--labels needs --targets")
    if args.labels is not None and max(args.labels) >= config.out_channels:
        raise ValueError(f"--labels: the model has {config.out_channels} classes "
                         f"(0..{config.out_channels - 1}), got {max(args.labels)}")
    if args.misclassified is not None:
        targets = misclassified(model, data, args.misclassified,
                                42 if args.seed is None else args.seed)
    else:
        targets = torch.tensor(args.targets)
    n = targets.numel()
    sequential = args.mode == "sequential"
    edit_config = EditConfig(method=args.method, mode=args.mode, k=args.k, lam=args.lam,
                             project=args.project, lr=args.lr, max_steps=args.max_steps,
                             batch_size=args.batch_size or n, protect=args.protect,
                             max_anchors=args.max_anchors,
                             locality_steps=args.locality_steps,
                             locality_lr=args.locality_lr,
                             locality_sample=args.locality_sample,
                             locality_extra=args.locality_extra,
                             locality_rise=args.locality_rise,
                             locality_every=args.locality_every)
    before = accuracy(model, data)
    labels = None if args.labels is None else torch.tensor(args.labels)
    if sequential:
        edited, row, record = run_sequence(model, data, targets, edit_config, labels)
        print(table_markdown([{"method": edit_config.label, **row}], ("method",)),
              file=sys.stderr, end="")
    else:
        edited, record = edit(model, data, targets, args.labels, edit_config)
    summary = {"targets": targets.tolist(), "method": edit_config.label, "mode": args.mode,
               "success_rate": record.success_rate, "steps": record.steps,
               "seconds_per_edit": record.seconds_per_edit,
               "cpu_seconds_per_edit": record.cpu_seconds_per_edit, "test_acc_before": before}
    if sequential:
        summary["sequence"] = row
    if args.mode != "independent":
        summary["test_acc_after"] = accuracy(edited, data)
        summary["drawdown"] = 100 * (before - summary["test_acc_after"])
    if args.out:
        save_checkpoint(edited, config, args.out, meta={**meta, "edited": summary})
        summary["checkpoint"] = str(args.out)
    if args.record:
        write_text(args.record, json.dumps({**summary, "record": record.to_dict()}, indent=1))
    return summary


def main(argv=None, hard_exit: bool = False) -> int:
    """Run the CLI; returns the exit code (2 on bad input, with the reason on stderr).

    ``hard_exit`` (``python -m rewire.gnn``): after a MemoryError, end the process at once
    with ``os._exit(2)``, so that it does not run on for minutes freeing what it built."""
    args = parser().parse_args(argv)
    try:
        _check_args(args)
        summary = _train(args) if args.command == "train" else _edit(args)
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; use a smaller --hidden or graph", file=sys.stderr)
        if hard_exit:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(hard_exit=True))
