"""Editable GNNs: Gradient Rewiring (GRE, GRE+; Jiang et al., NeurIPS 2024) with GD and
EGNN baselines, on PyG node classifiers.

* :mod:`rewire.gnn.projection`: the GRE closed form (eq. 4) and the GRE+ QP (eqs. 5–6)
  solved by :func:`scipy.optimize.nnls`.
* :mod:`rewire.gnn.editor`: :func:`edit` with :class:`EditConfig` (methods ``gd``, ``gre``,
  ``gre+``; modes ``independent``, ``sequential``, ``batch``; ``project`` = ``update`` or
  ``gradient``); :mod:`rewire.gnn.config` holds the config and record classes and
  :mod:`rewire.gnn.anchors` the anchor chunks, gradients and projector.
* :mod:`rewire.gnn.sequence`: :func:`run_sequence`, a sequential edit measured with the
  SEED-GNN checkpoints (DD and SR after edits 1, 10, 25, 50; max and mean DD).
* :mod:`rewire.gnn.locality`: the locality restore of sequential edits (``EditConfig(
  locality_steps=n)``): the rest of the graph pulled back to the original model's
  predictions after each edit, every edited node kept.
* :mod:`rewire.gnn.receptive`: :class:`ReceptiveField`, (L + 1)-hop subgraphs from a CSR
  index, on which the editor runs every forward (large graphs).
* :mod:`rewire.gnn.models`: GCN, GraphSAGE, EGNN, training and checkpoints.
* :mod:`rewire.gnn.data`: Planetoid graphs from a local copy and a toy graph.
* ``python -m rewire.gnn``: train and edit from the command line.
"""

from rewire.gnn.data import GraphDataError, load_graph, load_planetoid, toy_graph
from rewire.gnn.editor import (EditConfig, EditOutcome, EditRecord, edit, editable_parameters,
                               field_for, misclassified)
from rewire.gnn.models import (EGNN, GCN, SAGE, ModelConfig, accuracy, build_model,
                               load_checkpoint, predict, save_checkpoint, train_model)
from rewire.gnn.projection import AnchorProjector, gre_project
from rewire.gnn.receptive import ReceptiveField
from rewire.gnn.sequence import run_sequence

__all__ = ["AnchorProjector", "EGNN", "EditConfig", "EditOutcome", "EditRecord", "GCN",
           "GraphDataError", "ModelConfig", "ReceptiveField", "SAGE", "accuracy", "build_model",
           "edit", "editable_parameters", "field_for", "gre_project", "load_checkpoint",
           "load_graph", "load_planetoid", "misclassified", "predict", "run_sequence",
           "save_checkpoint", "toy_graph", "train_model"]
