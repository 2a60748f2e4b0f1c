"""Graphs for GNN editing: the Planetoid citation graphs (read from a local copy, never
downloaded) and a small synthetic graph for tests and examples.

Every graph is a :class:`torch_geometric.data.Data` with ``x`` (N, F) float32 node
features, ``edge_index`` (2, E) int64, ``y`` (N,) int64 labels and boolean masks
``train_mask``, ``val_mask``, ``test_mask`` (N,).
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

import torch
import torch_geometric.transforms as T
from torch_geometric.data import Data
from torch_geometric.datasets import Planetoid

from rewire.errors import DataError
from rewire.gnn.planetoid_raw import PARTS, PlanetoidFileError, read_raw, write_clean

__all__ = ["DATASETS", "GraphDataError", "load_graph", "load_planetoid", "toy_graph"]

#: Planetoid names as PyG spells them, by lower-case key.
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer"}
#: Every name :func:`load_graph` accepts.
DATASETS = (*PLANETOID, "toy")


class GraphDataError(DataError):
    """A graph could not be loaded: missing files, unknown name or malformed input."""


def load_planetoid(name: str, root: str | Path, cache: str | Path | None = None) -> Data:
    """Load Cora or CiteSeer (public Planetoid split) from ``root/<Name>/raw`` without download.

    The raw files are pickles, and ``pickle.load`` runs any code a file names; so they are
    read with a restricted unpickler (:mod:`rewire.gnn.planetoid_raw`: numeric numpy arrays,
    scipy CSR matrices and a dict of adjacency lists only), checked, and written again from
    the checked arrays into a private folder, which PyG's ``Planetoid`` then processes.
    ``root`` is only read, so it need not be trusted or writable. Features are
    row-normalised (``NormalizeFeatures``), as in Kipf & Welling (2017).

    Args:
        name: ``"cora"`` or ``"citeseer"`` (case-insensitive).
        root: folder holding ``Cora/raw/ind.cora.*`` and/or ``CiteSeer/raw/ind.citeseer.*``.
        cache: writable folder for the checked copy and PyG's ``processed/``; whatever it
            holds under ``<Name>/`` is replaced, never read. Default: a temporary folder,
            removed before returning.

    Returns:
        The graph (Cora: 2708 nodes, 1433 features, 7 classes, 140/500/1000 split).

    Raises:
        GraphDataError: unknown name, a raw file missing (the message lists it), a file
            that names a global outside the format, or content that does not fit together
            (the message names the file).
    """
    key = name.lower()
    if key not in PLANETOID:
        raise GraphDataError(f"unknown Planetoid data set {name!r}; choose one of {sorted(PLANETOID)}")
    pyg_name = PLANETOID[key]
    raw = Path(root) / pyg_name / "raw"
    missing = [f"ind.{key}.{p}" for p in PARTS if not (raw / f"ind.{key}.{p}").is_file()]
    if missing:
        raise GraphDataError(f"{raw} lacks {', '.join(missing)}: pass --data-root pointing at "
                             f"the folder that holds {pyg_name}/raw (nothing is downloaded)")
    try:
        arrays = read_raw(raw, key)
    except PlanetoidFileError as exc:
        raise GraphDataError(f"{exc}; use the original Planetoid files") from None
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="rewire-gnn-") as tmp:
            return _process(arrays, key, pyg_name, Path(tmp))
    return _process(arrays, key, pyg_name, Path(cache))


def _process(arrays: dict, key: str, pyg_name: str, cache: Path) -> Data:
    """Write the checked arrays under ``cache/<Name>/raw`` and let PyG build the graph."""
    target = cache / pyg_name
    if target.exists():
        shutil.rmtree(target)  # never reuse what is there: only what we just wrote is read
    write_clean(arrays, target / "raw", key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = Planetoid(str(cache), pyg_name, transform=T.NormalizeFeatures())[0]
    return data.clone()


def toy_graph(nodes: int = 120, classes: int = 3, features: int = 16, seed: int = 0) -> Data:
    """A small stochastic-block-model graph with class-dependent features (for tests).

    Nodes of the same class link with probability 0.08, others with 0.01 (undirected);
    features are a class mean plus Gaussian noise. Split: 20 % train, 20 % val, 60 % test.

    Raises:
        GraphDataError: if ``nodes < 5 * classes`` or ``classes < 2`` or ``features < 1``.

    Example:
        >>> g = toy_graph(nodes=60, seed=1)
        >>> g.x.shape, int(g.train_mask.sum()), bool(g.is_undirected())
        (torch.Size([60, 16]), 12, True)
    """
    if classes < 2 or nodes < 5 * classes or features < 1:
        raise GraphDataError(f"toy_graph needs classes >= 2, nodes >= 5*classes and "
                             f"features >= 1 (got {nodes=}, {classes=}, {features=})")
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(nodes) % classes
    y = y[torch.randperm(nodes, generator=gen)]
    same = y[:, None] == y[None, :]
    prob = torch.where(same, torch.tensor(0.08), torch.tensor(0.01))
    upper = torch.triu(torch.rand(nodes, nodes, generator=gen) < prob, diagonal=1)
    edge_index = torch.cat([upper.nonzero().T, upper.nonzero().T.flip(0)], dim=1)
    means = torch.randn(classes, features, generator=gen)
    x = means[y] + 1.5 * torch.randn(nodes, features, generator=gen)
    order = torch.randperm(nodes, generator=gen)
    n_train, n_val = nodes // 5, nodes // 5
    masks = [torch.zeros(nodes, dtype=torch.bool) for _ in range(3)]
    masks[0][order[:n_train]] = True
    masks[1][order[n_train:n_train + n_val]] = True
    masks[2][order[n_train + n_val:]] = True
    return Data(x=x, edge_index=edge_index, y=y, train_mask=masks[0], val_mask=masks[1],
                test_mask=masks[2])


def load_graph(name: str, root: str | Path | None = None, cache: str | Path | None = None,
               seed: int = 0) -> Data:
    """Load a graph by name: ``cora`` / ``citeseer`` (needs ``root``) or ``toy``.

    Raises:
        GraphDataError: unknown name, or a Planetoid name without ``root``.
    """
    key = name.lower()
    if key == "toy":
        return toy_graph(seed=seed)
    if key in PLANETOID and root is None:
        raise GraphDataError(f"{name} needs --data-root (the folder holding "
                             f"{PLANETOID[key]}/raw, e.g. ../shared/datasets/planetoid)")
    if key not in PLANETOID:
        raise GraphDataError(f"unknown data set {name!r}; choose one of {list(DATASETS)}")
    return load_planetoid(key, root, cache)
