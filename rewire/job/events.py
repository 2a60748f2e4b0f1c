"""Spike-train input for the main job: rate-coded trains made from a data set
(``--input spikes``) or read from an ``.npz`` file (``--events PATH``).

**The .npz file** holds exactly four arrays:

| name | shape | dtype and values |
| --- | --- | --- |
| ``x_train`` | ``(N, T, F)`` | bool, or int/float holding only 0/1 (1: a spike of sample ``n``, step ``t``, input ``f``) |
| ``y_train`` | ``(N,)`` | integer class labels ``0..C-1`` |
| ``x_test`` | ``(M, T, F)`` | as ``x_train``, the same ``T`` and ``F`` |
| ``y_test`` | ``(M,)`` | as ``y_train`` |

Samples come first and time second, as a torch ``DataLoader`` collates per-sample
``(T, F)`` trains (and as tonic's ``ToFrame`` frames are laid out, once flattened per step and
clipped to 0/1). ``T`` must equal ``--steps``; the number of classes ``C`` is the largest label
plus one. Everything is checked before any work; an error names the array and the fix.
The file's size is bounded before anything is inflated: each member's ``.npy`` header
(shape and dtype) is read, and more than :data:`MAX_EVENTS_BYTES` of declared array data in
all, or a float32 working set over half the machine's memory, is refused naming the member
(a 3 MB zip of zeros may declare gigabytes). An ``np.save`` ``.npy`` file is refused with the
``numpy.savez`` call to use instead.

**Rate coding** (``--input spikes``): each input value ``x`` in [0, 1] becomes a Bernoulli
spike train of ``T = --steps`` steps with ``P(spike) = x`` per step, drawn once, before
training, from ``torch.Generator().manual_seed(--seed)`` (training set first, then the test
set): the network trains, and the compiled network is checked, on the very same spikes.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rewire.errors import DataError
from rewire.training.data import MAX_PIXELS, Split

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
INPUTS = ("dense", "spikes")
#: Most array data an ``--events`` file may declare (the four arrays as stored, summed): 2 GiB,
#: e.g. 70,000 MNIST-sized samples of 20 steps as bool (1.1 GB). Checked from the members'
#: headers before anything is inflated.
MAX_EVENTS_BYTES = 1 << 31
_SAVEZ = "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}


@dataclass(frozen=True)
class SpikeData:
    """Fixed spike trains of a run.

    Attributes:
        x_train, x_test: float32 ``(N, T, F)`` 0/1 spike trains (sample, step, input).
        y_train, y_test: int64 ``(N,)`` labels.
        source: ``"rate"`` (made from a data set) or the ``.npz`` path.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str

    @property
    def steps(self) -> int:
        """``T``."""
        return int(self.x_train.shape[1])


def rate_code(split: Split, steps: int, seed: int) -> SpikeData:
    """Bernoulli spike trains ``(N, T, F)`` of ``split``'s inputs (see the module docstring)."""
    gen = torch.Generator().manual_seed(seed)

    def code(x: torch.Tensor) -> torch.Tensor:
        return torch.bernoulli(x.clamp(0, 1).unsqueeze(1).expand(-1, steps, -1).contiguous(),
                               generator=gen)

    return SpikeData(code(split.x_train), split.y_train, code(split.x_test), split.y_test,
                     "rate")


