"""The standard MNIST split (60,000 / 10,000), the explicit 8k/2k split of the t10k file, the
validation split carved from the training set, and the bookkeeping of
benchmarks/paper_mnist.py (results appended, runs skipped, learning rate chosen on validation)."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from rewire.training.data import (DATASETS, DataError, load_digits_split, load_mnist_split,
                                  load_mnist_standard, load_split, validation_split)

from conftest import SHARED

MNIST = SHARED / "mnist"
needs_standard = pytest.mark.skipif(
    not (MNIST / "train-images-idx3-ubyte.gz").exists()
    or not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
    reason="../shared/datasets/mnist lacks the train or t10k IDX files")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def standard():
    return load_split("mnist", MNIST)


@needs_standard
def test_mnist_is_the_standard_split_and_says_so(standard):
    assert standard.name == "mnist"
    assert standard.x_train.shape == (60000, 784) and standard.x_test.shape == (10000, 784)
    assert "standard MNIST" in standard.split and "60,000 train" in standard.split
    assert "10,000 test" in standard.split and "t10k-images" in standard.split
    # the first labels of the published files (train: 5 0 4 1 9, t10k: 7 2 1 0 4)
    assert standard.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert standard.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(standard.y_train.numpy()).tolist()[1] == 6742  # ones in the train set
    assert float(standard.x_train.max()) == 1.0 and standard.max_value == 255


@needs_standard
def test_old_split_is_explicit_and_named(standard):
    old = load_split("mnist-t10k", MNIST)
    assert "mnist-t10k" in DATASETS and old.name == "mnist-t10k"
    assert old.x_train.shape == (8000, 784) and old.x_test.shape == (2000, 784)
    assert "not the standard MNIST split" in old.split
    # both splits come from the same t10k file: the 8k/2k test set is its last 2,000 images
    assert (old.x_test == standard.x_test[-2000:]).all()
    assert (old.x_train == standard.x_test[:8000]).all()


@needs_standard
def test_validation_is_carved_from_the_training_set(standard):
    val = validation_split(standard, 10000)
    assert val.name == "mnist:validation" and "test set unread" in val.split
    assert val.x_train.shape == (50000, 784) and val.x_test.shape == (10000, 784)
    assert (val.x_test == standard.x_train[50000:]).all()
    assert (val.y_test == standard.y_train[50000:]).all()
    assert (val.x_train == standard.x_train[:50000]).all()


@pytest.mark.parametrize("n", [0, -1, 1437, 10**9])
def test_validation_size_out_of_range_is_refused(n):
    split = load_digits_split()  # 1,437 training images
    with pytest.raises(ValueError, match=r"validation size n must be in \(0, 1437\)"):
        validation_split(split, n)


def _idx(dims, body: bytes) -> bytes:
    return b"\x00\x00\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def _pair(folder: Path, stem: str, n: int, rows: int = 28, label: int = 3) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(_idx((n, rows, rows), bytes(n * rows * rows)), 1))
    (folder / f"{stem}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(_idx((n,), bytes([label] * n)), 1))


def test_without_train_files_mnist_is_the_named_8k2k_split(tmp_path):
    _pair(tmp_path / "d", "t10k", 10000)
    split = load_split("mnist", tmp_path / "d")
    assert split.name == "mnist-t10k" and "not the standard" in split.split
    assert split.x_train.shape == (8000, 784) and split.x_test.shape == (2000, 784)


def test_standard_split_reads_both_pairs(tmp_path):
    _pair(tmp_path / "d", "t10k", 7, label=1)
    _pair(tmp_path / "d", "train", 12, label=2)
    split = load_split("mnist", tmp_path / "d")
    assert split.name == "mnist" and split.x_train.shape == (12, 784)
    assert split.y_train.unique().tolist() == [2] and split.y_test.unique().tolist() == [1]
    assert "12 train" in split.split and "7 test" in split.split


def test_train_pair_without_test_pair_is_refused_naming_the_missing_files(tmp_path):
    _pair(tmp_path / "d", "train", 12)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_split("mnist", tmp_path / "d")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        load_mnist_standard(tmp_path / "d")


def test_train_and_test_of_different_image_sizes_are_refused(tmp_path):
    _pair(tmp_path / "d", "t10k", 5, rows=28)
    _pair(tmp_path / "d", "train", 5, rows=20)
    with pytest.raises(DataError, match="400 pixels per image but t10k"):
        load_mnist_standard(tmp_path / "d")


def test_old_split_from_a_train_file_says_which_file(tmp_path):
    _pair(tmp_path / "d", "train", 10)
    split = load_mnist_split(tmp_path / "d", n_train=8, n_test=2)
    assert split.name == "mnist-train-file" and "train-images" in split.split


def _bench():
    spec = importlib.util.spec_from_file_location("paper_mnist",
                                                  ROOT / "benchmarks" / "paper_mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(bench, method, lr, evaluated, level, seed, acc):
    row = dict.fromkeys(bench.FIELDS, 0)
    row.update(method=method, lr=lr, eval=evaluated, level=level, seed=seed, epochs=10,
               split="mnist", accuracy=acc, connectivity=level)
    return row


def test_results_are_appended_and_the_lr_is_chosen_on_validation_only(tmp_path):
    bench = _bench()
    path = tmp_path / "r.csv"
    rows = [_row(bench, "gradr", 2e-3, "validation", 0.005, 0, 0.90),
            _row(bench, "gradr", 4e-3, "validation", 0.005, 0, 0.93),
            _row(bench, "gradr", 8e-3, "test", 0.005, 0, 0.99),  # test rows never choose
            _row(bench, "gradr", 2e-3, "validation", 0.0025, 0, 0.95),
            _row(bench, "magnitude", 1e-3, "test", 0.005, 0, 0.91)]
    for r in rows:
        bench.append_row(path, r)
    back = bench.read_rows(path)
    assert [bench._key(r) for r in back] == [bench._key(r) for r in rows]
    assert bench.chosen_lr(back, "gradr", 0.005, 1e-3) == 4e-3
    assert bench.chosen_lr(back, "gradr", 0.0025, 1e-3) == 2e-3  # its own level's best
    # a level without validation rows: the best over the method's rows (mean 0.93 vs 0.925)
    assert bench.chosen_lr(back, "gradr", 0.01, 1e-3) == 4e-3
    assert bench.chosen_lr(back, "magnitude", 0.005, 5e-4) == 5e-4  # no validation rows
    table = bench.table(back)
    assert "| 0.5 % |" in table and "gradr 2, magnitude 2, deep-r 1" in table
    assert "+8.00" in table  # GradR's test mean 99 % vs magnitude's 91 %


def test_the_lr_is_chosen_on_validation_runs_of_the_same_length(tmp_path):
    """A rate chosen on 5-epoch runs is not carried to 15-epoch runs when 15-epoch validation
    runs exist (magnitude pruning lost 5-6 points from 5 to 15 epochs at its 5-epoch rate).
    Bookkeeping only, no training (well under 1 s)."""
    bench = _bench()
    rows = [_row(bench, "magnitude", 1e-3, "validation", 0.0025, 0, 0.91),
            _row(bench, "magnitude", 2e-3, "validation", 0.0025, 0, 0.86),
            _row(bench, "magnitude", 1e-3, "validation", 0.0025, 0, 0.85),
            _row(bench, "magnitude", 5e-4, "validation", 0.0025, 0, 0.90)]
    for r, epochs in zip(rows, (5, 5, 15, 15)):
        r["epochs"] = epochs
    assert bench.chosen_lr(rows, "magnitude", 0.0025, 1.0, 5) == 1e-3
    assert bench.chosen_lr(rows, "magnitude", 0.0025, 1.0, 15) == 5e-4
    # no validation run of that length: every run at the level (1e-3: mean 0.88 vs 0.90)
    assert bench.chosen_lr(rows, "magnitude", 0.0025, 1.0, 30) == 5e-4
    assert bench.chosen_lr(rows, "magnitude", 0.0025, 1.0) == 5e-4


def test_the_table_never_pools_test_runs_of_different_rates():
    """Test runs of one method, level and length at two rates: the cell holds the rate chosen
    on validation at that length and lists the other runs as not pooled (well under 1 s)."""
    bench = _bench()
    rows = [_row(bench, "magnitude", 5e-4, "validation", 0.0025, 0, 0.90),
            _row(bench, "magnitude", 1e-3, "validation", 0.0025, 0, 0.85),
            _row(bench, "magnitude", 1e-3, "test", 0.0025, 0, 0.84),
            _row(bench, "magnitude", 1e-3, "test", 0.0025, 1, 0.85),
            _row(bench, "magnitude", 5e-4, "test", 0.0025, 2, 0.91),
            _row(bench, "gradr", 4e-3, "test", 0.0025, 2, 0.93)]
    table = bench.table(rows)
    assert "91.00 (1 seed), lr 0.0005 (not pooled: lr 0.001 seed 0: 84.00; " in table
    assert "+2.00" in table  # GradR 93 % vs magnitude 91 % at the chosen rate only
