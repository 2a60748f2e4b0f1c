"""The options of the sequential editor tried for issue 25's hardest draws (all default
off): a longer restore after an edit that moved the graph far (``locality_extra``,
``locality_rise``), restores inside a long edit (``locality_every``, ``restore(pending=)``)
and an edit margin (``margin``). Toy graphs only (about 5 s in all)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from rewire.gnn.anchors import editable_parameters
from rewire.gnn.config import EditConfig
from rewire.gnn.editor import _margins, edit
from rewire.gnn.locality import restore
from rewire.gnn.models import predict

from edit_fixtures import targets, toy, trained  # noqa: F401  (pytest fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _log_probs(model, data):
    with torch.no_grad():
        return F.log_softmax(model.eval()(data.x, data.edge_index), dim=1)


def _drifted(trained, toy, targets):
    """A model after plain GD edits (the rest of the graph moved), its edited nodes that
    are right, their labels and the original model's log-probabilities."""
    edited, record = edit(trained, toy, targets,
                          config=EditConfig(method="gd", mode="sequential", max_steps=100))
    done = torch.tensor([n for e in record.edits if e.success for n in e.nodes])
    right = predict(edited, toy)[done] == toy.y[done]
    return copy.deepcopy(edited).eval(), done[right], toy.y[done][right], \
        _log_probs(trained, toy)


def test_extra_restore_steps_run_only_while_the_loss_is_above_the_bound(trained, toy,
                                                                       targets):
    work, done, labels, reference = _drifted(trained, toy, targets)
    runs = {}
    for name, bound in (("never", float("inf")), ("always", 0.0)):
        model = copy.deepcopy(work)
        runs[name] = restore(model, editable_parameters(model), toy, reference, done,
                             labels, steps=2, lr=10.0, extra=20, bound=bound)
        assert bool((predict(model, toy)[done] == labels).all())
    plain = copy.deepcopy(work)
    assert runs["never"] == restore(plain, editable_parameters(plain), toy, reference, done,
                                    labels, steps=2, lr=10.0)
    assert runs["never"][0] <= 2 < runs["always"][0]
    assert runs["always"][2] < runs["never"][2]


def test_a_restore_inside_an_edit_keeps_the_pending_loss_and_every_edited_node(trained, toy,
                                                                              targets):
    work, done, labels, reference = _drifted(trained, toy, targets)
    edited, pending = done[:-2], (done[-2:], labels[-2:])  # held by their loss only
    with torch.no_grad():
        before = float(F.cross_entropy(work(toy.x, toy.edge_index)[pending[0]], pending[1]))
    kept, first, last = restore(work, editable_parameters(work), toy, reference, edited,
                                labels[:-2], steps=10, lr=10.0, pending=pending)
    with torch.no_grad():
        logits = work(toy.x, toy.edge_index)
    assert kept >= 1 and last < first
    assert float(F.cross_entropy(logits[pending[0]], pending[1])) <= before * 1.01
    assert bool((logits[edited].argmax(1) == labels[:-2]).all())


def test_an_edit_with_a_margin_goes_on_until_its_targets_lead_by_it(trained, toy, targets):
    config = dict(mode="independent", k=4, max_steps=200)
    model = copy.deepcopy(trained)
    _, plain = edit(model, toy, targets[:3], config=EditConfig(**config))
    edited, wide = edit(model, toy, targets[:3], config=EditConfig(**config, margin=1.0))
    for a, b in zip(plain.edits, wide.edits):
        assert b.losses[:len(a.losses)] == a.losses  # the same steps up to where a stopped
        assert b.success and b.steps >= a.steps
    with torch.no_grad():
        logits = edited(toy.x, toy.edge_index)[targets[2:3]]
    assert float(_margins(logits, toy.y[targets[2:3]]).min()) >= 1.0


def test_the_options_change_nothing_at_their_defaults_or_outside_sequential_mode(
        trained, toy, targets):
    options = dict(locality_extra=30, locality_every=5)
    for mode in ("independent", "batch"):
        a, rec_a = edit(trained, toy, targets, config=EditConfig(mode=mode, k=4, batch_size=4))
        b, rec_b = edit(trained, toy, targets, config=EditConfig(mode=mode, k=4, batch_size=4,
                                                                 **options))
        assert [e.losses for e in rec_a.edits] == [e.losses for e in rec_b.edits]
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                     b.state_dict().values()))
    # in sequential mode without a restore (locality_steps=0) they have nothing to act on
    seq = dict(mode="sequential", k=4, max_steps=60)
    a, rec_a = edit(trained, toy, targets[:4], config=EditConfig(**seq))
    b, rec_b = edit(trained, toy, targets[:4], config=EditConfig(**seq, **options))
    assert [e.losses for e in rec_a.edits] == [e.losses for e in rec_b.edits]


def test_restores_inside_long_edits_keep_every_edit(trained, toy, targets):
    config = EditConfig(mode="sequential", k=4, max_steps=100, lr=0.005, locality_steps=3,
                        locality_every=2, locality_extra=10)
    _, record = edit(trained, toy, targets[:6], config=config)
    assert record.success_rate == 1.0 and record.final_correct == 1.0


@pytest.mark.parametrize("field, value", [("locality_extra", -1), ("locality_extra", 2.5),
                                          ("locality_every", -1), ("locality_rise", 0.5),
                                          ("margin", -0.1), ("margin", float("inf"))])
def test_bad_option_values_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        EditConfig(**{field: value})


def test_cli_passes_the_restore_options_to_the_editor(tmp_path, capsys):
    import json

    from rewire.gnn.__main__ import main

    ck = tmp_path / "toy.pt"
    assert main(["train", "--dataset", "toy", "--epochs", "40", "--out", str(ck)]) == 0
    rec = tmp_path / "rec.json"
    assert main(["edit", str(ck), "--misclassified", "3", "--mode", "sequential",
                 "--max-steps", "100", "--k", "4", "--locality-steps", "3",
                 "--locality-extra", "7", "--locality-rise", "1.25", "--locality-every", "4",
                 "--record", str(rec)]) == 0
    config = json.loads(rec.read_text())["record"]["config"]
    assert (config["locality_extra"], config["locality_rise"], config["locality_every"]) == (
        7, 1.25, 4)
    capsys.readouterr()
    assert main(["edit", str(ck), "--targets", "1", "--locality-rise", "0.5"]) == 2
    assert "locality_rise" in capsys.readouterr().err
