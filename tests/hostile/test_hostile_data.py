"""Hostile MNIST IDX files (issue 17, item 4): labels outside 0..9, a gzip bomb, dimensions
whose product wraps, cut-short and damaged files: every one is refused with
:class:`DataError` naming the file, before training, and reading never costs more than the
header declares."""

from __future__ import annotations

import gzip
import math
import random
import re
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


# --------------------------------------------------------------- --events .npz (issue 27)

def _npy_header(shape, descr) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def _zip(path, members) -> None:
    """Write a zip by hand: ``members`` = [(name, method, payload, size)], payload already
    deflated (raw, method 8) or stored (method 0). A deflated member's CRC is written as 0:
    a reader that checks it has inflated the member all, which these tests forbid anyway."""
    local, central = bytearray(), bytearray()
    for name, method, payload, size in members:
        n, crc = name.encode(), zlib.crc32(payload) if method == 0 else 0
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                               len(payload), size, len(n), 0, 0, 0, 0, 0, len(local)) + n
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc,
                             len(payload), size, len(n), 0) + n + payload
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))


def _bomb(path, shape=(60000, 20, 3084)) -> int:
    """x_train a bool array of ``shape`` (3.7 GB of zeros) deflated to ~3.7 MB, with small
    honest y_train, x_test, y_test; returns the declared bytes of x_train."""
    c, zeros = zlib.compressobj(9, zlib.DEFLATED, -15), bytes(1 << 20)
    head = _npy_header(shape, "|b1")
    declared = math.prod(shape)
    chunk = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    payload = (c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
               + chunk * (declared >> 20) + c.compress(zeros[:declared % (1 << 20)]) + c.flush())

    def stored(name, a):
        body = _npy_header(a.shape, a.dtype.str) + a.tobytes()
        return (f"{name}.npy", 0, body, len(body))

    _zip(path, [("x_train.npy", 8, payload, len(head) + declared),
                stored("y_train", np.zeros(shape[0], np.uint8)),
                stored("x_test", np.zeros((2, shape[1], shape[2]), bool)),
                stored("y_test", np.array([0, 1]))])
    return declared


def test_events_zip_bomb_is_refused_before_inflating(tmp_path):
    """A ~3.6 MB .npz whose x_train inflates to 3.7 GB is refused from the member's header,
    naming the member and the bound, in well under a second and a few MB of memory."""
    from rewire.job.events import MAX_EVENTS_BYTES, load_events

    path = tmp_path / "bomb.npz"
    declared = _bomb(path)
    assert path.stat().st_size < 4 << 20 and declared > 3.6e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with capped(seconds=20, extra_bytes=512 << 20):
        with pytest.raises(DataError) as exc:
            load_events(path, 20)
    msg = str(exc.value)
    assert "x_train" in msg and f"{MAX_EVENTS_BYTES:,}" in msg and "smaller network" not in msg
    assert time.perf_counter() - start < 2.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 * 1024  # < 50 MB


def test_events_np_save_file_is_a_clear_error(tmp_path):
    """An ``np.save`` .npy given as --events (np.load returns an array, not a zip): one
    DataError saying so and naming numpy.savez; through the CLI one line, exit 2."""
    from rewire.export.__main__ import main
    from rewire.job.events import load_events

    path = tmp_path / "spikes.npy"
    np.save(path, np.zeros((4, 5, 6), bool))
    with pytest.raises(DataError, match=r"single \.npy array \(numpy\.save\).*numpy\.savez"):
        load_events(path, 5)
    assert main(["--events", str(path), "--steps", "5", "--out", str(tmp_path / "o")]) == 2


@pytest.mark.parametrize("members, needle", [
    ([("x_train.npy", 0, b"not an npy header at all", 24)], "not a readable .npz"),
    ([("x_train.txt", 0, b"hello", 5)], "is not an .npy array"),
    ([(f"a{i}.npy", 0, b"", 0) for i in range(17)], "17 members"),
])
def test_events_malformed_members_are_refused_by_name(tmp_path, members, needle):
    from rewire.job.events import load_events

    path = tmp_path / "bad.npz"
    _zip(path, members)
    with pytest.raises(DataError, match=re.escape(needle)):
        load_events(path, 5)
