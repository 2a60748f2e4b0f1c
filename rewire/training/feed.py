r"""How :func:`rewire.training.train.train` feeds any model: data, encoding, forward, loss
(the batch layout in :mod:`rewire.training.layout`, the forward and loss in
:mod:`rewire.training.forward`, event data sets in :mod:`rewire.training.events`).

Three kinds of model (the kinds the Norse frontend lowers, :mod:`rewire.frontends.norse`):

* **rewire's own** :class:`~rewire.training.model.SpikingMLP` and
  :class:`~rewire.training.conv.SpikingConvNet` (they have ``encode``/``run_encoded``): dense
  input ``(B, F)`` goes in as it is (the model encodes it), a spike train ``(T, B, F)`` through
  ``run_encoded`` (the model must be built with ``encoding="rate"``);
* **step-wise containers**, Norse ``SequentialState`` (or any supported cell on its own), called
  once per time step as ``out, state = model(x[t], state)``;
* **any other module**, with its own time loop over the input's first axis (``for t in
  range(x.shape[0])``, the way Norse's documentation writes it), called once on ``(T, B, ...)``.

The default forward returns the output spikes ``(T, B, classes)`` (the first element when
the model returns a tuple, e.g. ``(spikes, state)``); the default loss is the cross-entropy of
the output spike counts (:func:`~rewire.training.model.spike_count_logits`); the class is
the output neuron with the most spikes, the chip's rule.

**Data.** A :class:`~rewire.training.data.Split` of ``(N, F)`` tensors, or a torch
``Dataset`` of ``(x, y)`` samples, or a ``DataLoader`` yielding ``(x, y)`` batches. Each batch
is one of two kinds, told apart by its number of axes against the model's per-sample input
shape ``S`` (from its first ``Linear``/``LIFRecurrentCell``/``Conv``, or ``input_shape=``):

* **dense** ``(B, *S)``: presented for ``T = steps`` time steps as
  :func:`~rewire.training.model.encode_steps` does (``"current"``: the constant current
  ``input_gain * x``; ``"rate"``: Bernoulli spikes of probability ``x``);
* **spike trains** ``(B, T, *S)``: what a ``DataLoader`` makes of per-sample ``(T, *S)``
  spike trains (tonic's convention too); rewire moves time to the front, ``(T, B, *S)``,
  and presents them as they are (the compiled network takes them with ``encoding="rate"``).
  A batch already time-first ``(T, B, *S)`` (a custom ``collate_fn``) is read too: the batch
  axis is the one with as many entries as the batch has labels. When ``T == B`` the two are
  indistinguishable and the batch is refused: pass ``time_axis=1`` (``(B, T, ...)``) or
  ``time_axis=0`` (``(T, B, ...)``). Spike values must be 0 or 1 (the chip's input is binary
  spikes); counts from binning events (tonic ``ToFrame``) must be clipped first.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rewire.frontends.run_options import trained_options
from rewire.training.data import Split
from rewire.training.events import EventDataset
from rewire.training.forward import (Runner, check_output, default_forward, default_loss,
                                     first_output, is_rewire_model, is_stepwise, run_stepwise)
from rewire.training.layout import TIME_AXES, Layout, check_spikes, detect_layout, sample_shape
from rewire.training.model import ENCODINGS, encode_steps

__all__ = ["Feed", "make_loader", "pairs", "split_batches", "resolve_options", "is_split",
           "EventDataset", "Runner", "check_output", "default_forward", "default_loss",
           "first_output", "is_rewire_model", "is_stepwise", "run_stepwise", "TIME_AXES",
           "Layout", "check_spikes", "detect_layout", "sample_shape"]

DEFAULT_STEPS = 16
DEFAULT_GAIN = 4.0


def make_loader(data, batch_size: int, seed: int, shuffle: bool, where: str) -> DataLoader:
    """A ``DataLoader`` over ``data``: a ``Dataset`` is batched here (``batch_size``, shuffled
    by a generator seeded with ``seed`` when ``shuffle``: a new order every pass); a
    ``DataLoader`` is used as it is (its own batching and order).

    Raises:
        ValueError: ``data`` is neither (naming ``where``).
    """
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed))
    raise ValueError(f"{where}: give a rewire Split, a torch Dataset of (x, y) samples or a "
                     f"DataLoader of (x, y) batches, got {type(data).__name__}")


def pairs(loader: DataLoader, where: str) -> Iterator:
    """The ``(x, y)`` batches of ``loader``.

    Raises:
        ValueError: a batch is not a pair (naming ``where``).
    """
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            n = f" of {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            raise ValueError(f"{where}: each sample/batch must be a pair (x, y), got "
                             f"{type(batch).__name__}{n}")
        yield batch[0], batch[1]


def split_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  generator: torch.Generator | None) -> Iterator:
    """Batches of a :class:`Split`'s tensors: shuffled by ``torch.randperm(generator)`` (the
    order rewire's training has always used), or in order when ``generator`` is ``None``."""
    if generator is None:
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    order = torch.randperm(len(x), generator=generator).to(x.device)
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        yield x[idx], y[idx]


