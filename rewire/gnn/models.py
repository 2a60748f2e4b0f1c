"""Node classifiers to edit: 2-layer GCN and GraphSAGE from PyG, and EGNN (a GNN plus a
peer MLP, Liu et al., KDD 2023), with full-batch training and checkpoints.

Protocol of Jiang et al. (NeurIPS 2024, §5): 2 layers, 32 hidden units, dropout 0.1.

Shapes (all models): input ``x`` (N, F) float32 and ``edge_index`` (2, E) int64;
output logits (N, C).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import GCNConv, SAGEConv
from torch_geometric.nn.models import MLP

from rewire.io import atomic_path

__all__ = ["EGNN", "GCN", "MODELS", "ModelConfig", "SAGE", "accuracy", "build_model",
           "load_checkpoint", "predict", "save_checkpoint", "train_model"]

CHECKPOINT_FORMAT = "rewire.gnn.checkpoint/1"


class _TwoLayer(nn.Module):
    """Two message-passing layers with ReLU and dropout between them."""

    conv: type = GCNConv

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32,
                 dropout: float = 0.1):
        super().__init__()
        self.conv1 = self.conv(in_channels, hidden)
        self.conv2 = self.conv(hidden, out_channels)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.conv1(x, edge_index)), self.dropout, self.training)
        return self.conv2(h, edge_index)


class GCN(_TwoLayer):
    """2-layer GCN (Kipf & Welling, ICLR 2017): ``Â relu(Â X W1) W2``, Â = D^-½(A+I)D^-½.

    Args: ``in_channels`` F, ``out_channels`` C, ``hidden`` (32), ``dropout`` (0.1).

    Example:
        >>> GCN(16, 3)(torch.randn(5, 16), torch.tensor([[0, 1], [1, 0]])).shape
        torch.Size([5, 3])
    """

    conv = GCNConv


class SAGE(_TwoLayer):
    """2-layer GraphSAGE, mean aggregator (Hamilton et al., NeurIPS 2017):
    ``h_i = W_r x_i + W_l mean_{j∈N(i)} x_j`` per layer. Args: ``in_channels`` F,
    ``out_channels`` C, ``hidden`` (32), ``dropout`` (0.1).

    Example:
        >>> SAGE(16, 3)(torch.randn(5, 16), torch.tensor([[0, 1], [1, 0]])).shape
        torch.Size([5, 3])
    """

    conv = SAGEConv
    #: Aggregate the first layer after its linear maps (:meth:`set_project_first`); how
    #: many feature tensors :meth:`_project` remembers (the editor alternates a few views).
    project_first, KEEP_FEATURES = False, 3

    def set_project_first(self, on: bool) -> None:
        """Set ``project_first`` (the sequential editor with a restore sets it while it
        runs) and forget the features :meth:`_project` holds."""
        self.project_first = bool(on)
        self._features = None

    def _project(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T`` (N, 2 hidden); an ``x`` seen again (same tensor, unchanged) as a
        sparse copy: Cora's and CiteSeer's features are ~1 % non-zero, converting costs ~2
        dense products, a restore runs many passes on a few views."""
        seen = getattr(self, "_features", None) or []
        for entry in seen:
            if entry[0] is x and entry[1] == x._version:
                if entry[2] is None:
                    entry[2] = x.to_sparse()
                return torch.sparse.mm(entry[2], weight.t())
        self._features = [*seen[-(self.KEEP_FEATURES - 1):], [x, x._version, None]]
        return F.linear(x, weight)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Logits (N, C). With ``project_first`` the first layer computes
        ``mean_j (W_l x_j) + b_l + W_r x_i``, not ``W_l mean_j x_j + b_l + W_r x_i``: equal
        but for float summation order, and the mean runs over ``hidden`` columns, not the
        F input ones (1433 Cora, 3703 CiteSeer); one product for ``W_l`` and ``W_r``
        (:meth:`_project`). Only a plain first layer (mean, root weight, no projection or
        normalisation) is rewritten; any other runs as PyG's."""
        conv = self.conv1
        if not (self.project_first and conv.aggr == "mean" and conv.root_weight
                and not conv.project and not conv.normalize):
            return super().forward(x, edge_index)
        both = self._project(x, torch.cat([conv.lin_l.weight, conv.lin_r.weight]))
        z, h = both.split(conv.out_channels, dim=1)
        h = conv.propagate(edge_index, x=(z, z), size=None) + h
        h = h if conv.lin_l.bias is None else h + conv.lin_l.bias
        h = F.dropout(F.relu(h), self.dropout, self.training)
        return self.conv2(h, edge_index)


