"""Training loop: GradR under a synapse budget, then the projection safety net.

The loss is the cross-entropy of the output spike counts (:func:`spike_count_logits`) against
the label; the class is the output neuron with the most spikes, the same rule the chip's
integer model uses.

The same loop trains the baselines at equal connectivity (``TrainConfig.method``): Deep R and
gradual magnitude pruning (:mod:`rewire.training.baselines`), and the paper's GradR with a
fixed :math:`\alpha` and no budget. When ``torch.distributed`` is initialised (``torchrun``, see
:mod:`rewire.training.distributed`) the model is wrapped in ``DistributedDataParallel``, each
rank takes its slice of every batch, the optimizer acts on the all-reduced gradients and every
rank keeps the same :math:`\theta`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from rewire.training.budget import SynapseBudget
from rewire.training.counting import (check_fixed_synapses, connected_synapses, max_fan_in,
                                      max_fan_out, project_to_budget)
from rewire.training.data import Split
from rewire.training.feed import Feed, Runner, check_output, default_loss
from rewire.training.gradr import prunable_layers
from rewire.training.guards import (check_batch, check_batch_memory, check_dataset_size,
                                    check_number, model_neurons)
from rewire.training.layout import check_fused_chains
from rewire.training.lowering import lower_before_data, lower_for_training, record_options
from rewire.training.methods import METHOD_TYPES, make_method
from rewire.training.model import SpikingMLP, predict, spike_count_logits
from rewire.training.qat import QAT, QATRun

METHODS = tuple(METHOD_TYPES)
OPTIMIZERS = ("adam", "sgd")


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
        device: torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        progress: show a tqdm progress bar.
        method: ``"gradr"`` (GradR steered by the :class:`BudgetController`, then the
            projection), ``"gradr-fixed"`` (the paper's GradR: fixed ``alpha``, no controller,
            no projection, so the budget may be missed), ``"deep-r"`` (Deep R with exactly the
            budget's synapses) or ``"magnitude"`` (Zhu & Gupta gradual magnitude pruning to
            the budget's synapses).
        optimizer: ``"adam"`` (:class:`GradR`) or ``"sgd"`` (:class:`GradRSGD`, with
            ``momentum``); GradR methods only.
        momentum: SGD momentum (``optimizer="sgd"`` only).
        deep_r_alpha: Deep R's L1 penalty per step (Bellec et al. 2018, Eq. 3).
        deep_r_temperature: Deep R's noise temperature ``T``.
        controller: keyword arguments for :class:`BudgetController` (``ramp``, ``margin``,
            ``kp``, ``ki``, ...); empty = its defaults.
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    alpha: float = 0.1
    sparsity: float = 0.95
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    method: str = "gradr"
    optimizer: str = "adam"
    momentum: float = 0.9
    deep_r_alpha: float = 1e-5
    deep_r_temperature: float = 1e-12
    controller: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Raises: ``TypeError`` (a field of the wrong type) or ``ValueError`` (out of range:
        ``alpha=inf``, ``seed=-1``, ...), naming the field; never coerced."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
            check_number(name, getattr(self, name), 1, 2**31 - 1, integer=True)
        check_number("seed", self.seed, 0, 2**63 - 1, integer=True)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        check_number("lr", self.lr, 0, math.inf, lo_open=True, hi_open=True)
        check_number("alpha", self.alpha, 0, math.inf, lo_open=True, hi_open=True)
        if not 0.5 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be in [0.5, 1), got {self.sparsity}")
        check_number("momentum", self.momentum, 0, 1, hi_open=True)
        check_number("deep_r_alpha", self.deep_r_alpha, 0, math.inf, hi_open=True)
        check_number("deep_r_temperature", self.deep_r_temperature, 0, math.inf, hi_open=True)
        if not isinstance(self.device, str) or not isinstance(self.controller, dict):
            raise TypeError("device must be a string and controller a dict")


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
        method: the :data:`METHODS` entry that trained the model.
        gradr_max_fan_in, gradr_max_fan_out: largest fan-in and fan-out (per weight matrix,
            see :func:`rewire.training.budget.max_fan_out`) before the projection.
        run_options: ``steps``, ``encoding``, ``input_gain`` the input was presented with
            (``input_gain``: the factor on dense input before the model's forward, 1 for a
            model that presents its input itself; the compiled gain is it times the
            forward's own, :mod:`rewire.frontends.run_options`), and ``input_shape`` (the
            data's per-sample shape) where the model alone does not tell it. ``train`` also
            records them on the model, so ``rewire.compile`` takes them by default and
            refuses others.
        qat: what quantization-aware training did (``{}`` without ``qat=``; see
            :class:`rewire.training.qat.QATRun`).
    """

    gradr_synapses: int
    gradr_accuracy: float
    projected_away: int
    synapses: int
    accuracy: float
    max_fan_in: int
    seconds: float
    history: list[dict] = field(default_factory=list)
    method: str = "gradr"
    gradr_max_fan_in: int = 0
    gradr_max_fan_out: int = 0
    run_options: dict = field(default_factory=dict)
    qat: dict = field(default_factory=dict)

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


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def train(model: nn.Module, data, budget: SynapseBudget,
          config: TrainConfig = TrainConfig(), *, test_data=None,
          forward: Callable | None = None, loss: Callable | None = None,
          steps: int | None = None, encoding: str | None = None,
          input_gain: float | None = None, input_shape: tuple | None = None,
          time_axis: int | None = None, qat: QAT | None = None) -> TrainResult:
    r"""Train ``model`` with GradR (or a baseline) so that it ends inside ``budget``.

    The model's prunable weights are parametrized (:func:`apply_gradr`) in place, trained with
    :class:`GradR` steered by :class:`BudgetController`, and finally projected onto the budget
    (:func:`project_to_budget`) if GradR alone did not get there. ``config.method`` selects a
    baseline instead (see :class:`TrainConfig`); every method ends with the model
    parametrized, so :func:`connected_synapses` and the compiler read it alike
    (:func:`rewire.training.gradr.remove_gradr` turns it into a plain model afterwards).

    Before any batch is read (or, where only the data tells the input shape or the options,
    before the first optimizer step) the model is lowered to the IR as ``rewire.compile``
    will lower it, with the run options training uses (:mod:`rewire.training.lowering`):
    what the compiler would refuse is refused before any epoch. The options are then
    recorded on the model; ``rewire.compile`` takes them as defaults and refuses an explicit
    one that differs (:mod:`rewire.frontends.run_options`).

    Any model the Norse frontend compiles trains here (see :mod:`rewire.training.feed`):
    rewire's ``SpikingMLP``/``SpikingConvNet``, a Norse ``SequentialState`` (called once per
    step), or a module with its own time loop over ``(T, B, ...)``; with the user's
    ``forward`` and ``loss`` if given. The data is a :class:`Split`, or a torch ``Dataset``/
    ``DataLoader`` of dense inputs ``(B, ...)`` (encoded over ``steps`` steps) or of spike
    trains ``(B, T, ...)`` (a ``DataLoader``'s collation of per-sample ``(T, ...)`` trains;
    ``(T, B, ...)`` too, see :func:`rewire.training.feed.detect_layout`).

    Under ``torch.distributed`` (initialised by the caller) the model is wrapped in
    ``DistributedDataParallel``: rank ``r`` of ``n`` takes samples ``r, r + n, ...`` of every
    batch, gradients are averaged across ranks before the optimizer step, and batch order,
    the controller and Deep R's re-activations use the same seed everywhere, so every rank
    ends with the same :math:`\theta`.

    Args:
        model: a fresh model (``method="gradr"``/``"gradr-fixed"`` also take one already
            passed through :func:`apply_gradr`, as :func:`model_budget` needs).
        data: a :class:`Split` (its test set is the test data), or a ``Dataset`` of ``(x, y)``
            samples (batched by ``config.batch_size``, shuffled with ``config.seed``), or a
            ``DataLoader`` of ``(x, y)`` batches (used as it is).
        budget: the :class:`SynapseBudget` to end inside.
        config: :class:`TrainConfig`.
        test_data: the test ``Dataset``/``DataLoader`` (required unless ``data`` is a Split).
        forward: ``forward(model, inputs) -> output`` with ``inputs`` ``(T, B, ...)`` (dense
            batches encoded, spike trains time first; rewire's own models get dense ``(B, F)``
            in training and encode it themselves); the output, or its first element when it
            is a tuple, must be spikes ``(T, B, classes)``. Default: see
            :func:`rewire.training.feed.default_forward`.
        loss: ``loss(output, labels) -> scalar``; default the cross-entropy of the spike
            counts. The accuracy always counts output spikes (the chip's rule).
        steps, encoding, input_gain: how dense input is presented (default: the model's
            attributes of those names, else 16 steps, ``"current"``, gain 4); for spike
            trains they come from the data. Pass the same to ``rewire.compile``
            (``TrainResult.run_options`` holds them).
        input_shape: per-sample input shape when the model's first layer does not tell it.
        time_axis: for spike trains, the batch's time axis (1: ``(B, T, ...)``, 0:
            ``(T, B, ...)``); default: read from the labels, refused when ``T == B``.

    Returns:
        :class:`TrainResult`.

    Raises:
        rewire.errors.LoweringError: what ``rewire.compile`` would refuse in the model
            (named, with the fix), before any training.
        ValueError: ``config.device`` names CUDA but none is available; data, run options or
            a model output that cannot be used (named, with the fix), before any training;
            sizes that cannot fit in memory (a ``__len__`` whose shuffled index, or ``steps``
            whose encoded batch, exceeds the memory available: the bytes named) before
            allocating; per batch: dense input that is not float32 or holds NaN/inf, labels
            outside ``[0, classes)`` (:mod:`rewire.training.guards`).
    """
    start = time.perf_counter()
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r}: CUDA is not available here; use cpu")
    for where, source in (("data", data), ("test_data", test_data)):
        if source is not None and not isinstance(source, Split):
            check_dataset_size(source, where)
    early = lower_before_data(model, steps, encoding, input_gain, input_shape)
    feed = Feed.build(model, data, test_data, config.batch_size, config.seed, steps=steps,
                      encoding=encoding, input_gain=input_gain, input_shape=input_shape,
                      time_axis=time_axis)
    check_fused_chains(model, feed.shape)  # issue 22: a fused chain cannot be counted
    shape = feed.shape if feed.rewire_model else feed.data_shape
    if early != (feed.run_options, shape):  # the data decided the options (spike trains)
        lower_for_training(model, feed.run_options, shape, input_shape)
    check_batch_memory(feed.steps, config.batch_size, feed.shape, model_neurons(model))
    loss_fn = loss or default_loss
    if METHOD_TYPES[config.method].needs_fresh_model and \
            any(True for _ in prunable_layers(model)):
        raise ValueError(f"method {config.method!r} needs a model without GradR "
                         f"parametrization; give a fresh model (compute the budget on a copy: "
                         f"probe = copy.deepcopy(model); apply_gradr(probe))")
    record_options(model, feed.run_options)
    check_fixed_synapses(model, budget)  # identity shortcuts, counted when lowered
    device = torch.device(config.device)
    rank, world = _world()
    torch.manual_seed(config.seed)
    model.to(device)
    total_steps = config.epochs * feed.steps_per_epoch(config.batch_size)
    gen = torch.Generator().manual_seed(config.seed)
    method = make_method(config.method, model, budget, config, total_steps, gen)
    opt = method.optimizer
    runner = Runner(model, forward)
    net = runner
    if world > 1:
        net = DistributedDataParallel(runner, device_ids=[device.index] if device.type == "cuda"
                                      else None)
    encode_gen = torch.Generator(device=device).manual_seed(config.seed)
    history = []
    bar = tqdm(range(config.epochs), desc=config.method, unit="epoch",
               disable=not config.progress or rank != 0)
    qat_run = QATRun(qat, model, config.epochs, feed.run_options)
    for epoch in bar:
        qat_run.epoch(epoch)
        model.train()
        total, seen = 0.0, 0
        for xb, yb in feed.train_batches(device, gen):
            check_batch(xb, yb, feed.layout.kind == "dense", "data")
            inputs, y, encoded = feed.inputs(model, xb, yb, rank, world, encode_gen, "data",
                                             train=True)
            out = net(inputs, encoded)
            check_output(out, len(y), int(yb.max()) + 1, "data")  # every batch's labels
            batch_loss = loss_fn(out, y)
            opt.zero_grad(set_to_none=True)
            batch_loss.backward()
            opt.step()
            method.step()
            total += float(batch_loss) * len(y)
            seen += len(yb)
        conn = method.connected() / budget.total_synapses
        alpha = method.alpha()
        history.append({"epoch": epoch + 1, "loss": total / seen * world,
                        "connectivity": conn, "alpha": alpha})
        bar.set_postfix(loss=f"{total / seen * world:.3f}", conn=f"{conn:.2%}",
                        alpha=f"{alpha:.3g}")
    method.finish()
    qat_run.finish()
    gradr_synapses = connected_synapses(model)
    gradr_fans = max_fan_in(model), max_fan_out(model, budget.fan_out_skip_last)
    gradr_accuracy = _accuracy(runner, feed, device, config.seed)
    removed = project_to_budget(model, budget) if method.projects else 0
    if removed:
        qat_run.finish()
    accuracy = _accuracy(runner, feed, device, config.seed) if removed else gradr_accuracy
    return TrainResult(gradr_synapses=gradr_synapses, gradr_accuracy=gradr_accuracy,
                       projected_away=removed, synapses=connected_synapses(model),
                       accuracy=accuracy, max_fan_in=max_fan_in(model),
                       seconds=time.perf_counter() - start, history=history,
                       method=config.method, gradr_max_fan_in=gradr_fans[0],
                       gradr_max_fan_out=gradr_fans[1], run_options=feed.run_options,
                       qat=qat_run.info)


