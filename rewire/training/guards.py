"""Input checks of :func:`rewire.training.train.train` that run before and during training
(issue 27, item 3): the hyper-parameters' ranges, sizes bounded by memory before anything is
allocated, and every batch's values (cheap: one ``torch.isfinite`` and one label min/max per
batch).

Decision on dtypes: dense input must be ``float32`` (the model's dtype); ``float64``,
``float16``, integer and boolean dense input are refused with the fix (``x.float()``, or
``x.float() / 255`` for 8-bit images), never converted behind the user's back. Spike trains
hold exact 0/1 values and are converted to ``float32`` as before (lossless).
"""

from __future__ import annotations

import math
import numbers
import os
import resource

import torch
from torch.utils.data import DataLoader, RandomSampler

__all__ = ["check_number", "available_bytes", "check_dataset_size", "check_batch_memory",
           "model_neurons",
           "check_batch", "check_labels"]

#: Fraction of the available memory one batch's input may take (the rest: activations kept
#: for the backward pass, the model, the optimizer).
BATCH_MEMORY_SHARE = 0.5


def check_number(name: str, value, lo: float, hi: float, integer: bool = False,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """``value`` a finite number (an integer if ``integer``; never a ``bool``) in the range.

    Raises:
        TypeError: not a number (or not an integer). ValueError: out of range or not finite.
    """
    kind = numbers.Integral if integer else numbers.Real
    what = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    bad_lo = value <= lo if lo_open else value < lo
    bad_hi = value >= hi if hi_open else value > hi
    if not math.isfinite(value) or bad_lo or bad_hi:
        raise ValueError(f"{name} must be {what} in {left}{lo:g}, {hi:g}{right}, got {value!r}")


def available_bytes() -> int:
    """Memory this process may still allocate: ``MemAvailable`` of ``/proc/meminfo``, capped
    by the address-space limit (``RLIMIT_AS``) where one is set; 2**63 where neither is
    known."""
    avail = 1 << 63
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        try:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # pragma: no cover
            used = 0
        avail = min(avail, max(0, soft - used))
    return avail


def _gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_dataset_size(data, where: str) -> None:
    """Refuse a ``Dataset``/``DataLoader`` whose ``__len__`` cannot be sampled in memory: a
    shuffled pass draws ``torch.randperm(len)`` (8 bytes per sample) before the first batch.

    Raises:
        ValueError: ``__len__`` is not an integer >= 0, or its index would not fit (the bytes
            needed and available named).
    """
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(data, DataLoader) and not isinstance(data.sampler, RandomSampler):
        return
    try:
        n = len(dataset)
    except TypeError:
        return  # no length: Feed.build refuses it by name
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{where}: its __len__ cannot be read ({exc})") from None
    need, have = 8 * n, available_bytes()
    if need > have:
        raise ValueError(f"{where}: __len__ = {n:,} samples; shuffling them needs an index of "
                         f"{_gb(need)}, but {_gb(have)} of memory is available; give the real "
                         f"size (or a DataLoader with its own sampler)")


def model_neurons(model) -> int:
    """Neurons a model's weights feed, counted as the output rows of every weight matrix or
    kernel (``weight.shape[0]``; a conv layer's feature map counts one per channel, so this
    is a lower bound)."""
    return sum(int(p.shape[0]) for name, p in model.named_parameters()
               if p.dim() >= 2 and name.split(".")[-1].startswith(("weight", "original")))


#: Floats kept per neuron and step for the backward pass (current, voltage, spikes and the
#: surrogate gradient's input).
STATE_FLOATS = 4


def check_batch_memory(steps: int, batch_size: int, shape: tuple, neurons: int,
                       where: str = "steps") -> None:
    """Refuse run options whose one batch cannot fit in :data:`BATCH_MEMORY_SHARE` of the
    available memory: the encoded input ``(steps, batch, *shape)`` and the states kept for
    backpropagation through time (``STATE_FLOATS`` per neuron and step), float32.

    Raises:
        ValueError: naming the bytes one batch needs, those available and what to lower.
    """
    per_step = batch_size * (math.prod(shape) + STATE_FLOATS * neurons)
    need = 4 * steps * per_step
    have = available_bytes() * BATCH_MEMORY_SHARE
    if need > have:
        raise ValueError(f"{where}: one batch of {batch_size:,} samples presented for "
                         f"{steps:,} steps needs at least {_gb(need)} (input "
                         f"{', '.join(map(str, shape))} and {neurons:,} neurons' states per "
                         f"step, float32), more than {_gb(have)} (half the memory available); "
                         f"lower steps or batch_size")


def check_batch(x: torch.Tensor, y: torch.Tensor, dense: bool, where: str) -> None:
    """One batch's values: dense input ``float32`` and finite; labels >= 0.

    Raises:
        ValueError: naming ``where``, what was found and the fix.
    """
    if dense:
        if x.dtype != torch.float32:
            fix = "x.float() / 255 (8-bit images)" if x.dtype == torch.uint8 else "x.float()"
            raise ValueError(f"{where}: dense input must be float32 (the model's dtype), got "
                             f"{x.dtype}; convert it with {fix}: rewire does not convert it "
                             f"for you")
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{where}: {bad} input values are NaN or infinite; clean the data "
                             f"(torch.nan_to_num) before training")
    if y.numel() and int(y.min()) < 0:
        raise ValueError(f"{where}: labels must be class indices in [0, classes), found "
                         f"{int(y.min())}")


def check_labels(y: torch.Tensor, classes: int, where: str) -> None:
    """Labels below ``classes`` (the model's output neurons).

    Raises:
        ValueError: naming ``where``, the largest label and the classes.
    """
    if y.numel() and int(y.max()) >= classes:
        raise ValueError(f"{where}: labels must be class indices in [0, {classes}) (the "
                         f"model's output neurons), found {int(y.max())}")