def _memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _declared(path: Path) -> dict[str, tuple[tuple, np.dtype]]:
    """``{array name: (shape, dtype)}`` from each member's ``.npy`` header, nothing inflated
    past the header (a few hundred bytes per member).

    Raises:
        DataError: an ``np.save`` file, not a zip, a member that is not an ``.npy`` array,
            a header numpy cannot read, or more than 16 members.
    """
    with open(path, "rb") as f:
        if f.read(6) == b"\x93NUMPY":
            raise DataError(f"--events {path}: a single .npy array (numpy.save); --events takes "
                            f"an .npz of four arrays: write it with {_SAVEZ}")
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            if len(members) > 16:
                raise DataError(f"--events {path}: {len(members)} members; rewire reads exactly "
                                f"{list(ARRAYS)}")
            out = {}
            for info in members:
                if not info.filename.endswith(".npy"):
                    raise DataError(f"--events {path}: member {info.filename!r} is not an .npy "
                                    f"array; write the file with {_SAVEZ}")
                with zf.open(info) as m:
                    version = np.lib.format.read_magic(m)
                    if version not in _HEADERS:
                        raise DataError(f"--events {path}: member {info.filename!r} has .npy "
                                        f"format {version}; write the file with {_SAVEZ}")
                    shape, _, dtype = _HEADERS[version](m)
                out[info.filename[:-4]] = (tuple(shape), dtype)
            return out
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError) as exc:
        raise DataError(f"--events {path}: not a readable .npz file ({str(exc)[:120]}); write "
                        f"it with {_SAVEZ}") from None


def _check_size(path: Path, arrays: dict, max_bytes: int) -> None:
    """Refuse declared data over ``max_bytes``, or float32 trains over half the memory."""
    total = 0
    for name, (shape, dtype) in sorted(arrays.items(), key=lambda kv: -math.prod(kv[1][0])
                                       * kv[1][1].itemsize):
        size = math.prod(shape) * dtype.itemsize
        total += size
        if total > max_bytes:
            so_far = f"; {total:,} with the arrays before it" if total != size else ""
            raise DataError(f"--events {path}: array {name} declares shape {shape} of {dtype} "
                            f"({size:,} bytes once inflated{so_far}), "
                            f"more than the {max_bytes:,} bytes (MAX_EVENTS_BYTES) rewire reads "
                            f"from an --events file ({path.stat().st_size:,} bytes on disk); "
                            f"use fewer samples or steps")
    phys = _memory()
    need = 4 * sum(math.prod(arrays[x][0]) for x in ("x_train", "x_test"))
    if phys is not None and need > phys // 2:
        raise DataError(f"--events {path}: the spike trains x_train and x_test take "
                        f"{need / 2**30:.1f} GiB as float32, more than half this machine's "
                        f"{phys / 2**30:.1f} GiB; use fewer samples or steps")


def _check_spikes(name: str, a: np.ndarray, path: Path) -> None:
    if a.ndim != 3:
        raise DataError(f"--events {path}: {name} has shape {a.shape}; give spike trains of "
                        f"shape (N, T, F) (sample, step, input)")
    if a.dtype != np.bool_ and not (np.issubdtype(a.dtype, np.integer)
                                    or np.issubdtype(a.dtype, np.floating)):
        raise DataError(f"--events {path}: {name} has dtype {a.dtype}; give bool, integer or "
                        f"float 0/1 spikes")
    if min(a.shape) < 1:
        raise DataError(f"--events {path}: {name} of shape {a.shape} is empty")
    if a.dtype != np.bool_:
        bad = (a != 0) & (a != 1)
        if bad.any():
            raise DataError(f"--events {path}: {name} holds {int(bad.sum())} values other than "
                            f"0 and 1 (e.g. {a[bad].flat[0]!r}); spikes are 0/1: clip event "
                            f"counts with np.minimum(x, 1)")


def _check_labels(name: str, a: np.ndarray, n: int, path: Path) -> None:
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"--events {path}: {name} has shape {a.shape} and dtype {a.dtype}; "
                        f"give integer class labels of shape (N,)")
    if len(a) != n:
        raise DataError(f"--events {path}: {name} has {len(a)} labels for {n} samples")
    if a.size and int(a.min()) < 0:
        raise DataError(f"--events {path}: {name} holds a negative label ({int(a.min())}); "
                        f"labels are 0..C-1")


