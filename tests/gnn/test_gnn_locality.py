"""The locality restore of sequential edits (issue 25, :mod:`rewire.gnn.locality`): it pulls
the rest of the graph back to the original model's predictions, never undoes an edit, and
changes nothing outside sequential mode. Toy graphs only (about 10 s in all)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from rewire.gnn.anchors import editable_parameters
from rewire.gnn.config import EditConfig
from rewire.gnn.editor import edit
from rewire.gnn.locality import locality_nodes, restore
from rewire.gnn.models import SAGE, predict, train_model

from edit_fixtures import targets, toy, trained  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _log_probs(model, data):
    with torch.no_grad():
        return F.log_softmax(model.eval()(data.x, data.edge_index), dim=1)


def test_locality_nodes_leave_out_the_edited_and_sample_without_repeats():
    edited = torch.tensor([3, 7])
    every = locality_nodes(10, edited, None, 0)
    assert every.tolist() == [0, 1, 2, 4, 5, 6, 8, 9]
    some = locality_nodes(10, edited, 5, 1)
    assert some.numel() == 5 and some.unique().numel() == 5
    assert not set(some.tolist()) & {3, 7}


def test_restore_pulls_a_drifted_model_back_and_keeps_every_edited_node(trained, toy,
                                                                         targets):
    """After a plain sequential edit (no protection of the rest), a restore lowers the KL
    to the original model, flips fewer nodes away from it, and every edited node is still
    predicted as its label."""
    reference = _log_probs(trained, toy)
    config = EditConfig(method="gd", mode="sequential", max_steps=100)
    edited, record = edit(trained, toy, targets, config=config)
    done = torch.tensor([n for e in record.edits if e.success for n in e.nodes])
    assert done.numel() >= 4
    right = predict(edited, toy)[done] == toy.y[done]
    done, labels = done[right], toy.y[done][right]
    work = copy.deepcopy(edited).eval()
    before = int((predict(work, toy) != reference.argmax(1)).sum())
    kept, first, last = restore(work, editable_parameters(work), toy, reference, done,
                                labels, steps=30, lr=10.0)
    after = int((predict(work, toy) != reference.argmax(1)).sum())
    assert kept >= 1 and last < first
    assert after < before
    assert bool((predict(work, toy)[done] == labels).all())


def test_restore_without_steps_changes_nothing(trained, toy, targets):
    work = copy.deepcopy(trained).eval()
    state = copy.deepcopy(work.state_dict())
    out = restore(work, editable_parameters(work), toy, _log_probs(trained, toy), targets[:2],
                  toy.y[targets[:2]], steps=0, lr=10.0)
    assert out == (0, 0.0, 0.0)
    assert all(torch.equal(state[k], v) for k, v in work.state_dict().items())


def test_sequential_restore_keeps_more_of_the_graph_than_the_plain_editor(trained, toy,
                                                                          targets):
    """Same targets, same GRE+ protect edits: with the restore after each edit, fewer
    non-edited nodes leave the original model's prediction, and every edit is kept."""
    original = predict(trained, toy)
    plain_config = EditConfig(mode="sequential", k=4, max_steps=100)
    plain, _ = edit(trained, toy, targets, config=plain_config)
    local, record = edit(trained, toy, targets,
                         config=EditConfig(mode="sequential", k=4, max_steps=100,
                                           locality_steps=10, locality_lr=10.0))
    rest = torch.ones(toy.num_nodes, dtype=torch.bool)
    rest[targets] = False
    moved_plain = int((predict(plain, toy) != original)[rest].sum())
    moved_local = int((predict(local, toy) != original)[rest].sum())
    assert moved_local < moved_plain
    assert record.success_rate == 1.0 and record.final_correct == 1.0
    assert sum(e.restored for e in record.edits) > 0
    assert all(e.locality <= e.locality_before for e in record.edits)