def resolve_options(model: nn.Module, steps, encoding, input_gain) -> tuple[int, str, float]:
    """Run options for dense input: the argument, else what an earlier :func:`train` recorded
    on the model (:data:`rewire.frontends.run_options.TRAINED_OPTIONS`), else the model's
    plain attribute of that name (as the frontend reads them), else the defaults (16 steps,
    ``"current"``, gain 4).

    Raises:
        ValueError: ``steps < 1``, an unknown encoding or ``input_gain <= 0``.
    """
    record = trained_options(model) or {}

    def pick(value, name, default):
        if value is not None:
            return value
        if record.get(name) is not None:
            return record[name]
        attr = getattr(model, name, None)
        return default if attr is None or isinstance(attr, (nn.Module, torch.Tensor)) else attr

    steps = pick(steps, "steps", DEFAULT_STEPS)
    encoding = pick(encoding, "encoding", "current")
    gain = pick(input_gain, "input_gain", DEFAULT_GAIN)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not (isinstance(gain, (int, float)) and math.isfinite(gain) and gain > 0):
        raise ValueError(f"input_gain must be a finite number > 0, got {gain!r}")
    return int(steps), str(encoding), float(gain)


def is_split(data) -> bool:
    """Whether ``data`` is a rewire :class:`Split`."""
    return isinstance(data, Split)


