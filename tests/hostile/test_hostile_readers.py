"""Hostile netx ``.net`` and NIR ``.nir`` files (issue 17, item 5): declared sizes are checked
before anything is read (a 41 KB file declaring 7.3 TiB is refused without allocating it) and
malformed HDF5 ends in ValueError naming the file, never KeyError / AttributeError."""

from __future__ import annotations

import random
import resource
import time
import traceback

import h5py
import numpy as np
import pytest

from rewire import compile as compile_network
from rewire.export import netx, nir_graph
from rewire.frontends.nir import load, read as nir_read

from conftest import HYPOTHESIS_PROFILE, capped, random_network

SCALE = 1 if HYPOTHESIS_PROFILE == "ci" else 10
SEED = 20261206 if HYPOTHESIS_PROFILE == "ci" else random.randrange(2**32)
READERS = {"netx": netx.read_weights, "nir": nir_read, "load": load}
OK = (ValueError, NotImplementedError, FileNotFoundError)


@pytest.fixture(scope="module")
def files(tmp_path_factory, loihi2):
    d = tmp_path_factory.mktemp("readers")
    net = compile_network(random_network((6, 5, 3), steps=4), loihi2, input_max_value=16)
    return {"netx": netx.write(net, d / "m.net").read_bytes(),
            "nir": nir_graph.write(net, d / "m.nir").read_bytes()}


def _huge(path, shape, dtype="f8"):
    with h5py.File(path, "w") as f:
        g = f.create_group("layer").create_group("0")
        g.create_dataset("weight", shape=shape, dtype=dtype, chunks=True, compression="gzip")
        f.create_group("node")


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("shape", [(10**6, 10**6), (2**21, 2**21, 2**22), (10**12,)])
def test_declared_huge_dataset_refused_before_reading(tmp_path, reader, shape):
    path = tmp_path / "x.h5"
    _huge(path, shape)
    assert path.stat().st_size < 100_000
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"declares [\d,]+ bytes of data by dataset"):
        READERS[reader](path)
    assert time.perf_counter() - start < 3.0
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50 * 1024


def _structural(tmp_path):
    """Files with the wrong structure (valid HDF5)."""
    def make(name, fn):
        path = tmp_path / name
        with h5py.File(path, "w") as f:
            fn(f)
        return path

    yield make("empty.h5", lambda f: None)
    yield make("layer-dataset.h5", lambda f: f.create_dataset("layer", data=[1, 2]))
    yield make("gap.h5", lambda f: f.create_group("layer").create_group("1"))
    yield make("weight-group.h5", lambda f: f.create_group("layer").create_group("0")
               .create_group("weight"))
    yield make("weight-str.h5", lambda f: f.create_group("layer").create_group("0")
               .create_dataset("weight", data=np.array([b"ab"])))
    yield make("node-junk.h5", lambda f: f.create_group("node").create_dataset("x", data=3))
    yield make("many.h5", lambda f: [f.create_group(f"g{i}") for i in range(50)])
    for raw, name in [(b"", "empty.bin"), (b"not hdf5", "text.bin"),
                      (b"\x89HDF\r\n\x1a\n" + bytes(100), "hdf5-header-only.bin")]:
        (tmp_path / name).write_bytes(raw)
        yield tmp_path / name
    yield tmp_path / "missing.net"
    (tmp_path / "a-folder").mkdir()
    yield tmp_path / "a-folder"


def test_structurally_wrong_files(tmp_path):
    tracebacks = []
    for path in _structural(tmp_path):
        for name, reader in READERS.items():
            try:
                with capped():
                    reader(path)
            except OK:
                pass
            except Exception:  # noqa: BLE001
                tracebacks.append(f"{name} {path.name}: {traceback.format_exc(limit=3)}")
    assert not tracebacks, "\n".join(tracebacks[:4])


def test_fuzz_damaged_files(files, tmp_path, capsys):
    """Byte damage of a valid .net and .nir (flips, cuts, inserted bytes): each reader loads it
    or raises ValueError / NotImplementedError naming the file; never another exception."""
    rng = random.Random(SEED)
    count, refused, tracebacks = 0, 0, []
    for i in range(150 * SCALE):
        kind = rng.choice(["netx", "nir"])
        raw = bytearray(files[kind])
        action = rng.randrange(3)
        if action == 0:
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif action == 1:
            raw = raw[: rng.randrange(len(raw))]
        else:
            pos = rng.randrange(len(raw))
            raw[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        path = tmp_path / f"d{i}.{'net' if kind == 'netx' else 'nir'}"
        path.write_bytes(bytes(raw))
        for name in (["netx"] if kind == "netx" else ["nir", "load"]):
            count += 1
            try:
                with capped():
                    READERS[name](path)
            except OK as exc:
                refused += 1
                assert isinstance(exc, NotImplementedError) or str(path) in str(exc) \
                    or "node" in str(exc) or "dt" in str(exc), str(exc)
            except Exception:  # noqa: BLE001
                tracebacks.append(f"{name} {path.name}: {traceback.format_exc(limit=3)}")
    with capsys.disabled():
        print(f"\nfuzz readers (seed {SEED}): {count} reads, {refused} refused, "
              f"{count - refused - len(tracebacks)} loaded, {len(tracebacks)} tracebacks")
    assert not tracebacks, "\n".join(tracebacks[:4])