@pytest.mark.parametrize("mode", ["independent", "batch"])
def test_locality_options_change_nothing_outside_sequential_mode(trained, toy, targets, mode):
    base = EditConfig(mode=mode, k=4, batch_size=4)
    a, rec_a = edit(trained, toy, targets, config=base)
    b, rec_b = edit(trained, toy, targets,
                    config=EditConfig(mode=mode, k=4, batch_size=4, locality_steps=10))
    assert [e.losses for e in rec_a.edits] == [e.losses for e in rec_b.edits]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    assert all(e.restored == 0 for e in rec_b.edits)


@pytest.mark.parametrize("field, value", [("locality_steps", -1), ("locality_steps", 1.5),
                                          ("locality_lr", 0.0), ("locality_sample", 0),
                                          ("lr_backtrack", 1)])
def test_bad_locality_settings_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        EditConfig(**{field: value})


def test_cli_sequential_locality_options_reach_the_editor(tmp_path, capsys):
    from rewire.gnn.__main__ import main
    import json

    ck = tmp_path / "toy.pt"
    assert main(["train", "--dataset", "toy", "--epochs", "40", "--out", str(ck)]) == 0
    rec = tmp_path / "rec.json"
    assert main(["edit", str(ck), "--misclassified", "4", "--mode", "sequential",
                 "--max-steps", "100", "--k", "4", "--locality-steps", "5",
                 "--locality-lr", "2", "--record", str(rec)]) == 0
    assert "| method | DD@1 |" in capsys.readouterr().err
    record = json.loads(rec.read_text())["record"]
    assert record["config"]["locality_steps"] == 5 and record["config"]["locality_lr"] == 2
    assert all("restored" in e for e in record["edits"])
    assert main(["edit", str(ck), "--targets", "1", "--locality-steps", "-1"]) == 2
    assert "locality_steps" in capsys.readouterr().err


def test_sage_project_first_gives_the_same_outputs_and_the_editor_sets_it_back(toy, targets):
    """SAGE's first layer aggregated after its linear maps (what the sequential editor
    with a restore runs) equals PyG's own forward to float rounding, gives the same
    predictions, and the edited model comes back with the flag as it was."""
    torch.manual_seed(0)
    sage = train_model(SAGE(16, 3), toy, epochs=8).eval()
    own = sage(toy.x, toy.edge_index)
    own_grad = torch.autograd.grad(own.logsumexp(1).sum(), sage.conv1.lin_l.weight)[0]
    sage.set_project_first(True)
    dense = sage(toy.x, toy.edge_index)  # first sight of toy.x: dense product
    sparse = sage(toy.x, toy.edge_index)  # seen again: its sparse copy
    grad = torch.autograd.grad(sparse.logsumexp(1).sum(), sage.conv1.lin_l.weight)[0]
    sage.set_project_first(False)
    for fast in (dense, sparse):
        assert torch.allclose(own, fast, atol=1e-6, rtol=1e-5)
        assert torch.equal(own.argmax(1), fast.argmax(1))
    assert torch.allclose(own_grad, grad, atol=1e-6, rtol=1e-5)
    edited, _ = edit(sage, toy, targets[:3], config=EditConfig(
        mode="sequential", k=4, max_steps=50, locality_steps=2, locality_lr=10.0))
    assert edited.project_first is False and sage.project_first is False


def test_lr_backtrack_changes_an_edit_only_after_its_target_loss_rose(trained, toy):
    """``lr_backtrack`` halves Adam's rate once a step raised the target loss: the losses
    are the same as without it up to that rise and differ after it. A hard edit (40 nodes
    moved to another class at once, lr 0.5) so that Adam overshoots."""
    nodes = torch.arange(40)
    labels = (toy.y[nodes] + 1) % 3
    settings = dict(method="gd", mode="batch", batch_size=40, lr=0.5, max_steps=15)
    _, plain = edit(trained, toy, nodes, labels, config=EditConfig(**settings))
    _, back = edit(trained, toy, nodes, labels,
                   config=EditConfig(**settings, lr_backtrack=True))
    a, b = plain.edits[0].losses, back.edits[0].losses
    rise = next(i for i in range(1, len(a)) if a[i] > a[i - 1])
    assert a[:rise + 1] == b[:rise + 1]
    assert a[rise + 1:] != b[rise + 1:]
