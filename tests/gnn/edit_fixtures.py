"""Fixtures the sequential-editing tests share (imported by name into each module: a
``tests/gnn/conftest.py`` would shadow ``tests/conftest.py``, which tests import as
``conftest``): a 150-node toy graph, a GCN and a SAGE trained on it for 8 epochs (``trained``
is parametrized over both), and up to 12 of their mispredicted nodes as edit targets."""

from __future__ import annotations

import pytest
import torch

from rewire.gnn.data import toy_graph
from rewire.gnn.models import GCN, SAGE, predict, train_model


@pytest.fixture(scope="module")
def toy():
    return toy_graph(nodes=150, seed=5)


@pytest.fixture(scope="module", params=[GCN, SAGE])
def trained(toy, request):
    torch.manual_seed(0)
    return train_model(request.param(16, 3), toy, epochs=8)


@pytest.fixture(scope="module")
def targets(trained, toy):
    wrong = (predict(trained, toy) != toy.y).nonzero().flatten()
    assert wrong.numel() >= 6
    return wrong[:12]