class EGNN(nn.Module):
    """EGNN (Liu et al., KDD 2023): a trained GNN plus a peer MLP on the node features;
    logits ``gnn(x, A) + mlp(x)``. The GNN is frozen; only the MLP is trained and edited,
    so an edit does not propagate through the graph.

    Args:
        gnn: the trained GNN (its parameters get ``requires_grad=False``).
        in_channels, out_channels: F and C. hidden: MLP width (32). dropout: 0.1.

    The MLP's last layer starts at zero, so a fresh EGNN predicts exactly as its GNN;
    :func:`train_model` then fits the MLP with the GNN frozen.

    Example:
        >>> e = EGNN(GCN(16, 3), 16, 3)
        >>> [n for n, _ in e.editable_parameters()][:1]
        ['mlp.lins.0.weight']
    """

    def __init__(self, gnn: nn.Module, in_channels: int, out_channels: int, hidden: int = 32,
                 dropout: float = 0.1):
        super().__init__()
        self.gnn = gnn
        for p in self.gnn.parameters():
            p.requires_grad_(False)
        self.mlp = MLP([in_channels, hidden, out_channels], dropout=dropout, norm=None)
        with torch.no_grad():
            self.mlp.lins[-1].weight.zero_()
            self.mlp.lins[-1].bias.zero_()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            base = self.gnn(x, edge_index)
        return base + self.mlp(x)

    def editable_parameters(self):
        """``(name, parameter)`` pairs of the MLP: the only parameters EGNN edits."""
        return [(f"mlp.{n}", p) for n, p in self.mlp.named_parameters()]


#: Base GNNs by name.
MODELS = {"gcn": GCN, "sage": SAGE}


