"""The main job's checks of its inputs, each run once, by :func:`rewire.job.preparation.prepare`
before any work.

Errors name the :class:`~rewire.job.spec.JobSpec` or :class:`~rewire.training.train.TrainConfig`
field at fault first (``lr must be in (0, 10], got 1e+308``), say what was found and the fix;
the command line prints the field as its flag (:data:`rewire.job.cli.FLAGS`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from rewire.hw_profiles.profile import HardwareProfile

#: Fields given as text: empty, blank or NUL-holding values are refused.
STRING_FIELDS = ("profile", "out", "data_dir", "device", "events")
#: Upper bounds of the float options, each far past any useful value (defaults: lr 1e-3,
#: alpha 0.1, input gain 4): above them training overflows float32 at the first step.
FLOAT_BOUNDS = {"lr": 10.0, "alpha": 1e4, "input_gain": 1e4}


def check_fields(spec) -> None:
    """Refuse values of a :class:`~rewire.job.spec.JobSpec` that no run can use: empty or
    NUL-holding text, floats outside :data:`FLOAT_BOUNDS`, ``steps`` or ``hidden`` sizes
    under 1, a negative ``lava_samples``, a ``seed`` outside ``[0, 2**32)`` and a ``device``
    training cannot open.

    Raises:
        ValueError: naming the field, the value and the fix.
    """
    for name in STRING_FIELDS:
        value = getattr(spec, name) if name != "device" else spec.train.device
        if value is not None and (not isinstance(value, (str, os.PathLike))
                                  or not str(value).strip() or "\x00" in str(value)):
            raise ValueError(f"{name} {str(value)[:80]!r}: empty or not a valid value; leave "
                             f"it out for its default")
    for name, hi in FLOAT_BOUNDS.items():
        value = getattr(spec.train if name != "input_gain" else spec, name)
        if not 0 < value <= hi:
            raise ValueError(f"{name} must be in (0, {hi:g}], got {value:g}")
    if spec.steps < 1:
        raise ValueError(f"steps must be >= 1, got {spec.steps}")
    if any(h < 1 for h in spec.hidden):
        raise ValueError(f"hidden sizes must be >= 1, got {list(spec.hidden)}")
    if spec.lava_samples < 0:
        raise ValueError(f"lava_samples must be >= 0 (0 skips the Lava check), got "
                         f"{spec.lava_samples}")
    _check_seed_and_device(spec.train)


def _check_seed_and_device(config) -> None:
    """Refuse a seed or a torch device that training could not use.

    Raises:
        ValueError: the seed is outside ``[0, 2**32)``, the device string is not a torch
            device, not ``cpu``/``cuda[:N]``, or names a CUDA device this machine lacks.
    """
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {config.seed!r}")
    try:
        device = torch.device(config.device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device {config.device!r}: not a torch device ({exc}); use cpu "
                         f"or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {config.device!r}: rewire trains on cpu or cuda[:N] only")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device}: CUDA is not available here; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {config.device}: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")


def check_out_dir(out: str) -> Path:
    """The output folder, once it is certain that it can be created and written.

    Raises:
        ValueError: it is empty, holds NUL, is a dangling symbolic link, is a file, lies
            under a file, is the current folder or one above it (publishing swaps the
            folder), or its nearest existing folder does not take a new file (read-only,
            /proc, permissions); a probe file is created there and removed at once.
    """
    path = Path(out)
    long = [part for part in path.parts if len(os.fsencode(part)) > 255]
    if long or len(os.fsencode(str(path))) > 4095:
        raise ValueError(f"out {str(out)[:80]}...: a folder name over 255 bytes or a path "
                         f"over 4,095 bytes (the file system's limits); give a shorter path")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"out {out}: is a dangling symbolic link (to "
                         f"{os.readlink(path)}); remove it or give another folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"out {out}: exists and is not a directory")
    try:
        real, cwd = os.path.realpath(path), os.path.realpath(os.getcwd())
    except OSError:
        real = cwd = None
    if real is not None and (real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep)
                             or real == os.sep):
        raise ValueError(f"out {out}: is the current folder or holds it; rewire replaces "
                         f"its output folder as a whole, so give a folder of its own, e.g. "
                         f"build/")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"out {out}: {probe} is not a directory, so no folder can be "
                         f"created under it")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ValueError(f"out {out}: cannot write in {probe} ({exc.strerror or exc}); "
                         f"choose another folder") from None
    return path


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def check_trainable(sizes: tuple[int, ...]) -> None:
    """Refuse a dense network whose training state cannot fit this machine's memory.

    GradR keeps, per synapse, ``theta``, its gradient and Adam's two moments in float32
    (16 bytes) before any pruning.

    Raises:
        ValueError: more than the machine's physical memory would be needed.
    """
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    memory = _physical_memory()
    if memory is not None and 16 * dense > memory:
        raise ValueError(f"hidden {list(sizes[1:-1])}: the dense network {list(sizes)} has "
                         f"{dense:,} synapses, {16 * dense / 2**30:.1f} GiB of training state "
                         f"(float32 theta, gradient, Adam moments), more than this machine's "
                         f"{memory / 2**30:.1f} GiB; use smaller hidden layers")


def check_conv(spec, shape: tuple[int, int, int]) -> None:
    """Refuse conv options that do not fit the input, or whose training would not fit this
    machine's memory, before any model is built (shapes in Python integers).

    Every kernel must fit its stage's input (a 100-pixel kernel on an 8 x 8 digit gave a
    257 s run at 12.6 GB), every pool its conv's output. Memory estimate: GradR's 16 bytes per
    weight plus, per layer, the batch's activations over all time steps kept for
    backpropagation through time (current, voltage, spikes and their gradients: 8 float32
    values per neuron and step).

    Raises:
        ValueError: naming the field and the stage (an entry under 1, a count that differs
            between the four fields, a kernel larger than its input, ...).
    """
    n = len(spec.channels)
    if not len(spec.kernels) == len(spec.strides) == len(spec.pools) == n:
        raise ValueError(f"channels, kernels, strides and pools need one entry per conv "
                         f"stage: got {n}, {len(spec.kernels)}, {len(spec.strides)}, "
                         f"{len(spec.pools)}")
    for name in ("channels", "kernels", "strides", "pools"):
        if any(v < 1 for v in getattr(spec, name)):
            raise ValueError(f"{name} must be >= 1 each, got {list(getattr(spec, name))}")
    c_in, h, w = shape
    weights, neurons = 0, 0
    for i, (c, k, s, q) in enumerate(zip(spec.channels, spec.kernels, spec.strides,
                                         spec.pools), 1):
        if k > min(h, w):
            raise ValueError(f"kernels: stage {i} has a {k} x {k} kernel but its input is "
                             f"{h} x {w}; use a kernel of at most {min(h, w)}")
        if s > k:
            raise ValueError(f"strides: stage {i} has stride {s} > kernel {k}, so it skips "
                             f"input pixels; use a stride of at most {k}")
        h, w = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        if q > min(h, w):
            raise ValueError(f"pools: stage {i} pools {q} x {q} over a {h} x {w} output; "
                             f"use a pool of at most {min(h, w)}")
        weights += c_in * c * k * k
        neurons += c * h * w
        if q > 1:
            h, w = h // q, w // q
            neurons += c * h * w
        c_in = c
    classes = 10
    weights += c_in * h * w * classes
    neurons += classes
    memory = 16 * weights + 8 * 4 * neurons * spec.steps * spec.train.batch_size
    phys = _physical_memory()
    if phys is not None and memory > phys // 2:
        raise ValueError(f"channels {list(spec.channels)}: training needs about "
                         f"{memory / 2**30:.1f} GiB ({weights:,} weights, {neurons:,} neurons x "
                         f"{spec.steps} steps x batch {spec.train.batch_size}), more than half "
                         f"this machine's {phys / 2**30:.1f} GiB; use fewer channels, a larger "
                         f"stride or a smaller batch")


def check_neuron_fits(profile: HardwareProfile, neuron) -> None:
    """On a chip rewire compiles for (``cuba``), check the neuron's decays and constants
    against the profile before training, not after it (a ``decay_bits`` too small for the
    time constants used to fail only at compile time).

    Raises:
        CompileError: naming the decay and the fix.
    """
    if profile.neuron.model != "cuba":
        return
    from rewire.ir.chip_neurons import decay_constant

    decay_constant(neuron.tau_syn_inv, neuron.dt, profile, "neuron iDecay (tau_syn)")
    decay_constant(neuron.tau_mem_inv, neuron.dt, profile, "neuron vDecay (tau_mem)")


__all__ = ["FLOAT_BOUNDS", "STRING_FIELDS", "check_conv", "check_fields", "check_neuron_fits",
           "check_out_dir", "check_trainable"]
