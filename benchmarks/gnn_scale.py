"""GNN editing at scale: the receptive-field editor against the full-graph editor on
generated graphs of 10⁴–10⁶ nodes.

Graphs: a stochastic block model (planted partition) built with torch: ``--classes``
blocks of random size, ``N · degree / 2`` undirected edges whose second end lies in the
first end's block with probability ``--homophily`` (else in another block, uniformly),
self-loops and duplicates dropped; features = block mean + Gaussian noise (``--features``
dims, ``--noise``); 2 % training, 2 % validation and 20 % test nodes at random.
Models: 2-layer GCN and GraphSAGE (32 hidden), trained full batch on a sparse CSR
adjacency (``--epochs`` Adam steps, lr 0.01).

Per size and model, ``--edits`` misclassified validation nodes (seed 42) are edited one
at a time, each by its own :func:`rewire.gnn.edit` call from the trained model (GRE+,
update projected, ``k`` = ``--k`` chunks of ``--anchor-sample`` training nodes, so every
edit takes its own anchors):

* ``receptive field``: every forward on the (L + 1)-hop subgraph of the nodes it needs
  (``EditConfig(subgraph=True)``), one :class:`~rewire.gnn.receptive.ReceptiveField`
  index built per graph (``setup s``);
* ``full graph``: every forward on the whole graph (``subgraph=False``), on the sizes up
  to ``--full-max``.

Columns: ``s/edit`` mean and max wall-clock seconds per edit (anchors included); ``peak
GB``: the process's peak resident memory during the edits (VmHWM, reset before them;
graph, model and index included), ``base GB`` the resident memory before them; SR: edited
nodes right on the whole graph after their edit; DD = (test accuracy before − after) ×
100, mean and max over edits; ``same pred``: nodes whose prediction after an edit differs
between the two editors, summed over edits (0 = the same predictions).

Usage::

    .venv/bin/python benchmarks/gnn_scale.py                       # 1e4, 1e5, 1e6
    .venv/bin/python benchmarks/gnn_scale.py --sizes 10000 --edits 5

Writes ``gnn_scale.csv`` and ``gnn_scale.md`` to ``--out`` (default
benchmarks/results/scale/).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys

if __name__ == "__main__":  # BLAS threads for numpy/scipy too (set before they load)
    from _threads import limit_blas_threads

    limit_blas_threads(sys.argv)
import gc
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch_geometric.data import Data
from torch_geometric.utils import to_torch_csr_tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewire.io import write_csv, write_text  # noqa: E402
from rewire.gnn.editor import EditConfig, edit, field_for, misclassified  # noqa: E402
from rewire.gnn.models import MODELS, predict, train_model  # noqa: E402
from torch_geometric.nn import GCNConv  # noqa: E402

COLUMNS = ("nodes", "edges", "model", "editor", "edits", "train_s", "test_acc", "s_per_edit", "max_s_per_edit", "cpu_s_per_edit",
           "setup_s", "base_gb", "peak_gb", "SR", "DD", "max_DD", "differing", "steps")


def sbm_graph(n: int, classes: int = 5, degree: float = 10.0, homophily: float = 0.6,
              features: int = 32, noise: float = 4.0, seed: int = 0) -> Data:
    """A planted-partition graph with ``n`` nodes and about ``n · degree`` directed edges
    (both directions of each undirected edge), no self-loops or duplicates; see the module
    docstring. Memory O(n · degree); no dense n × n step."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=gen)
    by_class = torch.argsort(y)
    size = torch.bincount(y, minlength=classes)
    offset = torch.cumsum(size, 0) - size
    m = int(n * degree / 2)
    src = torch.randint(n, (m,), generator=gen)
    same = torch.rand(m, generator=gen) < homophily
    other = (y[src] + torch.randint(1, classes, (m,), generator=gen)) % classes
    block = torch.where(same, y[src], other)
    pick = (torch.rand(m, generator=gen) * size[block]).long().clamp_max(size[block] - 1)
    dst = by_class[offset[block] + pick]
    del same, other, block, pick
    keep = src != dst
    src, dst = src[keep], dst[keep]
    key = torch.cat([src * n + dst, dst * n + src]).unique()  # sorted: grouped by source
    edge_index = torch.stack([key // n, key % n])
    del key, src, dst
    means = torch.randn(classes, features, generator=gen)
    x = means[y] + noise * torch.randn(n, features, generator=gen)
    order = torch.randperm(n, generator=gen)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    n_small = max(n // 50, 20)
    masks[0][order[:n_small]] = True
    masks[1][order[n_small:2 * n_small]] = True
    masks[2][order[2 * n_small:2 * n_small + n // 5]] = True
    return Data(x=x, edge_index=edge_index, y=y, train_mask=masks[0], val_mask=masks[1],
                test_mask=masks[2], num_nodes=n)


def train(arch: str, full: Data, features: int, classes: int, epochs: int, lr: float):
    """Train a 2-layer ``arch`` on ``full`` (sparse adjacency). GCN layers cache their
    normalised adjacency for the training run only (one graph, full batch); the cache is
    dropped and switched off afterwards, since edits run the model on subgraphs."""
    torch.manual_seed(0)
    model = MODELS[arch](features, classes)
    convs = [m for m in model.modules() if isinstance(m, GCNConv)]
    for conv in convs:
        conv.cached = True
    train_model(model, full, epochs=epochs, lr=lr, seed=0)
    for conv in convs:
        conv.cached = False
        conv._cached_edge_index = conv._cached_adj_t = None
    return model


def _peak_reset() -> bool:
    """Reset the peak resident set size (Linux ``clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _memory_gb(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (current) of this process in GB (10⁹ bytes)."""
    with open("/proc/self/status") as f:
        kb = int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))
    return kb * 1024 / 1e9


def run_editor(model, data, targets, config: EditConfig, field=None):
    """Edit each target alone (its own :func:`edit` call); returns the edited states,
    wall-clock and CPU seconds per edit, steps, base and peak memory (GB)."""
    gc.collect()
    base = _memory_gb("VmRSS")
    _peak_reset()
    states, seconds, cpu, steps = [], [], [], []
    for t in targets:
        start, cpu_start = time.perf_counter(), time.process_time()
        edited, record = edit(model, data, t.view(1), config=config, field=field)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        steps.append(record.steps[0])
        states.append(copy.deepcopy(edited.state_dict()))
    return states, seconds, cpu, steps, base, _memory_gb("VmHWM")


def evaluate(model, full, targets, states, acc0):
    """Predictions on the whole graph after each edit: (per-edit predictions, SR, DDs)."""
    preds, right, drops = [], 0, []
    work = copy.deepcopy(model)
    mask = full.test_mask
    for t, state in zip(targets, states):
        work.load_state_dict(state)
        pred = predict(work, full)
        preds.append(pred)
        right += int(pred[t] == full.y[t])
        drops.append(100 * (acc0 - float((pred[mask] == full.y[mask]).float().mean())))
    return preds, right / len(targets), drops


def table_markdown(rows) -> str:
    """Rows as a GitHub markdown table."""
    head = ("| nodes | edges | model | editor | edits | test acc | s/edit | max s/edit | CPU s/edit | setup s | "
            "base GB | peak GB | SR | DD | max DD | same pred | steps |")
    lines = [head, "|" + " --- |" * 17]
    for r in rows:
        diff = "" if r["differing"] is None else ("yes" if r["differing"] == 0
                                                   else f"no ({r['differing']} nodes)")
        lines.append(f"| {r['nodes']:.0e} | {r['edges']:.1e} | {r['model']} | {r['editor']} | "
                     f"{r['edits']} | "
                     f"{100 * r['test_acc']:.1f} | {r['s_per_edit']:.3f} | "
                     f"{r['max_s_per_edit']:.3f} | {r['cpu_s_per_edit']:.3f} | {r['setup_s']:.2f} | {r['base_gb']:.2f} | "
                     f"{r['peak_gb']:.2f} | {r['SR']:.2f} | {r['DD']:.3f} | {r['max_DD']:.3f} "
                     f"| {diff} | {r['steps']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=float, default=[1e4, 1e5, 1e6])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--edits", type=int, default=20, help="targets per size and model")
    p.add_argument("--k", type=int, default=32, help="anchor chunks K (default 32)")
    p.add_argument("--anchor-sample", type=int, default=128,
                   help="training nodes sampled for the anchors (default 128)")
    p.add_argument("--max-steps", type=int, default=EditConfig.max_steps)
    p.add_argument("--full-max", type=float, default=1e5,
                   help="largest size on which the full-graph editor also runs (1e5)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (30)")
    p.add_argument("--train-lr", type=float, default=0.05, help="training Adam lr (0.05)")
    p.add_argument("--full-edits", type=int, default=3,
                   help="edits of the full-graph editor: the first N targets (3)")
    p.add_argument("--degree", type=float, default=10.0)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--homophily", type=float, default=0.6)
    p.add_argument("--noise", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale"))
    args = p.parse_args(argv)
    if args.edits < 1 or args.k < 1 or args.anchor_sample < args.k:
        p.error("--edits and --k must be >= 1 and --anchor-sample >= --k")
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes:
        n = int(size)
        start = time.perf_counter()
        data = sbm_graph(n, args.classes, args.degree, args.homophily, args.features,
                         args.noise)
        adj = to_torch_csr_tensor(data.edge_index.flip(0), size=(n, n))  # rows = targets
        full = Data(x=data.x, edge_index=adj, y=data.y, train_mask=data.train_mask,
                    val_mask=data.val_mask, test_mask=data.test_mask, num_nodes=n)
        print(f"graph {n:.0e} nodes, {data.edge_index.shape[1]:.2e} edges, "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        for arch in args.models:
            start = time.perf_counter()
            model = train(arch, full, args.features, args.classes, args.epochs, args.train_lr)
            train_s = time.perf_counter() - start
            mask = data.test_mask
            acc0 = float((predict(model, full)[mask] == data.y[mask]).float().mean())
            targets = misclassified(model, full, args.edits, seed=42)
            print(f"  {arch}: trained {args.epochs} epochs in {train_s:.0f} s, test acc "
                  f"{100 * acc0:.1f} %, {targets.numel()} targets", flush=True)
            config = EditConfig(method="gre+", k=args.k, anchor_sample=args.anchor_sample,
                                max_steps=args.max_steps)
            start = time.perf_counter()
            field = field_for(model, data)
            setup = time.perf_counter() - start
            editors = [("receptive field", config, field, setup, targets)]
            if n <= args.full_max:
                editors.append(("full graph", replace(config, subgraph=False), None, 0.0,
                                targets[:args.full_edits]))
            preds = {}
            for name, cfg, fld, setup_s, nodes in editors:
                states, seconds, cpu, steps, base, peak = run_editor(model, data, nodes, cfg, fld)
                preds[name], sr, drops = evaluate(model, full, nodes, states, acc0)
                differing = None
                if name == "full graph":  # against the same edits of the other editor
                    differing = sum(int((a != b).sum()) for a, b in
                                    zip(preds["receptive field"], preds[name]))
                row = {"nodes": n, "edges": data.edge_index.shape[1], "model": arch,
                       "editor": name, "edits": len(nodes), "train_s": train_s, "test_acc": acc0,
                       "s_per_edit": sum(seconds) / len(seconds), "max_s_per_edit": max(seconds),
                       "cpu_s_per_edit": sum(cpu) / len(cpu),
                       "setup_s": setup_s, "base_gb": base, "peak_gb": peak, "SR": sr,
                       "DD": sum(drops) / len(drops), "max_DD": max(drops),
                       "differing": differing, "steps": sum(steps) / len(steps)}
                rows.append(row)
                print(f"    {name:15s} {row['s_per_edit']:.3f} s/edit (CPU {row['cpu_s_per_edit']:.3f}, max "
                      f"{row['max_s_per_edit']:.3f}), peak {peak:.2f} GB (base {base:.2f}), "
                      f"SR {sr:.2f}, DD {row['DD']:.3f} (max {row['max_DD']:.3f}), "
                      f"differing {differing}", flush=True)
            del field, editors
        del data, adj, full
        gc.collect()
    text = table_markdown(rows)
    print("\n" + text)
    out = Path(args.out)
    write_csv(out / "gnn_scale.csv", rows, COLUMNS)
    settings = (f"SBM: {args.classes} blocks, degree {args.degree:g}, homophily "
                f"{args.homophily:g}, {args.features} features (noise {args.noise:g}); "
                f"{args.epochs} training epochs; GRE+ (update), K={args.k} chunks of "
                f"{args.anchor_sample} sampled training nodes, max steps {args.max_steps}; "
                f"{args.edits} misclassified validation nodes (seed 42), one edit each "
                f"(full-graph editor: the first {args.full_edits}); {args.threads} CPU "
                f"thread(s); load average at the end {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} cores")
    write_text(out / "gnn_scale.md", f"# GNN editing at scale\n\n{settings}\n\n{text}")
    print(f"wrote {out / 'gnn_scale.csv'} and {out / 'gnn_scale.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
