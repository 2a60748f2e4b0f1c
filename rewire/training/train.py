"""Training loop: GradR under a synapse budget, then the projection safety net.

The loss is the cross-entropy of the output spike counts (:func:`spike_count_logits`) against
the label; the class is the output neuron with the most spikes, the same rule the chip's
integer model uses.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from rewire.training.budget import (BudgetController, SynapseBudget, connected_synapses,
                                    max_fan_in, project_to_budget)
from rewire.training.data import Split
from rewire.training.gradr import GradR, apply_gradr
from rewire.training.model import SpikingMLP, predict, spike_count_logits


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: passes over the training set.
        batch_size: samples per optimizer step.
        lr: GradR/Adam learning rate.
        alpha: initial prior penalty; the :class:`BudgetController` adapts it.
        sparsity: target sparsity ``p`` of the Laplace prior (GradR Eq. 11).
        seed: seeds weights, batch order and rate-coded input.
        device: torch device string (``"cpu"``, ``"cuda"``).
        progress: show a tqdm progress bar.
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    alpha: float = 0.1
    sparsity: float = 0.95
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if not self.alpha > 0:
            raise ValueError(f"--alpha must be > 0, got {self.alpha}")
        if not 0.5 <= self.sparsity < 1:
            raise ValueError(f"--target-sparsity must be in [0.5, 1), got {self.sparsity}")


@dataclass
class TrainResult:
    """What a training run reached.

    Attributes:
        gradr_synapses: connected synapses when GradR finished, before the projection.
        gradr_accuracy: test accuracy (fraction) before the projection.
        projected_away: synapses the projection removed (0 when GradR met the budget).
        synapses: connected synapses at the end.
        accuracy: final float test accuracy (fraction).
        max_fan_in: largest fan-in at the end.
        seconds: wall time of training.
        history: per-epoch dicts (epoch, loss, connectivity, alpha).
    """

    gradr_synapses: int
    gradr_accuracy: float
    projected_away: int
    synapses: int
    accuracy: float
    max_fan_in: int
    seconds: float
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def encoded_batches(model: SpikingMLP, x: torch.Tensor, batch_size: int = 512,
                    seed: int = 0):
    """Yield ``(start, encoded (T, b, n_in))`` over ``x``, deterministic for a given ``seed``.

    The float model and the integer model are evaluated on the same encoded input, so rate
    coding does not blur the comparison.
    """
    gen = torch.Generator(device=x.device).manual_seed(seed)
    for i in range(0, len(x), batch_size):
        yield i, model.encode(x[i:i + batch_size], gen)


@torch.no_grad()
def evaluate(model: SpikingMLP, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             seed: int = 0) -> float:
    """Test accuracy (fraction in [0, 1]) by output spike count; rate input seeded by ``seed``."""
    model.eval()
    correct = 0
    for i, inputs in encoded_batches(model, x, batch_size, seed):
        counts = spike_count_logits(model.run_encoded(inputs))
        correct += int((predict(counts) == y[i:i + len(inputs[0])]).sum())
    return correct / len(x)


def train(model: SpikingMLP, split: Split, budget: SynapseBudget,
          config: TrainConfig = TrainConfig()) -> TrainResult:
    """Train ``model`` with GradR so that it ends inside ``budget``.

    The model's prunable weights are parametrized (:func:`apply_gradr`) in place, trained with
    :class:`GradR` steered by :class:`BudgetController`, and finally projected onto the budget
    (:func:`project_to_budget`) if GradR alone did not get there.

    Args:
        model: a fresh :class:`SpikingMLP` (not yet parametrized).
        split: the data.
        budget: the :class:`SynapseBudget` to end inside.
        config: :class:`TrainConfig`.

    Returns:
        :class:`TrainResult`.
    """
    start = time.perf_counter()
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model.to(device)
    thetas = apply_gradr(model)
    opt = GradR(thetas, lr=config.lr, alpha=config.alpha, sparsity=config.sparsity)
    x_tr, y_tr = split.x_train.to(device), split.y_train.to(device)
    steps_per_epoch = -(-len(x_tr) // config.batch_size)
    controller = BudgetController(opt, model, budget, config.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(config.seed)
    history = []
    bar = tqdm(range(config.epochs), desc="GradR", unit="epoch", disable=not config.progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x_tr), generator=gen).to(device)
        total = 0.0
        for i in range(0, len(x_tr), config.batch_size):
            idx = order[i:i + config.batch_size]
            counts = spike_count_logits(model(x_tr[idx]))
            loss = F.cross_entropy(counts, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            controller.step()
            total += float(loss) * len(idx)
        conn = connected_synapses(model) / budget.total_synapses
        history.append({"epoch": epoch + 1, "loss": total / len(x_tr),
                        "connectivity": conn, "alpha": controller.alpha})
        bar.set_postfix(loss=f"{total / len(x_tr):.3f}", conn=f"{conn:.2%}",
                        alpha=f"{controller.alpha:.3g}")
    x_te, y_te = split.x_test.to(device), split.y_test.to(device)
    gradr_synapses = connected_synapses(model)
    gradr_accuracy = evaluate(model, x_te, y_te, seed=config.seed)
    removed = project_to_budget(model, budget)
    accuracy = evaluate(model, x_te, y_te, seed=config.seed) if removed else gradr_accuracy
    return TrainResult(gradr_synapses=gradr_synapses, gradr_accuracy=gradr_accuracy,
                       projected_away=removed, synapses=connected_synapses(model),
                       accuracy=accuracy, max_fan_in=max_fan_in(model),
                       seconds=time.perf_counter() - start, history=history)
