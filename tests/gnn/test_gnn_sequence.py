"""Sequential editing (issue 25): the QP rows of every edit, the anchor views built once per
call, the SEED-GNN measurements of :mod:`rewire.gnn.sequence`, and the CLI's sequential
options and table."""

from __future__ import annotations

import json

import pytest

from rewire.gnn.__main__ import main
from rewire.gnn.config import EditConfig
from rewire.gnn.editor import edit
from rewire.gnn.models import predict
from rewire.gnn.sequence import CHECKPOINTS, COLUMNS, run_sequence, summarize, table_markdown

from edit_fixtures import targets, toy, trained  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("method", ["gre", "gre+"])
def test_every_qp_holds_the_training_anchors_and_every_earlier_edit(trained, toy, targets,
                                                                     method):
    """Sequential ``protect``: every edit succeeds, every edited node is right at the end,
    and each edit's QP has the training anchors plus one row per earlier edited node."""
    config = EditConfig(method=method, mode="sequential", k=4, max_steps=100)
    _, record = edit(trained, toy, targets, config=config)
    assert record.success_rate == 1.0 and record.final_correct == 1.0
    k = 1 if method == "gre" else 4
    assert [e.anchors for e in record.edits] == [k + i for i in range(len(targets))]


def test_anchor_views_are_built_once_per_call(trained, toy, targets, monkeypatch):
    """The receptive fields of the anchor chunks are cached for the call: re-taking the
    anchors before every edit builds no subgraph twice, and the edit is the same."""
    from rewire.gnn.anchors import anchor_chunks
    from rewire.gnn.receptive import ReceptiveField

    config = EditConfig(mode="sequential", k=4, max_steps=100)
    _, reference = edit(trained, toy, targets, config=config)
    built = []
    real = ReceptiveField.subgraph
    monkeypatch.setattr(ReceptiveField, "subgraph",
                        lambda self, nodes: built.append(tuple(nodes.tolist())) or
                        real(self, nodes))
    _, record = edit(trained, toy, targets, config=config)
    chunks = {tuple(c.tolist()) for c in anchor_chunks(toy, 4)}
    assert sorted(b for b in built if b in chunks) == sorted(chunks)  # once each
    assert [e.losses for e in record.edits] == [e.losses for e in reference.edits]


def test_run_sequence_measures_the_checkpoints(trained, toy, targets):
    config = EditConfig(mode="sequential", k=4, max_steps=100)
    edited, row, record = run_sequence(trained, toy, targets, config)
    n = targets.numel()
    assert len(record.edits) == n and row["own_SR"] == record.success_rate
    assert [t for t in CHECKPOINTS if f"DD@{t}" in row] == [t for t in CHECKPOINTS if t <= n]
    acc0 = float((predict(trained, toy)[toy.test_mask] == toy.y[toy.test_mask]).float().mean())
    acc1 = float((predict(edited, toy)[toy.test_mask] == toy.y[toy.test_mask]).float().mean())
    assert row["max_DD"] >= row["mean_DD"] - 1e-9
    assert row["max_DD"] >= 100 * (acc0 - acc1) - 1e-9
    assert row["kept"] == float((predict(edited, toy)[targets] == toy.y[targets]).float().mean())
    assert row["cpu_s_per_edit"] > 0


def test_summarize_takes_the_worst_of_each_column():
    rows = [{c: 1.0 for c in COLUMNS}, {c: 2.0 for c in COLUMNS}]
    mean, worst = summarize(rows)
    assert mean["max_DD"] == 1.5 and worst["max_DD"] == 2.0 and worst["kept"] == 1.0
    assert worst["own_SR"] == 1.0 and worst["cpu_s_per_edit"] == 2.0
    text = table_markdown([{"draw": "worst", **worst}], ("draw",))
    assert text.count("\n") == 3 and "| worst | " in text and "max_DD" in text


def test_cli_sequential_prints_the_table(tmp_path, capsys):
    ck = tmp_path / "toy.pt"
    assert main(["train", "--dataset", "toy", "--epochs", "40", "--out", str(ck)]) == 0
    capsys.readouterr()
    assert main(["edit", str(ck), "--misclassified", "4", "--mode", "sequential",
                 "--max-steps", "100", "--k", "4", "--max-anchors", "40",
                 "--out", str(tmp_path / "e.pt")]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert summary["sequence"]["own_SR"] == summary["success_rate"]
    assert "| method | DD@1 | SR@1 |" in out.err and "max_DD" in out.err
    assert main(["edit", str(ck), "--targets", "1", "--max-anchors", "0"]) == 2
    assert "--max-anchors" in capsys.readouterr().err
    assert main(["edit", str(ck), "--misclassified", "3", "--mode", "sequential",
                 "--no-protect", "--k", "4", "--max-steps", "100"]) == 0
    assert "| method |" in capsys.readouterr().err

