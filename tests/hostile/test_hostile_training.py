"""Hostile inputs to ``rewire.train`` (issue 27, item 3): NaN/inf inputs (checked on every
batch, not only the first), labels outside ``[0, classes)`` (``-1`` raised ``IndexError``),
float64 dense input (refused with the fix ``x.float()``: rewire does not convert it), a
``__len__`` of 10**12 and ``steps`` of 10**7 (refused with the bytes before anything is
allocated), ``alpha=inf`` and ``seed=-1``. Each is a ``ValueError``/``TypeError`` naming the
argument, before or instead of a torch traceback."""

from __future__ import annotations

import math
import resource
import time

import pytest

from rewire.errors import CompileError
import torch
from norse.torch import LIFCell, SequentialState
from torch import nn
from torch.utils.data import Dataset, TensorDataset

import rewire
from rewire.training.train import TrainConfig, train

CONFIG = dict(epochs=1, progress=False, batch_size=16)


def _tiny():
    torch.manual_seed(0)
    model = SequentialState(nn.Linear(8, 6, bias=False), LIFCell(),
                            nn.Linear(6, 3, bias=False), LIFCell())
    rewire.apply_gradr(model)
    return model, rewire.model_budget(model, connectivity=0.5)


def _data(n=64, dtype=torch.float32, bad_at=None, bad=math.nan, label=None):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 8, generator=g).to(dtype)
    y = torch.randint(0, 3, (n,), generator=g)
    if bad_at is not None:
        x[bad_at, 0] = bad
    if label is not None:
        y[-1] = label
    return TensorDataset(x, y)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_or_inf_in_a_later_batch_is_refused(bad):
    model, budget = _tiny()
    with pytest.raises(ValueError, match=r"data: 1 input values are NaN or infinite"):
        train(model, _data(bad_at=63, bad=bad), budget, TrainConfig(**CONFIG),
              test_data=_data(), steps=4)


@pytest.mark.parametrize("label,match", [(-1, r"labels must be class indices in \[0, "
                                                r"classes\), found -1"),
                                         (3, r"labels go up to 3 but the model has")])
def test_labels_outside_the_classes_are_refused_in_any_batch(label, match):
    model, budget = _tiny()
    with pytest.raises(ValueError, match=match):
        train(model, _data(label=label), budget, TrainConfig(**CONFIG), test_data=_data(),
              steps=4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.uint8])
def test_dense_input_that_is_not_float32_is_refused_with_the_fix(dtype):
    model, budget = _tiny()
    with pytest.raises(ValueError, match=rf"dense input must be float32.*{dtype}.*x\.float\(\)"):
        train(model, _data(dtype=dtype), budget, TrainConfig(**CONFIG), test_data=_data(),
              steps=4)


class Huge(Dataset):
    def __len__(self):
        return 10**12

    def __getitem__(self, i):
        return torch.zeros(8), 0


def test_a_dataset_of_10_12_samples_is_refused_before_allocating():
    model, budget = _tiny()
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"data: __len__ = 1,000,000,000,000 samples; "
                                         r"shuffling them needs an index of 7,450.6 GiB"):
        train(model, Huge(), budget, TrainConfig(**CONFIG), test_data=_data(), steps=4)
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB


def test_steps_of_10_7_are_refused_with_the_bytes_before_allocating(monkeypatch):
    """10**7 steps: the early lowering refuses it as rewire.compile would (steps <= 10**6);
    10**6 steps on a machine of 1 GiB: the memory check names the bytes; nothing is
    allocated in either case."""
    from rewire.training import guards
    real = guards.available_bytes()
    monkeypatch.setattr(guards, "available_bytes", lambda: min(real, 1 << 30))  # any machine
    model, budget = _tiny()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CompileError, match=r"steps must be an integer in \[1, 1000000\], got "
                                           r"10000000"):
        train(model, _data(), budget, TrainConfig(**CONFIG), test_data=_data(), steps=10**7)
    model, budget = _tiny()
    with pytest.raises(ValueError, match=r"steps: one batch of 16 samples presented for "
                                         r"1,000,000 steps needs at least [0-9.]+ GiB \(input 8 "
                                         r"and 9 neurons' states"):
        train(model, _data(), budget, TrainConfig(**CONFIG), test_data=_data(), steps=10**6)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000


@pytest.mark.parametrize("field,value,error", [
    ("alpha", math.inf, ValueError), ("alpha", math.nan, ValueError),
    ("lr", math.inf, ValueError), ("seed", -1, ValueError), ("seed", 1.5, TypeError),
    ("seed", 2**64, ValueError), ("epochs", 2.5, TypeError), ("epochs", True, TypeError),
    ("batch_size", 1.5, TypeError), ("momentum", math.nan, ValueError),
    ("momentum", 1.0, ValueError), ("deep_r_alpha", -1.0, ValueError),
    ("deep_r_temperature", math.inf, ValueError)])
def test_train_config_refuses_out_of_range_fields(field, value, error):
    with pytest.raises(error, match=field):
        TrainConfig(**{field: value})
