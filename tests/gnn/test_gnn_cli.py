"""``python -m rewire.gnn``: train, edit, and exit code 2 on bad input."""

from __future__ import annotations

import json

import pytest

from rewire.gnn.__main__ import main
from rewire.gnn.models import load_checkpoint


# Tiny graphs: torch's thread pool costs more than it saves (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("gnn") / "toy.pt"
    assert main(["train", "--dataset", "toy", "--arch", "sage", "--epochs", "40",
                 "--out", str(path)]) == 0
    return path


def test_train_then_edit_writes_model_and_record(checkpoint, tmp_path, capsys):
    capsys.readouterr()
    out, rec = tmp_path / "edited.pt", tmp_path / "rec.json"
    assert main(["edit", str(checkpoint), "--misclassified", "3", "--max-steps", "100",
                 "--out", str(out), "--record", str(rec)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["success_rate"] == 1.0 and 1 <= len(summary["targets"]) <= 3
    record = json.loads(rec.read_text())
    assert record["record"]["config"]["method"] == "gre+"
    model, config, meta = load_checkpoint(out)
    assert config.arch == "sage" and meta["edited"]["targets"] == summary["targets"]


def test_train_egnn(tmp_path):
    assert main(["train", "--dataset", "toy", "--egnn", "--epochs", "20",
                 "--out", str(tmp_path / "e.pt")]) == 0
    model, config, _ = load_checkpoint(tmp_path / "e.pt")
    assert config.egnn and hasattr(model, "mlp")


@pytest.mark.parametrize("args, message", [
    (["--targets", "100000"], "must lie in"),
    (["--targets", "1", "--mode", "independent", "--out", "x.pt"], "independent mode"),
    (["--misclassified", "2", "--labels", "1"], "--labels needs --targets"),
    (["--targets", "1", "--dataset", "cora"], "data-root"),
    (["--targets", "1", "--k", "0"], "k must"),
])
def test_bad_input_exits_2_with_message(checkpoint, capsys, args, message, tmp_path):
    args = [a if a != "x.pt" else str(tmp_path / a) for a in args]
    assert main(["edit", str(checkpoint), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_missing_checkpoint_exits_2(tmp_path, capsys):
    assert main(["edit", str(tmp_path / "none.pt"), "--targets", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err