@dataclass(frozen=True)
class ModelConfig:
    """What :func:`build_model` needs: ``arch`` in :data:`MODELS`, ``egnn`` (stitch a peer
    MLP), sizes ``in_channels`` F, ``out_channels`` C, ``hidden`` and ``dropout``."""

    arch: str
    in_channels: int
    out_channels: int
    hidden: int = 32
    dropout: float = 0.1
    egnn: bool = False

    def __post_init__(self):
        if self.arch not in MODELS:
            raise ValueError(f"arch: unknown model {self.arch!r}; choose one of {sorted(MODELS)}")
        for field in ("in_channels", "out_channels", "hidden"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def build_model(config: ModelConfig) -> nn.Module:
    """An untrained model for ``config`` (EGNN wraps a fresh GNN of ``config.arch``)."""
    gnn = MODELS[config.arch](config.in_channels, config.out_channels, config.hidden,
                              config.dropout)
    if config.egnn:
        return EGNN(gnn, config.in_channels, config.out_channels, config.hidden, config.dropout)
    return gnn


def _fit(model: nn.Module, params, loss_fn, epochs: int, lr: float, weight_decay: float):
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    model.eval()


def train_model(model: nn.Module, data: Data, epochs: int = 200, lr: float = 0.01,
                weight_decay: float = 5e-4, seed: int = 0) -> nn.Module:
    """Full-batch training with Adam and cross-entropy on ``data.train_mask``; in place.

    For an :class:`EGNN` only the MLP is trained (build the EGNN around a trained GNN),
    with the GNN frozen, on cross-entropy plus ``KL(p_gnn ‖ p_egnn)`` over all nodes so
    the stitched model keeps the GNN's predictions. Returns the model in eval mode.

    Raises:
        ValueError: if ``epochs < 1`` or ``lr <= 0``.
    """
    if epochs < 1 or lr <= 0:
        raise ValueError(f"epochs must be >= 1 and lr > 0 (got {epochs=}, {lr=})")
    torch.manual_seed(seed)
    mask, y = data.train_mask, data.y
    if isinstance(model, EGNN):
        with torch.no_grad():
            log_p_gnn = F.log_softmax(model.gnn(data.x, data.edge_index), dim=1)

        def loss():
            out = model(data.x, data.edge_index)
            kl = F.kl_div(F.log_softmax(out, 1), log_p_gnn, log_target=True, reduction="batchmean")
            return F.cross_entropy(out[mask], y[mask]) + kl

        _fit(model, model.mlp.parameters(), loss, epochs, lr, weight_decay)
        return model

    def loss():
        return F.cross_entropy(model(data.x, data.edge_index)[mask], y[mask])

    _fit(model, model.parameters(), loss, epochs, lr, weight_decay)
    return model


@torch.no_grad()
def predict(model: nn.Module, data: Data) -> torch.Tensor:
    """Predicted class per node, (N,) int64, in eval mode (no dropout)."""
    was = model.training
    model.eval()
    out = model(data.x, data.edge_index).argmax(dim=1)
    model.train(was)
    return out


def accuracy(model: nn.Module, data: Data, mask: torch.Tensor | None = None) -> float:
    """Fraction of nodes in ``mask`` (default ``data.test_mask``) predicted right, in [0, 1]."""
    mask = data.test_mask if mask is None else mask
    return float((predict(model, data)[mask] == data.y[mask]).float().mean())


def save_checkpoint(model: nn.Module, config: ModelConfig, path: str | Path,
                    meta: dict | None = None) -> Path:
    """Write ``{format, config, state_dict, meta}`` with ``torch.save``, atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "config": asdict(config),
               "state_dict": copy.deepcopy(model.state_dict()), "meta": dict(meta or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


#: Most parameters a checkpoint's model may have: 2**28 (1 GiB of float32), over 4,000x a
#: 2-layer GCN on CiteSeer (3,703 x 32 + 32 x 6); a config asking for more is refused before
#: any model is built, so a 1 KB file cannot ask for 40 GB.
MAX_PARAMETERS = 1 << 28
#: Largest checkpoint file read (bytes): 4 GiB, room for :data:`MAX_PARAMETERS` float32s and
#: the meta data.
MAX_CHECKPOINT_BYTES = 1 << 32
_CONFIG_TYPES = {"arch": str, "in_channels": int, "out_channels": int, "hidden": int,
                 "dropout": float, "egnn": bool}


def _checked_config(path: Path, raw) -> ModelConfig:
    """The checkpoint's ``config`` dict as a :class:`ModelConfig`, every field checked."""
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: field 'config' must be a dict of ModelConfig fields, got "
                         f"{type(raw).__name__}; re-save the model with save_checkpoint")
    unknown = sorted(str(k)[:40] for k in raw if k not in _CONFIG_TYPES)
    missing = sorted(k for k in ("arch", "in_channels", "out_channels") if k not in raw)
    if unknown or missing:
        raise ValueError(f"{path}: config has unknown fields {unknown} / lacks {missing}; "
                         f"allowed: {sorted(_CONFIG_TYPES)}")
    for key, value in raw.items():
        kind = _CONFIG_TYPES[key]
        ok = isinstance(value, bool) if kind is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool)
            and value == value if kind is float else
            isinstance(value, kind) and not isinstance(value, bool))
        if not ok:
            raise ValueError(f"{path}: config field '{key}' must be {kind.__name__}, got "
                             f"{str(value)[:40]!r}")
    for key in ("in_channels", "out_channels", "hidden"):
        if key in raw and not 1 <= raw[key] <= MAX_PARAMETERS:
            raise ValueError(f"{path}: config field '{key}' must be in [1, {MAX_PARAMETERS}], "
                             f"got {raw[key]}")
    try:
        return ModelConfig(**raw)
    except ValueError as exc:
        raise ValueError(f"{path}: config field {exc}") from None


