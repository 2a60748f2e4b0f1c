"""rewire.gnn at scale and over time: the receptive-field index and editor (equal to the
full-graph editor), bounded anchors, and sequential edits that stay fixed (issue 16)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.utils import k_hop_subgraph

from rewire.gnn.data import toy_graph
from rewire.gnn.editor import EditConfig, anchor_chunks, edit, field_for
from rewire.gnn.models import EGNN, GCN, SAGE, predict, train_model
from rewire.gnn.receptive import ReceptiveField

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def toy():
    return toy_graph(nodes=150, seed=5)


@pytest.fixture(scope="module", params=[GCN, SAGE], ids=["gcn", "sage"])
def trained(request, toy):
    torch.manual_seed(0)
    return train_model(request.param(16, 3), toy, epochs=40)


def _wrong(model, data, n):
    return (predict(model, data) != data.y).nonzero().flatten()[:n]


def _requests(model, data, n):
    """``n`` test nodes and a label each that the model does not predict (edit requests
    that move right predictions: harder than fixing wrong ones, and as many as needed)."""
    nodes = data.test_mask.nonzero().flatten()[:n]
    return nodes, (predict(model, data)[nodes] + 1) % 3


def test_receptive_field_matches_k_hop_subgraph_on_a_directed_graph():
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, 60, (2, 150), generator=gen)  # directed, with repeats
    field = ReceptiveField(edge_index, 60, hops=2)
    for nodes in (torch.tensor([3]), torch.tensor([5, 17, 40]), torch.tensor([59, 0])):
        subset, sub_ei, index = field.subgraph(nodes)
        ref_subset, ref_ei, ref_index, _ = k_hop_subgraph(nodes, 2, edge_index,
                                                          relabel_nodes=True, num_nodes=60)
        assert torch.equal(subset, ref_subset) and torch.equal(index, ref_index)
        assert torch.equal(sub_ei, ref_ei)  # same edges, same order


@pytest.mark.parametrize("bad, match", [
    (dict(edge_index=torch.zeros(3, 4, dtype=torch.long)), "shape"),
    (dict(edge_index=torch.tensor([[0], [9]])), "outside"),
    (dict(hops=-1), "hops")])
def test_receptive_field_refuses_bad_input(bad, match):
    args = dict(edge_index=torch.tensor([[0, 1], [1, 0]]), num_nodes=2, hops=1) | bad
    with pytest.raises(ValueError, match=match):
        ReceptiveField(**args)


@pytest.mark.parametrize("mode", ["independent", "sequential", "batch"])
def test_receptive_field_editor_equals_full_graph_editor(toy, trained, mode):
    """Same anchors, same steps: the edited models predict every node alike (and the
    check compares something: the edits changed predictions)."""
    targets = _wrong(trained, toy, 4)
    config = EditConfig(mode=mode, k=6, anchor_sample=20, batch_size=2, max_steps=40)
    outs = {}
    for subgraph in (True, False):
        seen = []
        edited, rec = edit(trained, toy, targets, config=EditConfig(
            **{**config.__dict__, "subgraph": subgraph}),
            on_edit=lambda m, o: seen.append(predict(m, toy)))
        outs[subgraph] = (seen, rec)
    (rf, rec_rf), (full, rec_full) = outs[True], outs[False]
    assert rec_rf.steps == rec_full.steps and rec_rf.success_rate == 1.0
    for a, b in zip(rf, full):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, predict(trained, toy)) for a in rf)


def test_a_shared_field_is_checked_and_gives_the_same_edit(toy, trained):
    targets = _wrong(trained, toy, 2)
    field = field_for(trained, toy)
    config = EditConfig(k=4)
    a, _ = edit(trained, toy, targets, config=config, field=field)
    b, _ = edit(trained, toy, targets, config=config)
    assert torch.equal(predict(a, toy), predict(b, toy))
    with pytest.raises(ValueError, match="field"):
        edit(trained, toy, targets, config=config, field=ReceptiveField(toy.edge_index,
                                                                        toy.num_nodes, 1))
    with pytest.raises(ValueError, match="edges"):  # same nodes and hops, other graph
        edit(trained, toy, targets, config=config, field=ReceptiveField(
            toy.edge_index[:, :10], toy.num_nodes, 3))


def test_anchors_stay_bounded(toy):
    chunks = anchor_chunks(toy, 4, seed=2, sample=10)
    assert len(chunks) == 4 and sum(c.numel() for c in chunks) == 10
    assert toy.train_mask[torch.cat(chunks)].all()
    torch.manual_seed(0)
    model = train_model(GCN(16, 3), toy, epochs=5)
    with pytest.raises(ValueError, match="max_anchors"):  # 30 training nodes, 1 per anchor
        edit(model, toy, _wrong(model, toy, 1), config=EditConfig(max_anchors=8))
    with pytest.raises(ValueError, match="max_anchors"):
        EditConfig(k=20, max_anchors=10)
    with pytest.raises(ValueError, match="anchor_sample"):
        EditConfig(k=20, anchor_sample=5)
    with pytest.raises(ValueError, match="anchor_sample"):
        EditConfig(anchor_sample=0)


def test_sequential_edits_stay_fixed_with_protect(toy, trained):
    """With protect, every edited node is still right after the last edit; the earlier
    edited nodes are in the QP (anchors = chunks + earlier successes)."""
    targets, labels = _requests(trained, toy, 8)
    edited, rec = edit(trained, toy, targets, labels, EditConfig(mode="sequential", k=5,
                                                                 max_steps=60))
    assert rec.success_rate == 1.0 and rec.final_correct == 1.0
    assert (predict(edited, toy)[targets] == labels).all()
    assert [e.guarded for e in rec.edits] == list(range(8))
    assert [e.anchors for e in rec.edits] == [5 + i for i in range(8)]
    assert all(e.kept == e.guarded for e in rec.edits)


def test_edited_nodes_share_anchor_rows_beyond_max_anchors(toy, trained):
    targets, labels = _requests(trained, toy, 6)
    _, rec = edit(trained, toy, targets, labels, EditConfig(mode="sequential", k=5,
                                                            max_anchors=7, max_steps=60))
    assert [e.anchors for e in rec.edits] == [5, 6, 7, 7, 7, 7]
    assert rec.final_correct == 1.0


def test_protect_does_not_apply_to_gd_or_other_modes(toy, trained):
    targets = _wrong(trained, toy, 3)
    _, rec = edit(trained, toy, targets, config=EditConfig(method="gd", mode="sequential"))
    assert all(e.guarded == 0 and e.anchors == 0 for e in rec.edits)
    _, rec = edit(trained, toy, targets, config=EditConfig(k=3))
    assert all(e.guarded == 0 for e in rec.edits)


def test_egnn_edits_on_the_receptive_field_of_its_gnn(toy, trained):
    torch.manual_seed(0)
    model = train_model(EGNN(copy.deepcopy(trained), 16, 3), toy, epochs=20)
    assert field_for(model, toy).hops == 3
    targets = _wrong(model, toy, 2)
    a, _ = edit(model, toy, targets, config=EditConfig(k=4, max_steps=100))
    b, _ = edit(model, toy, targets, config=EditConfig(k=4, max_steps=100, subgraph=False))
    assert torch.equal(predict(a, toy), predict(b, toy))
