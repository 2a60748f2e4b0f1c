"""Hostile MNIST IDX files (issue 17, item 4): labels outside 0..9, a gzip bomb, dimensions
whose product wraps, cut-short and damaged files: every one is refused with
:class:`DataError` naming the file, before training, and reading never costs more than the
header declares."""

from __future__ import annotations

import gzip
import math
import random
import resource
import struct
import time
import traceback
import zlib

import numpy as np
import pytest

from rewire.training.data import MAX_IDX_BYTES, DataError, _read_idx, load_mnist_split

from conftest import HYPOTHESIS_PROFILE, capped

SCALE = 1 if HYPOTHESIS_PROFILE == "ci" else 10
SEED = 20261204 if HYPOTHESIS_PROFILE == "ci" else random.randrange(2**32)
IMG, LAB = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _idx(dims, body=None, magic=b"\x00\x00\x08"):
    head = magic + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return head + (body if body is not None else bytes(math.prod(dims)))


def _write(folder, images: bytes, labels: bytes, gz=False):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, raw in ((IMG, images), (LAB, labels)):
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw, 1))
        else:
            (folder / stem).write_bytes(raw)
    return folder


def _images(n=10, rows=4, cols=4, seed=0):
    rng = np.random.default_rng(seed)
    return _idx((n, rows, cols), rng.integers(0, 256, n * rows * cols, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_labels_of_10_or_more_are_refused_naming_the_file(tmp_path, gz):
    labels = _idx((10,), bytes([0, 1, 2, 3, 4, 5, 6, 7, 8, 12]))
    d = _write(tmp_path / "d", _images(), labels, gz)
    with pytest.raises(DataError, match=rf"{LAB}.*1 labels are >= 10 \(largest 12\)"):
        load_mnist_split(d, n_train=8, n_test=2)


def test_small_valid_files_load(tmp_path):
    d = _write(tmp_path / "d", _images(), _idx((10,), bytes(range(10))), gz=True)
    split = load_mnist_split(d, n_train=8, n_test=2)
    assert split.x_train.shape == (8, 16) and split.y_test.tolist() == [8, 9]


def test_gzip_bomb_is_read_only_as_far_as_the_header_says(tmp_path):
    """A 2 MB gzip that expands to 2 GiB (many gzip members of 1 MiB of zeros) is refused
    after reading the bytes its header declares plus one, in well under a second."""
    head = _idx((10, 4, 4))
    member = gzip.compress(bytes(1 << 20), 9)
    path = tmp_path / f"{IMG}.gz"
    with open(path, "wb") as f:
        f.write(gzip.compress(head, 9))
        for _ in range(2048):
            f.write(member)
    assert path.stat().st_size < 3 << 20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"{IMG}.gz: data continues after the 160 values"):
        _read_idx(path)
    assert time.perf_counter() - start < 3.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 * 1024  # < 50 MB


@pytest.mark.parametrize("dims", [(2**32 - 1, 2**32 - 1, 2**32 - 1), (2**16, 2**16, 2**16),
                                  (2**21, 2**21, 2**22), (2**32 - 1,), (MAX_IDX_BYTES + 1,)])
def test_huge_or_wrapping_dimensions_are_refused_before_reading(tmp_path, dims):
    """(2**21, 2**21, 2**22) multiplies to 2**64, which wraps to 0 in int64."""
    path = tmp_path / IMG
    path.write_bytes(_idx(dims, b""))
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"{IMG}: IDX header declares shape"):
        _read_idx(path)
    assert time.perf_counter() - start < 0.5  # generous: the machine is shared


def test_zero_pixels_are_refused(tmp_path):
    d = _write(tmp_path / "d", _idx((10, 0, 28)), _idx((10,)))
    with pytest.raises(DataError, match=rf"{IMG}: images of \(0, 28\) = 0 pixels"):
        load_mnist_split(d, n_train=8, n_test=2)


def _random_case(rng):
    """A pair of (images, labels) bytes, damaged in one of many ways."""
    n = rng.choice([0, 1, 9, 10, 11])
    imgs, labs = _images(max(n, 1), seed=rng.randrange(100)), _idx((max(n, 1),),
                                                                  bytes(max(n, 1)))
    kind = rng.randrange(10)
    if kind == 0:
        imgs = imgs[: rng.randrange(len(imgs))]
    elif kind == 1:
        labs = _idx((n,), bytes(rng.choice([0, 9, 10, 11, 255]) for _ in range(n)))
    elif kind == 2:
        dims = tuple(rng.choice([0, 1, 4, 28, 2**16, 2**31, 2**32 - 1])
                     for _ in range(rng.randint(0, 6)))
        imgs = _idx(dims, bytes(rng.randrange(64)))
    elif kind == 3:
        imgs = bytes([0, 0, rng.randrange(256), rng.randrange(256)]) + imgs[4:]
    elif kind == 4:
        imgs += bytes(rng.randint(1, 9))
    elif kind == 5:
        pos = rng.randrange(len(imgs))
        imgs = imgs[:pos] + bytes([rng.randrange(256)]) + imgs[pos + 1:]
    elif kind == 6:
        imgs, labs = labs, imgs
    elif kind == 7:
        labs = _idx((n, 1))
    elif kind == 8:
        imgs = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
    return imgs, labs, rng.random() < 0.5


def test_fuzz_idx_files(tmp_path, capsys):
    """Every damaged IDX pair loads or is refused with DataError naming one of its files;
    never another exception, each case well under a second."""
    rng = random.Random(SEED)
    count, refused, tracebacks, slow = 0, 0, [], []
    for i in range(300 * SCALE):
        imgs, labs, gz = _random_case(rng)
        d = _write(tmp_path / f"d{i}", imgs, labs, gz)
        count += 1
        start = time.perf_counter()
        try:
            with capped():
                split = load_mnist_split(d, n_train=8, n_test=2)
        except DataError as exc:
            refused += 1
            assert IMG in str(exc) or LAB in str(exc), str(exc)
        except Exception:  # noqa: BLE001
            tracebacks.append(traceback.format_exc(limit=3))
        else:
            assert int(split.y_train.max()) < 10 and split.x_train.shape[0] == 8
        if time.perf_counter() - start > 1.0:
            slow.append(i)
        if gz and rng.random() < 0.2:  # damage the compressed stream itself
            raw = bytearray((d / f"{IMG}.gz").read_bytes())
            raw[rng.randrange(len(raw))] ^= 0xFF
            (d / f"{IMG}.gz").write_bytes(bytes(raw))
            count += 1
            try:
                load_mnist_split(d, n_train=8, n_test=2)
            except DataError:
                refused += 1
            except (Exception, zlib.error):  # noqa: BLE001
                tracebacks.append(traceback.format_exc(limit=3))
    with capsys.disabled():
        print(f"\nfuzz IDX files (seed {SEED}): {count} pairs, {refused} refused, "
              f"{count - refused - len(tracebacks)} loaded, {len(tracebacks)} tracebacks, "
              f"{len(slow)} over 1 s")
    assert not tracebacks, "\n".join(tracebacks[:4])
    assert not slow
