"""Data sets for the main job: embedded digits (default) and MNIST from IDX files.

* ``digits``: scikit-learn's handwritten digits (1,797 8x8 images, pixel values 0..16), which
  ship inside scikit-learn, so nothing is downloaded. Fixed split: 360 test images chosen by
  ``sklearn.model_selection.train_test_split(test_size=360, stratify=y, random_state=0)``,
  the other 1,437 train.
* ``digits-xylo``: the 16-channel 8-class task of SynSense Xylo (16 input channels, 8
  outputs): the ``digits`` split's images of the classes 0-7 (1,154 train / 289 test), each
  8x8 image sum-pooled 2x2 to 4x4 = 16 features (0..64), made event counts
  ``round(v / 64 * 15)`` in 0..15 (Xylo takes at most 15 input events per channel and step);
  ``x = counts / 15``, ``max_value = 15``, so the chip's integer payload is the count itself.
* ``mnist``: the standard split of LeCun, Cortes & Burges' MNIST database (LeCun et al.,
  Proc. IEEE 86(11), 1998): the 60,000 images of ``train-images-idx3-ubyte(.gz)`` train, the
  10,000 of ``t10k-images-idx3-ubyte(.gz)`` test, both pairs read from ``--data-dir``. This is
  the split papers report MNIST results on. Where ``--data-dir`` holds only the t10k pair,
  ``mnist`` falls back to the split below, and the :class:`Split` is named ``mnist-t10k``
  (the job's log and ``report.json`` print that name), never ``mnist``.
* ``mnist-t10k``: the older split of the t10k file alone: its first 8,000 images train, its
  last 2,000 test (every MNIST figure rewire measured before the training set was available).
  Pixel values 0..255.

Hyper-parameters are chosen on :func:`validation_split`, which holds out the last images of
the TRAINING set and never reads the test set.

Inputs are scaled to [0, 1] by ``1 / max_value``; the chip receives the raw integer pixel
value as a graded spike, so ``max_value`` fixes the input scale of the compiled network.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rewire.errors import DataError

DATASETS = ("digits", "digits-xylo", "mnist", "mnist-t10k")
MNIST_TEST = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_TRAIN = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
MNIST_FILES = (MNIST_TEST, MNIST_TRAIN)
#: The split the t10k file alone gives (``mnist-t10k``): first 8,000 train, last 2,000 test.
T10K_TRAIN, T10K_TEST = 8000, 2000


@dataclass(frozen=True)
class Split:
    """A train/test split of a classification data set.

    Attributes:
        name: data set name (``mnist`` only for the standard 60,000/10,000 split;
            ``mnist-t10k`` for the 8,000/2,000 split of the t10k file).
        x_train, x_test: float32 tensors ``(N, F)`` in [0, 1].
        y_train, y_test: int64 tensors ``(N,)``.
        max_value: integer value that maps to 1.0 (16 for digits, 255 for MNIST).
        num_classes: number of classes.
        split: which images train and which test, in words (files and counts), for reports;
            ``""`` where the maker of the split gave none.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    max_value: int
    num_classes: int
    split: str = ""

    @property
    def num_features(self) -> int:
        """Input features per sample (64 for digits, 784 for MNIST), in any layout."""
        return math.prod(self.x_train.shape[1:])


