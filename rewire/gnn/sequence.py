"""Measure a sequence of edits with the checkpoints of the SEED-GNN protocol of sequential
GNN editing: after edit t of a sequence, the test drawdown ``DD@t`` (as defined by Jiang
et al., NeurIPS 2024, arXiv 2410.15556, §5) and the fraction of the first t targets still
right ``SR@t``, at t = 1, 10, 25, 50, and the maximum and mean drawdown over every t.

One *draw* is one sequence of targets (e.g. 50 misclassified validation nodes drawn with a
seed, :func:`rewire.gnn.editor.misclassified`). :func:`run_sequence` measures one draw;
:func:`summarize` gives the mean and the worst of several draws; :func:`table_markdown`
writes both as the table that ``benchmarks/gnn_sequential.py`` and ``python -m rewire.gnn
edit --mode sequential`` print.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn
from torch_geometric.data import Data

from rewire.gnn.config import EditConfig
from rewire.gnn.editor import edit
from rewire.gnn.models import predict

__all__ = ["CHECKPOINTS", "COLUMNS", "run_sequence", "summarize", "table_markdown"]

#: Edits after which SEED-GNN reports drawdown and success rate.
CHECKPOINTS = (1, 10, 25, 50)
#: Per-draw figures, in table order (DD in points of test accuracy, CPU in seconds).
COLUMNS = (*(c for t in CHECKPOINTS for c in (f"DD@{t}", f"SR@{t}")), "max_DD", "mean_DD",
           "kept", "own_SR", "cpu_s_per_edit")
#: For each figure, the worse direction: the worst draw is the max of these, min of others.
HIGHER_IS_WORSE = {"max_DD", "mean_DD", "cpu_s_per_edit",
                   *(f"DD@{t}" for t in CHECKPOINTS)}


def run_sequence(model: nn.Module, data: Data, targets: torch.Tensor,
                 config: EditConfig, labels: torch.Tensor | None = None):
    """Edit ``targets`` (T,) one after another (``config`` in sequential mode) and measure.

    Returns ``(edited, row, record)``: the model after the last edit; ``row`` with
    ``DD@t``/``SR@t`` for each checkpoint t ≤ T, ``max_DD`` and ``mean_DD`` over t = 1..T
    (DD = (test accuracy before − after edit t) × 100, ``data.test_mask``), ``kept``
    (fraction of all targets right after the last edit), ``own_SR`` (edits whose own
    target was right at their end / edits) and ``cpu_s_per_edit`` (the editor's CPU time,
    without the measuring); ``record`` the :class:`~rewire.gnn.config.EditRecord`.

    Raises:
        ValueError: as :func:`rewire.gnn.editor.edit`.
    """
    config = replace(config, mode="sequential")
    mask = data.test_mask
    truth = data.y.clone()
    if labels is not None:
        truth[torch.as_tensor(targets)] = torch.as_tensor(labels)
    acc0 = float((predict(model, data)[mask] == data.y[mask]).float().mean())
    dds, srs, done = [], [], []

    def on_edit(edited, outcome):
        done.extend(outcome.nodes)
        pred = predict(edited, data)
        dds.append(100 * (acc0 - float((pred[mask] == data.y[mask]).float().mean())))
        srs.append(float((pred[done] == truth[done]).float().mean()))

    edited, record = edit(model, data, targets, labels, config, on_edit=on_edit)
    row = {"max_DD": max(dds), "mean_DD": sum(dds) / len(dds), "kept": srs[-1],
           "own_SR": record.success_rate, "cpu_s_per_edit": record.cpu_seconds_per_edit,
           "acc_before": acc0}
    for t in CHECKPOINTS:
        if t <= len(dds):
            row[f"DD@{t}"], row[f"SR@{t}"] = dds[t - 1], srs[t - 1]
    return edited, row, record


def summarize(rows: Sequence[dict]) -> tuple[dict, dict]:
    """``(mean, worst)`` over per-draw rows of :func:`run_sequence`: the mean of each
    figure, and each figure's worst value over the draws (highest DD and CPU time, lowest
    SR and kept; not one draw's row)."""
    mean, worst = {}, {}
    for col in COLUMNS:
        values = [r[col] for r in rows if col in r]
        if values:
            mean[col] = sum(values) / len(values)
            worst[col] = max(values) if col in HIGHER_IS_WORSE else min(values)
    return mean, worst


def table_markdown(rows: Sequence[dict], keys: Sequence[str]) -> str:
    """Rows as a GitHub markdown table: the ``keys`` columns (e.g. dataset, model, method,
    draw) and then :data:`COLUMNS`."""
    names = [*keys, *COLUMNS]
    lines = ["| " + " | ".join(names) + " |", "|" + " --- |" * len(names)]
    for r in rows:
        cells = [str(r.get(k, "")) for k in keys]
        cells += [f"{r[c]:.2f}" if c in r else "" for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
