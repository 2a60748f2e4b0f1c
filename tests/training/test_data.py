"""Data: the embedded digits split and MNIST IDX files (from ../shared/datasets/mnist)."""

from __future__ import annotations

import gzip

import pytest

from rewire.training.data import DataError, load_digits_split, load_mnist_split, load_split

from conftest import SHARED

MNIST = SHARED / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason="../shared/datasets/mnist not present")


def test_digits_split_is_fixed():
    a, b = load_digits_split(), load_digits_split()
    assert a.x_train.shape == (1437, 64) and a.x_test.shape == (360, 64)
    assert (a.x_test == b.x_test).all() and (a.y_test == b.y_test).all()
    assert float(a.x_train.max()) == 1.0 and a.max_value == 16
    assert (a.x_train * 16).round().eq(a.x_train * 16).all()  # exact graded payloads


@needs_mnist
def test_mnist_subset_split():
    s = load_mnist_split(MNIST)
    assert s.x_train.shape == (8000, 784) and s.x_test.shape == (2000, 784)
    assert s.max_value == 255 and int(s.y_train.max()) == 9


def test_truncated_idx_is_refused(tmp_path):
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\x00" * 10)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + b"\x01" * 5)
    with pytest.raises(DataError, match="truncated"):
        load_mnist_split(tmp_path)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset"):
        load_split("cifar")


def test_idx_header_with_an_empty_dimension_is_refused_by_name(tmp_path):
    """Dimensions (0, 2**32 - 1, 2**32 - 1): 0 values, but numpy cannot shape the array
    ('array is too big', found by the IDX fuzz with seed 1947069908); the error names the
    file."""
    import struct

    from rewire.errors import DataError
    from rewire.training.data import _read_idx

    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 0, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DataError, match="images-idx3-ubyte.*empty dimension"):
        _read_idx(path)