def load_digits_split() -> Split:
    """scikit-learn digits, fixed stratified split: 1,437 train / 360 test (see module doc)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
    return _make_split("digits", x_tr, y_tr, x_te, y_te, max_value=16, num_classes=10,
                       split="scikit-learn digits: 1,437 train / 360 test (stratified, "
                             "random_state=0)")


#: ``digits-xylo``: the classes kept, the pooling window and the most events per channel and
#: step (Xylo Audio 2 clips input events at 15 per channel and step: rockpool 3.1
#: ``devices/xylo/syns61201/xylo_sim.py``, measured against XyloSim 0.1.3).
XYLO_CLASSES, XYLO_POOL, XYLO_EVENTS = 8, 2, 15


def load_digits_xylo_split() -> Split:
    """``digits-xylo``: the ``digits`` split (:func:`load_digits_split`) restricted to the
    classes 0-7 (1,154 train / 289 test), 2x2 sum-pooled to 16 features and made event counts
    ``round(v / 64 * 15)`` in 0..15; ``x = counts / 15`` (float32 ``(N, 16)``),
    ``max_value = 15``, 8 classes (see the module doc)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
    top = 16 * XYLO_POOL * XYLO_POOL  # a pooled window of four pixels 0..16

    def counts(images: np.ndarray) -> np.ndarray:
        side = 8 // XYLO_POOL
        pooled = images.reshape(-1, side, XYLO_POOL, side, XYLO_POOL).sum(axis=(2, 4))
        return np.rint(pooled.reshape(len(images), -1) / top * XYLO_EVENTS)

    keep_tr, keep_te = y_tr < XYLO_CLASSES, y_te < XYLO_CLASSES
    return _make_split("digits-xylo", counts(x_tr[keep_tr]), y_tr[keep_tr],
                       counts(x_te[keep_te]), y_te[keep_te], max_value=XYLO_EVENTS,
                       num_classes=XYLO_CLASSES,
                       split=f"scikit-learn digits 0-7, 2x2 sum-pooled to 16 event counts "
                             f"0..{XYLO_EVENTS}: {int(keep_tr.sum()):,} train / "
                             f"{int(keep_te.sum()):,} test (the digits split, stratified, "
                             f"random_state=0)")


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
            if 0 in dims and math.prod(d for d in dims if d) > max_bytes:
                # 0 values, but numpy cannot shape them ('array is too big')
                raise DataError(f"{path}: IDX header declares shape {dims} with an empty "
                                f"dimension; not an MNIST file?")
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


def _check_dir(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir}: no such directory")
    return data_dir


def _pair(data_dir: Path, stems: tuple[str, str]) -> tuple[Path, Path] | None:
    """The images/labels files of ``stems`` in ``data_dir`` (``.gz`` preferred), or None."""
    pi, pl = _find(data_dir, stems[0]), _find(data_dir, stems[1])
    return (pi, pl) if pi and pl else None


def mnist_files(data_dir: str | Path) -> tuple[Path, Path]:
    """Locate an MNIST images/labels IDX pair in ``data_dir`` (gzipped or not): the t10k pair,
    else the train pair.

    Raises:
        DataError: the folder does not exist or holds no IDX pair.
    """
    data_dir = _check_dir(data_dir)
    for stems in MNIST_FILES:
        found = _pair(data_dir, stems)
        if found:
            return found
    raise DataError(f"--data-dir {data_dir}: no MNIST IDX files found; expected "
                    f"{MNIST_TEST[0]}[.gz] and {MNIST_TEST[1]}[.gz]")