@torch.no_grad()
def _accuracy(runner: Runner, feed: Feed, device: torch.device, seed: int) -> float:
    """Test accuracy (fraction) of ``runner`` on ``feed``'s test batches, by output spike
    count; dense input encoded with a generator seeded by ``seed`` (the same draws each
    call, so the accuracy before and after the projection see the same input)."""
    runner.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    correct = n = 0
    for xb, yb in feed.test_batches(device):
        check_batch(xb, yb, feed.test_layout.kind == "dense", "test_data")
        inputs, y, _ = feed.inputs(runner.model, xb, yb, 0, 1, gen, "test_data", train=False)
        out = runner(inputs, True)
        check_output(out, len(y), int(y.max()) + 1, "test_data")
        correct += int((predict(spike_count_logits(out)) == y).sum())
        n += len(y)
    return correct / n


def accuracy(model: nn.Module, data, *, forward: Callable | None = None,
             steps: int | None = None, encoding: str | None = None,
             input_gain: float | None = None, input_shape: tuple | None = None,
             time_axis: int | None = None, seed: int = 0, device: str = "cpu") -> float:
    """Accuracy (fraction in [0, 1]) of any model on ``data``, by output spike count (the
    chip's rule), read as :func:`train` reads its test data: after :func:`remove_gradr`, or
    for a model trained elsewhere.

    Args:
        model: as for :func:`train` (GradR-parametrized or plain).
        data: a :class:`Split` (its test set), a ``Dataset`` (batches of 512, in order) or a
            ``DataLoader`` of dense inputs or spike trains.
        forward, steps, encoding, input_gain, input_shape, time_axis: as for :func:`train`.
        seed: seeds rate coding of dense input.
        device: torch device the model runs on.

    Raises:
        ValueError: as :func:`train` for the data, the run options and the output.
    """
    split = isinstance(data, Split)
    feed = Feed.build(model, data, None if split else data, 512, seed, steps=steps,
                      encoding=encoding, input_gain=input_gain, input_shape=input_shape,
                      time_axis=time_axis)
    check_batch_memory(feed.steps, 512, feed.shape, model_neurons(model))
    model.to(torch.device(device))
    return _accuracy(Runner(model, forward), feed, torch.device(device), seed)
