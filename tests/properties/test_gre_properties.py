"""Properties of the GRE / GRE+ projections (Jiang et al., NeurIPS 2024, eqs. 4–6) and of
the editor's projected step (rewire.gnn)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from rewire.gnn.data import toy_graph
from rewire.gnn.editor import (EditConfig, _edit_once, _projector, anchor_chunks,
                               anchor_gradients, editable_parameters)
from rewire.gnn.models import GCN, SAGE
from rewire.gnn.projection import AnchorProjector, flatten, gre_project, unflatten
from rewire.gnn.receptive import ReceptiveField


# Tiny graphs: torch's thread pool costs more than it saves (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=64)
lams = st.floats(0, 5, allow_nan=False)


@st.composite
def problems(draw, max_k=6, max_p=12):
    k = draw(st.integers(1, max_k))
    p = draw(st.integers(1, max_p))
    G = draw(arrays(np.float64, (k, p), elements=finite))
    g = draw(arrays(np.float64, (p,), elements=finite))
    return torch.from_numpy(G), torch.from_numpy(g)


@given(problems(), lams)
def test_projected_step_satisfies_constraints(problem, lam):
    G, g = problem
    out = AnchorProjector(G, lam)(g)
    assert (G @ out).min() >= -1e-6 * max(1.0, float(G.abs().max() * g.abs().max()))


@given(problems(), lams)
def test_inactive_constraints_give_scaled_target(problem, lam):
    G, g = problem
    G = torch.where((G @ g)[:, None] < 0, -G, G)  # flip rows so that G g >= 0
    out = AnchorProjector(G, lam)(g)
    torch.testing.assert_close(out, g / (1 + lam), atol=1e-9, rtol=1e-9)


@given(problems(max_k=1), lams)
@example(problem=(torch.tensor([[-2.4030e-191]], dtype=torch.float64),  # ‖G‖² underflows
                  torch.tensor([1.0], dtype=torch.float64)), lam=0.0)
def test_one_anchor_equals_closed_form(problem, lam):
    G, g = problem
    out = AnchorProjector(G, lam)(g)
    torch.testing.assert_close(out, gre_project(g, G[0]) / (1 + lam), atol=1e-7, rtol=1e-7)


@given(problems(), lams)
def test_projection_is_nearest_feasible_point_among_samples(problem, lam):
    # The QP's optimum beats the target itself and the zero step (both feasible or not).
    G, g = problem
    out = AnchorProjector(G, lam)(g)
    cost = lambda x: 0.5 * float((x - g) @ (x - g)) + 0.5 * lam * float(x @ x)  # noqa: E731
    assert cost(out) <= cost(torch.zeros_like(g)) + 1e-7
    if (G @ g).min() >= 0:
        assert cost(out) <= cost(g) + 1e-7


def _train_loss(model, data):
    out = model(data.x, data.edge_index)
    return F.cross_entropy(out[data.train_mask], data.y[data.train_mask])


@settings(max_examples=20)
@given(st.integers(0, 10_000), st.sampled_from(["gre", "gre+"]),
       st.sampled_from(["gradient", "update"]), st.sampled_from([GCN, SAGE]))
def test_training_loss_does_not_rise_to_first_order(seed, method, project, arch):
    """Training loss = Σ_k (|chunk_k|/n_train) · loss_k, so G x ≥ 0 implies ∇L_train · x ≥ 0:
    a step θ ← θ − η x does not raise it to first order. With project="gradient" that holds
    for the projected gradient; with "update" for the step the parameters actually take."""
    data = toy_graph(nodes=40, features=8, seed=seed % 7)
    torch.manual_seed(seed)
    model = arch(8, 3, hidden=8).eval()
    params = editable_parameters(model)
    config = EditConfig(method=method, k=4, project=project, max_steps=1, lr=0.05, seed=seed)
    anchors = anchor_gradients(model, data, anchor_chunks(data, config.anchors, seed), params)
    grad_train = flatten(torch.autograd.grad(_train_loss(model, data), params), params)
    projector = _projector(model, data, params, config)
    target = torch.tensor([seed % 40])
    out = model(data.x, data.edge_index)[target]
    label = (out.argmax(dim=1) + 1) % 3  # a label the model does not predict: a step is taken
    g = flatten(torch.autograd.grad(F.cross_entropy(out, label), params), params)
    if project == "gradient":
        step = projector(g)
    else:
        theta0 = flatten(params, params)
        _edit_once(model, params, data, target, label, config, projector)
        step = theta0 - flatten(params, params)  # the step the parameters took
        assert step.abs().max() > 0
        with torch.no_grad():  # back to θ0 for the finite-difference check
            for p, v in zip(params, unflatten(theta0, params)):
                p.copy_(v)
    scale = float(anchors.abs().max() * step.abs().max()) + 1e-12
    assert (anchors @ step).min() >= -1e-6 * scale
    assert float(grad_train @ step) >= -1e-6 * scale
    # and numerically: a small step does not raise the training loss beyond O(η²)
    eta = 1e-3 / (float(step.norm()) + 1e-12)
    with torch.no_grad():
        base = float(_train_loss(model, data))
        for p, d in zip(params, unflatten(step, params)):
            p.sub_(eta * d)
        assert float(_train_loss(model, data)) <= base + 1e-5


@settings(max_examples=15)
@given(st.integers(0, 10_000), st.sampled_from(["gre", "gre+"]), st.sampled_from([GCN, SAGE]),
       st.integers(1, 4))
def test_sequential_step_does_not_raise_earlier_edited_losses(seed, method, arch, earlier):
    """Sequential protect: each earlier edited node v is an anchor row, so the step u the
    parameters take (θ ← θ − u) has ∇θ CE_v · u ≥ −tol, i.e. CE_v does not rise to first
    order, and a small step along u does not raise it beyond O(η²)."""
    data = toy_graph(nodes=40, features=8, seed=seed % 7)
    torch.manual_seed(seed)
    model = arch(8, 3, hidden=8).eval()
    params = editable_parameters(model)
    config = EditConfig(method=method, mode="sequential", k=3, max_steps=1, lr=0.05, seed=seed)
    with torch.no_grad():
        pred = model(data.x, data.edge_index).argmax(dim=1)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
    guard_nodes, target = order[:earlier], order[earlier:earlier + 1]
    guard_labels = pred[guard_nodes]  # edited before: right now; must stay so
    label = (pred[target] + 1) % 3  # a label the model does not predict: a step is taken
    guards = (guard_nodes, guard_labels)
    projector = _projector(model, data, params, config, None, guards)
    theta0 = flatten(params, params)
    out = _edit_once(model, params, data, target, label, config, projector, None, guards)
    step = theta0 - flatten(params, params)
    assert out.steps == 1 and out.guarded == earlier and step.abs().max() > 0
    with torch.no_grad():
        for p, v in zip(params, unflatten(theta0, params)):
            p.copy_(v)

    def guard_loss(i):
        logits = model(data.x, data.edge_index)[guard_nodes[i:i + 1]]
        return F.cross_entropy(logits, guard_labels[i:i + 1])

    eta = 1e-3 / (float(step.norm()) + 1e-12)
    for i in range(earlier):
        g = flatten(torch.autograd.grad(guard_loss(i), params, allow_unused=True), params)
        scale = float(g.abs().max() * step.abs().max()) + 1e-12
        assert float(g @ step) >= -1e-6 * scale
        with torch.no_grad():
            base = float(guard_loss(i))
            for p, d in zip(params, unflatten(step, params)):
                p.sub_(eta * d)
            assert float(guard_loss(i)) <= base + 1e-5
            for p, v in zip(params, unflatten(theta0, params)):
                p.copy_(v)


@settings(max_examples=25)
@given(st.integers(0, 10_000), st.integers(1, 3), st.sampled_from([GCN, SAGE]),
       st.booleans())
def test_receptive_field_gives_the_whole_graph_outputs(seed, n_nodes, arch, directed):
    """On random graphs (directed or not, repeated edges, isolated nodes) the outputs of
    any nodes on their ReceptiveField subgraph equal those on the whole graph."""
    gen = torch.Generator().manual_seed(seed)
    n = 30
    edge_index = torch.randint(0, n, (2, 60), generator=gen)
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]  # GCN adds its own loops
    if not directed:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    x = torch.randn(n, 5, generator=gen)
    torch.manual_seed(seed)
    model = arch(5, 3, hidden=4).eval()
    nodes = torch.randperm(n, generator=gen)[:n_nodes]
    subset, sub_ei, index = ReceptiveField(edge_index, n, hops=3).subgraph(nodes)
    with torch.no_grad():
        torch.testing.assert_close(model(x[subset], sub_ei)[index],
                                   model(x, edge_index)[nodes], atol=1e-5, rtol=1e-5)


def test_nearly_opposite_anchors_never_cost_more_than_the_zero_step():
    """The case a newer hypothesis found: rows (1e-5, -10, 0) and (0, 1, 0) nearly opposite
    after scaling; the NNLS answer cost 1.5001 against the zero step's 1.5."""
    G = torch.tensor([[1e-5, -10.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    g = torch.tensor([-1.0, -1.0, -1.0], dtype=torch.float64)
    out = AnchorProjector(G, 0.0)(g)
    assert 0.5 * float((out - g) @ (out - g)) <= 1.5 + 1e-12