def load_events(path: str | Path, steps: int,
                max_bytes: int = MAX_EVENTS_BYTES) -> tuple[SpikeData, Split]:
    """Read and check an ``.npz`` of spike trains (see the module docstring).

    Args:
        path: the file.
        steps: ``--steps``; the trains' ``T`` must equal it.
        max_bytes: most array data the file may declare (checked before inflating).

    Returns:
        ``(spikes, split)``: the spike trains, and a :class:`Split` named ``events:<file>``
        whose ``x_*`` are the trains' per-input spike rates ``(N, F)`` (for shapes and names;
        nothing trains on them), ``max_value = 1``.

    Raises:
        DataError: a missing or unreadable file, missing or unknown arrays, wrong shapes,
            dtypes or values, ``T != steps``, fewer than 2 classes, an ``np.save`` file,
            declared data over ``max_bytes`` or float32 trains over half this machine's
            memory (before inflating; each message names the array and the fix).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--events {path}: no such file")
    declared = _declared(path)
    names = set(declared)
    missing = [a for a in ARRAYS if a not in names]
    if missing:
        raise DataError(f"--events {path}: missing array(s) {missing}; the file holds "
                        f"{sorted(names)}, rewire reads exactly {list(ARRAYS)}")
    extra = sorted(names - set(ARRAYS))
    if extra:
        raise DataError(f"--events {path}: unknown array(s) {extra}; rewire reads "
                        f"exactly {list(ARRAYS)} (a misspelt name would be ignored)")
    _check_size(path, declared, max_bytes)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {a: f[a] for a in ARRAYS}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"--events {path}: not a readable .npz file ({str(exc)[:120]}); write "
                        f"it with {_SAVEZ}") from None
    for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
        _check_spikes(x, arrays[x], path)
        _check_labels(y, arrays[y], len(arrays[x]), path)
    (n, t, feat), (_, t2, f2) = arrays["x_train"].shape, arrays["x_test"].shape
    if (t2, f2) != (t, feat):
        raise DataError(f"--events {path}: x_test has (T, F) = ({t2}, {f2}) but x_train has "
                        f"({t}, {feat}); give both the same steps and inputs")
    if t != steps:
        raise DataError(f"--events {path}: the spike trains have T = {t} steps but --steps is "
                        f"{steps}; pass --steps {t}")
    if feat > MAX_PIXELS:
        raise DataError(f"--events {path}: F = {feat} inputs; rewire reads at most "
                        f"{MAX_PIXELS}")
    classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
    if classes < 2:
        raise DataError(f"--events {path}: the labels name {classes} class; give at least 2")

    def fx(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def fy(a):
        return torch.as_tensor(np.asarray(a, dtype=np.int64))

    spikes = SpikeData(fx(arrays["x_train"]), fy(arrays["y_train"]), fx(arrays["x_test"]),
                       fy(arrays["y_test"]), str(path))
    split = Split(f"events:{path.name}", spikes.x_train.mean(1), spikes.y_train,
                  spikes.x_test.mean(1), spikes.y_test, max_value=1, num_classes=classes)
    return spikes, split


def check_input(kind: str, events, encoding) -> tuple[str, str]:
    """The run's input kind and encoding: ``(kind, encoding)`` resolved.

    Raises:
        ValueError: an unknown ``kind`` (``None``: spikes with ``events``, else dense),
            ``--events`` with ``--input dense``, or spike input with ``--encoding current``
            (naming the fix).
    """
    if kind is not None and kind not in INPUTS:
        raise ValueError(f"--input must be one of {INPUTS}, got {kind!r}")
    if events is not None and kind == "dense":
        raise ValueError("--events gives spike trains: drop --input dense (or use "
                         "--input spikes)")
    spikes = events is not None or kind == "spikes"
    if spikes and encoding == "current":
        raise ValueError("--input spikes / --events presents spike trains, which the chip "
                         "takes as 'rate' input: drop --encoding current (or use --encoding "
                         "rate)")
    return "spikes" if spikes else "dense", encoding or ("rate" if spikes else "current")


__all__ = ["ARRAYS", "INPUTS", "MAX_EVENTS_BYTES", "SpikeData", "check_input", "load_events",
           "rate_code"]
