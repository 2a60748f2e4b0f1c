"""Data sets for the main job: embedded digits (default) and MNIST from IDX files.

* ``digits``: scikit-learn's handwritten digits (1,797 8x8 images, pixel values 0..16), which
  ship inside scikit-learn, so nothing is downloaded. Fixed split: 360 test images chosen by
  ``sklearn.model_selection.train_test_split(test_size=360, stratify=y, random_state=0)``,
  the other 1,437 train.
* ``mnist``: the IDX files ``t10k-images-idx3-ubyte(.gz)`` and ``t10k-labels-idx1-ubyte(.gz)``
  (or the ``train-*`` pair) from ``--data-dir``; first 8,000 images train, last 2,000 test
  (the split used for every MNIST figure in rewire). Pixel values 0..255.

Inputs are scaled to [0, 1] by ``1 / max_value``; the chip receives the raw integer pixel
value as a graded spike, so ``max_value`` fixes the input scale of the compiled network.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rewire.errors import DataError

DATASETS = ("digits", "mnist")
MNIST_FILES = (("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
               ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))




@dataclass(frozen=True)
class Split:
    """A train/test split of a classification data set.

    Attributes:
        name: data set name.
        x_train, x_test: float32 tensors ``(N, F)`` in [0, 1].
        y_train, y_test: int64 tensors ``(N,)``.
        max_value: integer value that maps to 1.0 (16 for digits, 255 for MNIST).
        num_classes: number of classes.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    max_value: int
    num_classes: int

    @property
    def num_features(self) -> int:
        """Input features per sample (64 for digits, 784 for MNIST)."""
        return self.x_train.shape[1]


def load_digits_split() -> Split:
    """scikit-learn digits, fixed stratified split: 1,437 train / 360 test (see module doc)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
    return _make_split("digits", x_tr, y_tr, x_te, y_te, max_value=16, num_classes=10)


#: Largest IDX body read (bytes): 256 MiB, over 5x MNIST's 60,000 training images (47 MB);
#: as float32 inputs that is at most 1 GiB.
#: The size the header declares is checked against it before the body is read, and no more
#: than that (plus one byte, to notice trailing data) is ever decompressed, so a 2 MB gzip
#: that expands to 2 GiB costs no more than the header says.
MAX_IDX_BYTES = 1 << 28
#: Most dimensions an IDX file may declare: images are (N, rows, cols), labels (N,).
MAX_IDX_DIMS = 4
#: Most pixels per image: 2**16, 83x MNIST's 784 (the first layer holds pixels x hidden
#: synapses, 16.7 M at 256 hidden units).
MAX_PIXELS = 1 << 16


def _read_idx(path: Path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file of unsigned bytes (LeCun's MNIST format), gzipped or not.

    Raises:
        DataError: unreadable or corrupt file, bad magic number, more than
            :data:`MAX_IDX_DIMS` dimensions, a declared size above ``max_bytes``, fewer
            values than declared, or data after them (the message names the file).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic "
                                f"number); give the MNIST files as downloaded")
            ndim = head[3]
            if not 1 <= ndim <= MAX_IDX_DIMS:
                raise DataError(f"{path}: IDX header declares {ndim} dimensions; MNIST files "
                                f"have 1 (labels) or 3 (images), at most {MAX_IDX_DIMS}")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{path}: IDX header promises {ndim} dimensions but the file "
                                f"ends after {4 + len(raw_dims)} bytes (truncated file?)")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            size = math.prod(dims)  # Python ints: a product cannot wrap to 0
            if size > max_bytes:
                raise DataError(f"{path}: IDX header declares shape {dims} = {size:,} values, "
                                f"more than the {max_bytes:,} rewire reads; not an MNIST file?")
            body = f.read(size + 1)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, cut-short or corrupt .gz
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(body) < size:
        raise DataError(f"{path}: expected {size} values for shape {dims}, found {len(body)} "
                        f"(truncated file?)")
    if len(body) > size:
        raise DataError(f"{path}: data continues after the {size} values of shape {dims} "
                        f"the header declares (corrupt header?)")
    return np.frombuffer(body[:size], dtype=np.uint8).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def mnist_files(data_dir: str | Path) -> tuple[Path, Path]:
    """Locate an MNIST images/labels IDX pair in ``data_dir`` (gzipped or not).

    Raises:
        DataError: the folder does not exist or holds no IDX pair.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir}: no such directory")
    for images, labels in MNIST_FILES:
        pi, pl = _find(data_dir, images), _find(data_dir, labels)
        if pi and pl:
            return pi, pl
    raise DataError(f"--data-dir {data_dir}: no MNIST IDX files found; expected "
                    f"{MNIST_FILES[0][0]}[.gz] and {MNIST_FILES[0][1]}[.gz]")


def load_mnist_split(data_dir: str | Path, n_train: int = 8000, n_test: int = 2000) -> Split:
    """MNIST from IDX files: the first ``n_train`` images train, the last ``n_test`` test.

    Raises:
        DataError: missing/malformed files, fewer than ``n_train + n_test`` images, or a
            label outside 0..9 (the message names the file).
    """
    pi, pl = mnist_files(data_dir)
    images, labels = _read_idx(pi), _read_idx(pl)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{pi}: images {images.shape} and labels {labels.shape} do not match")
    pixels = images.shape[1] * images.shape[2] if images.ndim == 3 else 0
    if not 1 <= pixels <= MAX_PIXELS:
        raise DataError(f"{pi}: images of {images.shape[1:]} = {pixels} pixels; rewire reads "
                        f"1..{MAX_PIXELS} pixels per image (MNIST: 28 x 28)")
    if len(images) < n_train + n_test:
        raise DataError(f"{pi}: {len(images)} images, need {n_train + n_test}")
    if labels.size and int(labels.max()) >= 10:
        bad = int(np.count_nonzero(labels >= 10))
        raise DataError(f"{pl}: {bad} labels are >= 10 (largest {int(labels.max())}); MNIST "
                        f"labels are the digits 0..9; give the labels file that belongs to "
                        f"{pi.name}")
    x = images.reshape(len(images), -1)
    return _make_split("mnist", x[:n_train], labels[:n_train], x[-n_test:], labels[-n_test:],
                       max_value=255, num_classes=10)


def _make_split(name, x_tr, y_tr, x_te, y_te, max_value, num_classes) -> Split:
    def fx(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32) / max_value)

    def fy(a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64))

    return Split(name, fx(x_tr), fy(y_tr), fx(x_te), fy(y_te), max_value, num_classes)


def load_split(name: str, data_dir: str | Path | None = None) -> Split:
    """Load ``digits`` (embedded) or ``mnist`` (needs ``data_dir``).

    Raises:
        DataError: unknown name, or ``mnist`` without a usable ``data_dir``.
    """
    if name == "digits":
        return load_digits_split()
    if name == "mnist":
        if data_dir is None:
            raise DataError("--dataset mnist needs --data-dir DIR with the MNIST IDX files")
        return load_mnist_split(data_dir)
    raise DataError(f"unknown dataset {name!r}: use one of {DATASETS}")