def _read_pair(pi: Path, pl: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, pixels)`` uint8 and labels ``(N,)`` uint8 of one IDX pair, checked.

    Raises:
        DataError: malformed files, images and labels of different counts, images outside
            1..:data:`MAX_PIXELS` pixels, or a label outside 0..9 (the message names the file).
    """
    images, labels = _read_idx(pi), _read_idx(pl)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{pi}: images {images.shape} and labels {labels.shape} do not match")
    pixels = images.shape[1] * images.shape[2]
    if not 1 <= pixels <= MAX_PIXELS:
        raise DataError(f"{pi}: images of {images.shape[1:]} = {pixels} pixels; rewire reads "
                        f"1..{MAX_PIXELS} pixels per image (MNIST: 28 x 28)")
    if labels.size and int(labels.max()) >= 10:
        bad = int(np.count_nonzero(labels >= 10))
        raise DataError(f"{pl}: {bad} labels are >= 10 (largest {int(labels.max())}); MNIST "
                        f"labels are the digits 0..9; give the labels file that belongs to "
                        f"{pi.name}")
    return images.reshape(len(images), -1), labels


def load_mnist_split(data_dir: str | Path, n_train: int = T10K_TRAIN,
                     n_test: int = T10K_TEST) -> Split:
    """MNIST from one IDX pair (the t10k pair, else the train pair; see :func:`mnist_files`):
    its first ``n_train`` images train, its last ``n_test`` test. Named ``mnist-t10k``
    (``mnist-train-file`` when read from the train pair); :attr:`Split.split` names the file.

    Raises:
        DataError: missing/malformed files, fewer than ``n_train + n_test`` images, or a
            label outside 0..9 (the message names the file).
    """
    pi, pl = mnist_files(data_dir)
    x, labels = _read_pair(pi, pl)
    if len(x) < n_train + n_test:
        raise DataError(f"{pi}: {len(x)} images, need {n_train + n_test}")
    name = "mnist-t10k" if pi.name.startswith("t10k") else "mnist-train-file"
    return _make_split(name, x[:n_train], labels[:n_train], x[-n_test:], labels[-n_test:],
                       max_value=255, num_classes=10,
                       split=f"{pi.name}: first {n_train:,} train / last {n_test:,} test "
                             f"(not the standard MNIST split)")


def load_mnist_standard(data_dir: str | Path) -> Split:
    """The standard MNIST split: every image of the train pair trains, every image of the
    t10k pair tests (60,000 / 10,000 for the published files; LeCun et al. 1998).

    Raises:
        DataError: the folder lacks either pair, or a file is malformed (see
            :func:`_read_pair`).
    """
    data_dir = _check_dir(data_dir)
    train, test = _pair(data_dir, MNIST_TRAIN), _pair(data_dir, MNIST_TEST)
    if train is None or test is None:
        missing = " and ".join(f"{a}[.gz] + {b}[.gz]" for (a, b), got in
                               ((MNIST_TRAIN, train), (MNIST_TEST, test)) if got is None)
        raise DataError(f"--data-dir {data_dir}: the standard MNIST split needs {missing}")
    x_tr, y_tr = _read_pair(*train)
    x_te, y_te = _read_pair(*test)
    if x_tr.shape[1] != x_te.shape[1]:
        raise DataError(f"{train[0]}: {x_tr.shape[1]} pixels per image but {test[0].name} has "
                        f"{x_te.shape[1]}; give both files of one data set")
    return _make_split("mnist", x_tr, y_tr, x_te, y_te, max_value=255, num_classes=10,
                       split=f"standard MNIST: {len(x_tr):,} train ({train[0].name}) / "
                             f"{len(x_te):,} test ({test[0].name})")


def validation_split(split: Split, n: int) -> Split:
    """Hold out the last ``n`` TRAINING samples of ``split`` as the set to score on, for
    choosing hyper-parameters: train on the rest; the test set is not part of the result.

    Returns:
        A :class:`Split` named ``<name>:validation`` whose ``x_test``/``y_test`` are the held
        out training samples.

    Raises:
        ValueError: ``n`` not in ``(0, len(split.x_train))``.
    """
    n_train = len(split.x_train)
    if not 0 < n < n_train:
        raise ValueError(f"validation size n must be in (0, {n_train}), got {n}")
    keep = n_train - n
    return dataclasses.replace(
        split, name=f"{split.name}:validation", x_train=split.x_train[:keep],
        y_train=split.y_train[:keep], x_test=split.x_train[keep:], y_test=split.y_train[keep:],
        split=f"validation: first {keep:,} training samples train, last {n:,} score "
              f"(test set unread); from {split.split or split.name}")


def _make_split(name, x_tr, y_tr, x_te, y_te, max_value, num_classes, split="") -> Split:
    def fx(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32) / max_value)

    def fy(a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64))

    return Split(name, fx(x_tr), fy(y_tr), fx(x_te), fy(y_te), max_value, num_classes, split)


def load_split(name: str, data_dir: str | Path | None = None) -> Split:
    """Load ``digits`` or ``digits-xylo`` (embedded), ``mnist`` or ``mnist-t10k`` (both need ``data_dir``).

    ``mnist`` is the standard 60,000/10,000 split where ``data_dir`` holds the train pair;
    with only the t10k pair there, it is the 8,000/2,000 split of that file, named
    ``mnist-t10k`` (see the module doc).

    Raises:
        DataError: unknown name, or an MNIST name without a usable ``data_dir``.
    """
    if name == "digits":
        return load_digits_split()
    if name == "digits-xylo":
        return load_digits_xylo_split()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: use one of {DATASETS}")
    if data_dir is None:
        raise DataError(f"--dataset {name} needs --data-dir DIR with the MNIST IDX files")
    if name == "mnist" and _pair(_check_dir(data_dir), MNIST_TRAIN):
        return load_mnist_standard(data_dir)
    return load_mnist_split(data_dir)