class Feed:
    """The training and test data of one run, checked and read the same way (see the module
    docstring): which batches, their :class:`Layout`, and the model's input per batch.

    Built by :meth:`build` before any training; every check on the data and the run options
    happens there, on the first batch of each source.
    """

    def __init__(self) -> None:
        self.split: Split | None = None
        self.train_loader = self.test_loader = None
        self.layout: Layout | None = None
        self.rewire_model = False
        self.steps, self.encoding, self.input_gain = DEFAULT_STEPS, "current", DEFAULT_GAIN
        self.test_layout: Layout | None = None
        self.shape: tuple = ()
        self.data_shape: tuple = ()  # per-sample shape of the first training batch
        self.train_size = 0
        self.batch_size = 1
        self.input_shape: tuple | None = None

    @classmethod
    def build(cls, model: nn.Module, data, test_data, batch_size: int, seed: int, *,
              steps=None, encoding=None, input_gain=None, input_shape=None,
              time_axis=None) -> "Feed":
        """Check ``data``/``test_data`` and the run options against ``model``.

        Raises:
            ValueError: naming the argument and the fix (see :func:`detect_layout`,
                :func:`make_loader`, :func:`resolve_options`), also for run options given
                for spike-train data that contradict it, a rewire model given run options
                (they are its own attributes) or a rewire model with ``encoding="current"``
                given spike trains.
        """
        feed = cls()
        feed.rewire_model = is_rewire_model(model)
        if feed.rewire_model and (steps, encoding, input_gain) != (None, None, None):
            raise ValueError(f"{type(model).__name__} presents its input itself: steps, "
                             f"encoding and input_gain are its own attributes; build it with "
                             f"them instead of passing them to train()")
        feed.steps, feed.encoding, feed.input_gain = resolve_options(model, steps, encoding,
                                                                     input_gain)
        if feed.rewire_model:  # its input_gain is its own forward's: none is applied before it
            feed.input_gain = 1.0
        feed.shape = sample_shape(model, input_shape)
        if feed.rewire_model:  # rewire's models take flat features and reshape them
            feed.shape = (math.prod(feed.shape),)
        feed.batch_size = int(batch_size)
        if is_split(data):
            feed.split = data
            if test_data is not None:
                raise ValueError("test_data: a Split carries its own test set; give either a "
                                 "Split, or Datasets/DataLoaders as data and test_data")
            x0, y0 = data.x_train[:2], data.y_train[:2]
            xt, yt = data.x_test[:2], data.y_test[:2]
            feed.train_size = len(data.x_train)
            if feed.train_size == 0 or len(data.x_test) == 0:
                raise ValueError("data: the Split has an empty train or test set")
        else:
            if test_data is None:
                raise ValueError("test_data: give the test Dataset/DataLoader too (the "
                                 "accuracy before and after the projection is measured on it)")
            feed.train_loader = make_loader(data, batch_size, seed, True, "data")
            feed.test_loader = make_loader(test_data, 512, seed, False, "test_data")
            try:
                feed.train_size = len(feed.train_loader.dataset)
                len(feed.train_loader)
            except TypeError:
                raise ValueError("data: its DataLoader has no length (an IterableDataset?); "
                                 "the budget schedule needs the steps per epoch: give a "
                                 "map-style Dataset") from None
            x0, y0 = _first(feed.train_loader, "data")
            xt, yt = _first(feed.test_loader, "test_data")
        feed.layout = detect_layout(x0, y0, feed.shape, time_axis, feed.steps, "data")
        feed.test_layout = detect_layout(xt, yt, feed.shape, time_axis, feed.steps,
                                         "test_data")
        drop = {feed.layout.batch_axis, feed.layout.time_axis}
        feed.data_shape = tuple(int(n) for k, n in enumerate(x0.shape) if k not in drop)
        if (feed.test_layout.kind, feed.test_layout.steps) != (feed.layout.kind,
                                                                 feed.layout.steps):
            raise ValueError(f"test_data: its batches are {feed.test_layout.kind} "
                             f"(T={feed.test_layout.steps}) but data's are {feed.layout.kind} "
                             f"(T={feed.layout.steps}); give both the same kind and T")
        if feed.layout.kind == "spikes":
            check_spikes(x0, "data")
            check_spikes(xt, "test_data")
            t = feed.layout.steps
            if feed.rewire_model:
                if getattr(model, "encoding", None) != "rate":
                    raise ValueError(f"data: spike trains, but this {type(model).__name__} has "
                                     f"encoding {model.encoding!r} (dense input); build it "
                                     f"with encoding='rate' to train it on spike trains")
                if int(model.steps) != t:
                    raise ValueError(f"data: spike trains of T={t} steps, but this "
                                     f"{type(model).__name__} has steps={model.steps} (the "
                                     f"compiled network runs that many); build it with "
                                     f"steps={t}")
            else:
                if steps is not None and int(steps) != t:
                    raise ValueError(f"steps={steps}, but the spike trains have T={t} steps; "
                                     f"drop steps (it is read from the data)")
                if encoding not in (None, "rate"):
                    raise ValueError(f"encoding={encoding!r}, but spike trains are presented "
                                     f"as they are (encoding 'rate' when compiled); drop "
                                     f"encoding")
            feed.steps, feed.encoding, feed.input_gain = t, "rate", 1.0
        feed.input_shape = _told_by_data(model, feed, x0)
        if None in feed.shape:  # a conv net's image size: the data's
            feed.shape = tuple(x0.shape[1 if feed.layout.kind == "dense" else 2:])
        return feed

    @property
    def run_options(self) -> dict:
        """``steps``, ``encoding``, ``input_gain``: what ``rewire.compile`` needs to present the
        input as training did (``input_gain`` is the factor applied to dense input *before*
        the model's forward: 1 for a model that presents its input itself, whose own gain is
        in its forward; the compiled network's gain is that times the forward's own,
        :mod:`rewire.frontends.run_options`); and ``input_shape``, the data's per-sample
        shape, where the model alone does not tell it (a conv net's image size, an image its
        forward flattens)."""
        shape = {} if self.input_shape is None else {"input_shape": self.input_shape}
        return {"steps": self.steps, "encoding": self.encoding, "input_gain": self.input_gain,
                **shape}

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in one pass over the training data."""
        if self.split is not None:
            return -(-self.train_size // batch_size)
        return len(self.train_loader)

    def train_batches(self, device, generator: torch.Generator) -> Iterator:
        """One epoch of ``(x, y)`` training batches on ``device`` (``generator`` orders a
        Split)."""
        if self.split is not None:
            yield from split_batches(self.split.x_train.to(device),
                                     self.split.y_train.to(device), self.batch_size, generator)
            return
        for x, y in pairs(self.train_loader, "data"):
            yield x.to(device), y.to(device)

    def test_batches(self, device) -> Iterator:
        """The ``(x, y)`` test batches on ``device``, in order."""
        if self.split is not None:
            yield from split_batches(self.split.x_test.to(device), self.split.y_test.to(device),
                                     512, None)
            return
        for x, y in pairs(self.test_loader, "test_data"):
            yield x.to(device), y.to(device)

    def inputs(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, rank: int, world: int,
               generator: torch.Generator | None, where: str, train: bool):
        """The model's input for batch ``(x, y)`` (this rank's samples ``rank::world``):
        ``(inputs, labels, encoded)``.

        Raises:
            ValueError: the batch does not keep the first batch's layout, or holds spike
                values other than 0/1 (naming ``where``).
        """
        lay = self.layout if train else self.test_layout
        b = len(y)
        if x.dim() != len(self.shape) + (1 if lay.kind == "dense" else 2) or \
                x.shape[lay.batch_axis] != b or \
                (lay.kind == "spikes" and x.shape[lay.time_axis] != lay.steps):
            raise ValueError(f"{where}: a batch of shape {tuple(x.shape)} with {b} labels does "
                             f"not keep the first batch's layout ({lay.kind}, "
                             f"T={lay.steps}); give every batch the same layout")
        if lay.kind == "dense":
            x, y = x[rank::world], y[rank::world]
            if self.rewire_model and train:
                return x, y, False
            if self.rewire_model:
                return model.encode(x, generator), y, True
            return encode_steps(x, self.steps, self.encoding, self.input_gain, generator), y, \
                True
        check_spikes(x, where)
        x = x.float()
        if lay.time_axis == 1:
            x = x.transpose(0, 1)
        return x[:, rank::world], y[rank::world], True


def _told_by_data(model: nn.Module, feed: Feed, x0: torch.Tensor) -> tuple | None:
    """The first batch's per-sample shape where the model alone does not tell it (its
    :func:`sample_shape` without ``input_shape=`` differs or leaves sizes open), else
    ``None``; rewire's own models carry theirs."""
    if feed.rewire_model:
        return None
    data = tuple(int(s) for s in x0.shape[1 if feed.layout.kind == "dense" else 2:])
    try:
        own = sample_shape(model)
    except ValueError:
        own = None
    return None if own == data else data


def _first(loader: DataLoader, where: str):
    for x, y in pairs(loader, where):
        return x, y
    raise ValueError(f"{where}: it holds no samples")