def _expected_shapes(path: Path, config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of ``config``'s model, found on the meta device (nothing allocated)."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    total = sum(math.prod(s) for s in shapes.values())
    if total > MAX_PARAMETERS:
        raise ValueError(f"{path}: its config ({config.arch}, {config.in_channels} -> "
                         f"{config.hidden} -> {config.out_channels}) needs {total:,} parameters, "
                         f"more than the {MAX_PARAMETERS:,} a checkpoint may have")
    return shapes


def _checked_state(path: Path, state, shapes: dict[str, tuple[int, ...]]) -> dict:
    if not isinstance(state, dict):
        raise ValueError(f"{path}: field 'state_dict' must be a dict of tensors, got "
                         f"{type(state).__name__}; re-save the model with save_checkpoint")
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise ValueError(f"{path}: state_dict does not match its config: missing "
                         f"{missing[:5]}, unexpected {[str(k)[:40] for k in unexpected[:5]]}")
    for key, shape in shapes.items():
        t = state[key]
        if isinstance(t, torch.Tensor) and (t.layout != torch.strided or t.device.type != "cpu"
                                            or t.is_quantized):
            raise ValueError(f"{path}: state_dict['{key}'] is a {t.layout} tensor on "
                             f"{t.device.type}; a checkpoint holds dense CPU float tensors "
                             f"(re-save the model with save_checkpoint)")
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() \
                or tuple(t.shape) != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{path}: state_dict['{key}'] must be a float tensor of shape "
                             f"{shape} (from its config), got {got}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path}: state_dict['{key}'] holds NaN or infinite values")
    return state


#: Deepest nesting and most items the ``meta`` field may hold: far above what
#: :func:`save_checkpoint` writes (a flat dict with one nested edit summary); a deeper one
#: could not be written again (pickling recurses) and is refused on the way in.
MAX_META_DEPTH, MAX_META_ITEMS = 32, 1 << 20


def _checked_meta(path: Path, meta) -> dict:
    """``meta`` if it is a dict nested at most :data:`MAX_META_DEPTH` deep with at most
    :data:`MAX_META_ITEMS` containers and items (walked without recursion)."""
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: field 'meta' must be a dict, got {type(meta).__name__}")
    stack, items = [(meta, 1)], 0
    while stack:
        obj, depth = stack.pop()
        values = obj.values() if isinstance(obj, dict) else obj
        items += len(values)
        if depth > MAX_META_DEPTH or items > MAX_META_ITEMS:
            raise ValueError(f"{path}: field 'meta' is nested deeper than {MAX_META_DEPTH} "
                             f"levels or holds more than {MAX_META_ITEMS:,} items; re-save "
                             f"the model with save_checkpoint")
        stack.extend((v, depth + 1) for v in values if isinstance(v, (dict, list, tuple)))
    return meta


def load_checkpoint(path: str | Path) -> tuple[nn.Module, ModelConfig, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; returns (model, config, meta).

    The file is read with ``torch.load(weights_only=True)`` (tensors and plain containers,
    no code runs); the config is checked field by field and every tensor's shape against
    the model the config describes (built on the meta device) before the model is built,
    so a small file cannot ask for a large model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a rewire GNN checkpoint, larger than :data:`MAX_CHECKPOINT_BYTES`,
            a config field unknown, missing, of the wrong type or out of range, a model of
            more than :data:`MAX_PARAMETERS` parameters, a state tensor missing, sparse,
            on another device, of the wrong shape or not finite, or a ``meta`` nested deeper
            than :data:`MAX_META_DEPTH` (the message names the file and the field).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (write one with "
                                f"`python -m rewire.gnn train --out {path}`)")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size:,} bytes, more than the "
                         f"{MAX_CHECKPOINT_BYTES:,} a GNN checkpoint may have")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle/zip errors have many types
        raise ValueError(f"{path} is not a readable torch checkpoint: "
                         f"{str(err).splitlines()[0][:200] if str(err) else type(err).__name__}"
                         ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a rewire GNN checkpoint (format field must be "
                         f"{CHECKPOINT_FORMAT!r})")
    config = _checked_config(path, payload.get("config"))
    state = _checked_state(path, payload.get("state_dict"), _expected_shapes(path, config))
    meta = _checked_meta(path, payload.get("meta", {}))
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: state_dict does not match its config: {err}") from None
    return model.eval(), config, meta
