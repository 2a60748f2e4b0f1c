"""The main job: train with GradR inside a chip's budget, compile, export, report.

:func:`prepare` checks every input (profile, data, budget, output folder) before any work;
:func:`run` then trains, compiles and writes ``<out>/model.net`` (Lava netx HDF5),
``<out>/model_step.onnx``, ``<out>/model_unrolled.onnx`` (float, all steps),
``<out>/model_int.onnx`` (the chip's integer model), ``<out>/model.nir``,
``<out>/cores.json`` and ``<out>/cores.png`` (per-core usage, see
:mod:`rewire.compiler.mapping`) and ``<out>/report.json``. Only the export formats the profile
lists for its chip are written; the report says which were skipped and why.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rewire import __version__
from rewire.compiler import equivalence, mapping, simulate
from rewire.compiler.quantize import compile_network
from rewire.errors import CompileError
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import layer_names
from rewire.ir.nodes import Dense
from rewire.export import cores as export_cores
from rewire.export import netx, nir_graph, onnx_int, onnx_step, onnx_unrolled
from rewire.io import write_text
from rewire.frontends import lower
from rewire.job import health
from rewire.job.events import SpikeData, check_input, load_events, rate_code
from rewire.job.publish import Staging, remove_stale
from rewire.job.report import build_float_report, build_report, format_report, to_json
from rewire.hw_profiles.profile import KNOWN_FORMATS, HardwareProfile, load_profile
from rewire.training.budget import SynapseBudget, make_budget, model_budget
from rewire.training.conv import SpikingConvNet, image_shape
from rewire.training.data import Split, load_split
from rewire.training.gradr import apply_gradr
from rewire.training.model import SpikingMLP
from rewire.training.train import TrainConfig, encoded_batches, train


MODELS = ("mlp", "conv")

#: Training defaults of ``--model conv`` where they differ from the mlp's (``TrainConfig()``),
#: measured in docs/conv.md ("Defaults"). With the mlp's ``lr = 1e-3`` and the controller's
#: ``alpha_max = 2`` the default conv job trained a dead net (10 % on digits and MNIST): in
#: GradR's Adam step the data term moves each :math:`\theta` by at most about ``lr`` per step
#: (:math:`|m / \sqrt{v}| \lesssim 1`) and the prior by ``lr * alpha``, so at ``alpha >= 1``
#: the prior beats the loss on *every* synapse, every weight shrinks alike, the layers fall
#: silent one after the other and no surrogate gradient is left (loss ln 10 from epoch 13).
#: ``alpha_max < 1`` keeps the synapses whose gradient keeps its sign (in short runs the cap
#: is what keeps the net alive); ``lr = 1e-2`` lets the prior keep to the schedule at a
#: smaller ``alpha`` and learns faster (digits, 60 epochs, seeds 0-2: 95.56 / 94.44 /
#: 92.22 % against 67.5 % for seed 0 at 1e-3); the default channels are 16 32 (the 10 %
#: budget is then 629 synapses on digits, not 200).
CONV_LR = 1e-2
CONV_CONTROLLER = {"alpha_max": 0.95}
#: Default epochs of ``--model conv`` per data set (an epoch of MNIST's 8,000 training images
#: is 5.6 times one of digits' 1,437); other data sets get ``CONV_EPOCHS_OTHER``.
CONV_EPOCHS = {"digits": 60, "mnist": 5}
CONV_EPOCHS_OTHER = 10


def default_train_config(model: str = "mlp", dataset: str = "digits") -> TrainConfig:
    """The training defaults of ``model`` on ``dataset``: ``TrainConfig()`` for the mlp;
    for ``conv`` the learning rate :data:`CONV_LR`, the controller's :data:`CONV_CONTROLLER`
    and the epochs of :data:`CONV_EPOCHS`.

    Raises:
        ValueError: ``model`` is not one of :data:`MODELS`.
    """
    if model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS}, got {model!r}")
    if model == "mlp":
        return TrainConfig()
    return TrainConfig(epochs=CONV_EPOCHS.get(dataset, CONV_EPOCHS_OTHER), lr=CONV_LR,
                       controller=dict(CONV_CONTROLLER))


@dataclass(frozen=True)
class JobSpec:
    """Everything the main job needs, from the command line.

    Attributes:
        profile: shipped profile name or TOML path.
        out: output folder.
        dataset, data_dir: data set (``digits`` needs no folder).
        model: ``"mlp"`` (:class:`SpikingMLP`) or ``"conv"``
            (:class:`rewire.training.conv.SpikingConvNet` on the square image).
        hidden: hidden layer sizes (``mlp``).
        channels, kernels, strides, pools: conv stages (``conv``): output channels, kernel
            size, stride and sum-pooling window of each (padding ``kernel // 2``).
        steps: time steps ``T``.
        encoding: ``current`` or ``rate`` (default: ``current`` for dense input, ``rate``
            for spike trains).
        input: ``"dense"`` (default without ``events``: the data set's values, encoded by ``encoding`` every batch) or
            ``"spikes"`` (the values made into fixed Bernoulli spike trains ``(N, T, F)``
            before training, seeded by ``train.seed``: :mod:`rewire.job.events`).
        events: an ``.npz`` of spike trains to train on instead of ``dataset`` (implies
            ``input="spikes"``; its arrays: :mod:`rewire.job.events`).
        input_gain: constant-current gain.
        cores, max_synapses, connectivity, max_fan_in: budget options (see
            :func:`rewire.training.budget.make_budget`).
        train: :class:`TrainConfig`; ``None`` (the default) takes the model's defaults,
            :func:`default_train_config` (``TrainConfig()`` for the mlp).
        lava_samples: test samples to run through Lava and compare spike for spike with the
            integer model (0 = skip; skipped when Lava is not installed).
    """

    profile: str = "loihi2"
    out: str = "build"
    dataset: str = "digits"
    data_dir: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] = (256,)
    channels: tuple[int, ...] = (16, 32)
    kernels: tuple[int, ...] = (5, 3)
    strides: tuple[int, ...] = (2, 1)
    pools: tuple[int, ...] = (1, 2)
    steps: int = 16
    encoding: str | None = None
    input_gain: float = 4.0
    cores: int | None = None
    max_synapses: int | None = None
    connectivity: float | None = 0.1
    max_fan_in: int | None = None
    train: TrainConfig | None = None
    lava_samples: int = 0
    input: str | None = None
    events: str | None = None

    def __post_init__(self) -> None:
        if self.train is None:
            object.__setattr__(self, "train", default_train_config(
                self.model if self.model in MODELS else "mlp", self.dataset))


@dataclass
class Prepared:
    """Validated inputs of the job."""

    spec: JobSpec
    profile: HardwareProfile
    split: Split
    model: SpikingMLP | SpikingConvNet
    budget: SynapseBudget
    out: Path
    spikes: SpikeData | None = None
    user_model: bool = False
    sizes: tuple[int, ...] = ()

    @property
    def run_options(self) -> dict:
        """``steps``, ``encoding``, ``input_gain`` of a user's model (its frontend and the
        compiler need them; rewire's own models carry them)."""
        if not self.user_model:
            return {}
        return {"steps": self.spec.steps, "encoding": self.spec.encoding,
                "input_gain": self.spec.input_gain}


def _check_out_dir(out: str) -> Path:
    """The output folder, once it is certain that it can be created and written.

    Raises:
        ValueError: it is empty, holds NUL, is a dangling symbolic link, is a file, lies
            under a file, is the current folder or one above it (publishing swaps the
            folder), or its nearest existing folder does not take a new file (read-only,
            /proc, permissions); a probe file is created there and removed at once.
    """
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip() or "\x00" in str(out):
        raise ValueError(f"--out {str(out)[:80]!r}: give an output folder, e.g. build/")
    path = Path(out)
    long = [part for part in path.parts if len(os.fsencode(part)) > 255]
    if long or len(os.fsencode(str(path))) > 4095:
        raise ValueError(f"--out {str(out)[:80]}...: a folder name over 255 bytes or a path "
                         f"over 4,095 bytes (the file system's limits); give a shorter path")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"--out {out}: is a dangling symbolic link (to "
                         f"{os.readlink(path)}); remove it or give another folder")
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    try:
        real, cwd = os.path.realpath(path), os.path.realpath(os.getcwd())
    except OSError:
        real = cwd = None
    if real is not None and (real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep)
                             or real == os.sep):
        raise ValueError(f"--out {out}: is the current folder or holds it; rewire replaces "
                         f"its output folder as a whole, so give a folder of its own, e.g. "
                         f"build/")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"--out {out}: {probe} is not a directory, so no folder can be "
                         f"created under it")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write in {probe} ({exc.strerror or exc}); "
                         f"choose another folder") from None
    return path


def _check_seed_and_device(config: TrainConfig) -> None:
    """Refuse a seed or a torch device that training could not use.

    Raises:
        ValueError: the seed is outside ``[0, 2**32)``, the device string is not a torch
            device, not ``cpu``/``cuda[:N]``, or names a CUDA device this machine lacks.
    """
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**32:
        raise ValueError(f"--seed must be an integer in [0, 2**32), got {config.seed!r}")
    try:
        device = torch.device(config.device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"--device {config.device!r}: not a torch device ({exc}); use cpu "
                         f"or cuda[:N]") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {config.device!r}: rewire trains on cpu or cuda[:N] only")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {config.device}: CUDA is not available here; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"--device {config.device}: this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")


def _check_trainable(sizes: tuple[int, ...]) -> None:
    """Refuse a dense network whose training state cannot fit this machine's memory.

    GradR keeps, per synapse, ``theta``, its gradient and Adam's two moments in float32
    (16 bytes) before any pruning.

    Raises:
        ValueError: more than the machine's physical memory would be needed.
    """
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return
    if 16 * dense > memory:
        raise ValueError(f"--hidden {list(sizes[1:-1])}: the dense network {list(sizes)} has "
                         f"{dense:,} synapses, {16 * dense / 2**30:.1f} GiB of training state "
                         f"(float32 theta, gradient, Adam moments), more than this machine's "
                         f"{memory / 2**30:.1f} GiB; shrink --hidden")


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_conv(spec: JobSpec, shape: tuple[int, int, int]) -> None:
    """Refuse conv options that do not fit the input, or whose training would not fit this
    machine's memory, before any model is built (shapes in Python integers).

    Every kernel must fit its stage's input (a 100-pixel kernel on an 8 x 8 digit gave a
    257 s run at 12.6 GB), every pool its conv's output. Memory estimate: GradR's 16 bytes per
    weight plus, per layer, the batch's activations over all time steps kept for
    backpropagation through time (current, voltage, spikes and their gradients: 8 float32
    values per neuron and step).

    Raises:
        ValueError: naming the option and the stage.
    """
    n = len(spec.channels)
    if not len(spec.kernels) == len(spec.strides) == len(spec.pools) == n:
        raise ValueError(f"--channels, --kernels, --strides and --pools need one entry per conv "
                         f"stage: got {n}, {len(spec.kernels)}, {len(spec.strides)}, "
                         f"{len(spec.pools)}")
    c_in, h, w = shape
    weights, neurons = 0, 0
    for i, (c, k, s, q) in enumerate(zip(spec.channels, spec.kernels, spec.strides,
                                         spec.pools), 1):
        if k > min(h, w):
            raise ValueError(f"--kernels: stage {i} has a {k} x {k} kernel but its input is "
                             f"{h} x {w}; use a kernel of at most {min(h, w)}")
        if s > k:
            raise ValueError(f"--strides: stage {i} has stride {s} > kernel {k}, so it skips "
                             f"input pixels; use a stride of at most {k}")
        h, w = (h + 2 * (k // 2) - k) // s + 1, (w + 2 * (k // 2) - k) // s + 1
        if q > min(h, w):
            raise ValueError(f"--pools: stage {i} pools {q} x {q} over a {h} x {w} output; "
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
        raise ValueError(f"--channels {list(spec.channels)}: training needs about "
                         f"{memory / 2**30:.1f} GiB ({weights:,} weights, {neurons:,} neurons x "
                         f"{spec.steps} steps x batch {spec.train.batch_size}), more than half "
                         f"this machine's {phys / 2**30:.1f} GiB; use fewer channels, a larger "
                         f"stride or a smaller --batch-size")


def _check_neuron_fits(profile: HardwareProfile, neuron) -> None:
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


def _prepare_user_model(spec: JobSpec, profile: HardwareProfile, split: Split, out: Path,
                        spikes, model: torch.nn.Module) -> Prepared:
    """Check a user's model against the job before any training: it lowers to the IR (what
    it cannot is named), its input size is the data's, its neurons fit the chip, and its
    budget comes from its own GradR layers (:func:`model_budget`).

    Raises:
        TypeError: ``model`` is not a torch module.
        CompileError: the profile has no fixed-point compiler (only ``cuba`` chips).
        ValueError: rate coding of dense data asked for (use ``input="spikes"``), or the
            model's input size is not the data's, or its output neurons not its classes.
        rewire.errors.LoweringError: a module or parameter the compiler cannot map.
    """
    from rewire.ir.chip_neurons import neuron_decays

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: give a torch nn.Module, got {type(model).__name__}")
    if profile.neuron.model != "cuba":
        raise CompileError(f"profile {profile.name!r}: the main job takes a model of your own "
                           f"only for a chip rewire compiles for (neuron.model 'cuba': loihi2, "
                           f"loihi); train it with rewire.train and map it yourself")
    if spec.encoding == "rate" and spikes is None:
        raise ValueError("encoding 'rate' with a model of your own: give input='spikes' (fixed "
                         "spike trains, the same for training, the chip and Lava) or events=")
    ir = lower(model, steps=spec.steps, encoding=spec.encoding, input_gain=spec.input_gain)
    n_in = int(np.prod(ir.input_shape))
    if n_in != split.num_features:
        raise ValueError(f"model: its input takes {n_in} values per step ({ir.input_shape}) but "
                         f"{split.name} has {split.num_features} features per sample")
    if ir.layers[-1].neurons != split.num_classes:
        raise ValueError(f"model: its output layer {ir.layers[-1].name} has "
                         f"{ir.layers[-1].neurons} neurons but {split.name} has "
                         f"{split.num_classes} classes; give it one output neuron per class")
    for layer in ir.layers:
        neuron_decays(layer.neuron, profile, layer.name)
    sizes = (n_in, *(layer.neurons for layer in ir.layers))
    mapping.check_network(profile, sizes, spec.cores)
    probe = copy.deepcopy(model)
    apply_gradr(probe)
    budget = model_budget(probe, profile, cores=spec.cores, max_synapses=spec.max_synapses,
                          connectivity=spec.connectivity, max_fan_in=spec.max_fan_in)
    return Prepared(spec, profile, split, model, budget, out, spikes, user_model=True,
                    sizes=sizes)


def prepare(spec: JobSpec, model: torch.nn.Module | None = None) -> Prepared:
    """Check every input before any work and build the untrained model.

    Args:
        spec: the job.
        model: a model of your own (any Norse/torch module the compiler lowers, untrained or
            pre-trained, not yet GradR-parametrized) instead of ``spec.model``'s; it takes
            ``(T, B, n_in)`` input (``spec.steps``, ``spec.encoding``, ``spec.input_gain``
            say how the data becomes that input).

    Raises:
        ProfileError, DataError, BudgetError, ValueError: with the field and the fix.
        CompileError, LoweringError: (``model``) what the chip or the compiler cannot take.
    """
    profile = load_profile(spec.profile)
    out = _check_out_dir(spec.out)
    remove_stale(out)  # staging folders that killed runs left beside or inside --out
    if spec.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {spec.steps}")
    if any(h < 1 for h in spec.hidden):
        raise ValueError(f"--hidden sizes must be >= 1, got {list(spec.hidden)}")
    _check_seed_and_device(spec.train)
    if spec.model not in MODELS:
        raise ValueError(f"--model must be one of {MODELS}, got {spec.model!r}")
    kind, encoding = check_input(spec.input, spec.events, spec.encoding)
    spec = dataclasses.replace(spec, input=kind, encoding=encoding)
    spikes = None
    if spec.events is not None:
        spikes, split = load_events(spec.events, spec.steps)
    # the initial weights follow --seed too: the same seed gives the same files
    torch.manual_seed(spec.train.seed)
    if spec.events is None:
        split = load_split(spec.dataset, spec.data_dir)
        if kind == "spikes":
            spikes = rate_code(split, spec.steps, spec.train.seed)
            split = dataclasses.replace(split, name=f"{split.name}:spikes")
    if model is not None:
        return _prepare_user_model(spec, profile, split, out, spikes, model)
    if spec.model == "conv":
        _check_conv(spec, image_shape(split.num_features))
        model = SpikingConvNet(image_shape(split.num_features), channels=spec.channels,
                               kernels=spec.kernels, strides=spec.strides, pools=spec.pools,
                               classes=split.num_classes, steps=spec.steps,
                               encoding=spec.encoding, input_gain=spec.input_gain)
        _check_neuron_fits(profile, model.neuron)
        probe = copy.deepcopy(model)
        apply_gradr(probe)  # model_budget counts GradR layers; train() parametrizes the model
        budget = model_budget(probe, profile, cores=spec.cores, max_synapses=spec.max_synapses,
                              connectivity=spec.connectivity, max_fan_in=spec.max_fan_in)
        return Prepared(spec, profile, split, model, budget, out, spikes)
    sizes = (split.num_features, *spec.hidden, split.num_classes)
    _check_trainable(sizes)
    mapping.check_network(profile, sizes, spec.cores)  # what no pruning can fix, before training
    model = SpikingMLP(sizes, steps=spec.steps, encoding=spec.encoding,
                       input_gain=spec.input_gain)
    _check_neuron_fits(profile, model.neuron)
    budget = make_budget(profile, sizes, cores=spec.cores, max_synapses=spec.max_synapses,
                         connectivity=spec.connectivity, max_fan_in=spec.max_fan_in)
    return Prepared(spec, profile, split, model, budget, out, spikes)


def test_payloads(model: SpikingMLP, net: CompiledNetwork, x: torch.Tensor, y: torch.Tensor,
                  seed: int, spikes: torch.Tensor | None = None):
    """Yield ``(payload (T, B, n_in), labels)``: the integer image of the float test input
    (``spikes``: the run's fixed test spike trains ``(N, T, F)``, given as they are)."""
    if spikes is not None:
        for i in range(0, len(spikes), 512):
            yield spikes[i:i + 512].transpose(0, 1).cpu().numpy().astype(np.int64), \
                y[i:i + 512].cpu().numpy()
        return
    if net.encoding == "current":  # the integer payload of x itself: no model needed
        for i in range(0, len(x), 512):
            yield simulate.encode_input(net, x[i:i + 512].cpu().numpy()), \
                y[i:i + 512].cpu().numpy()
        return
    for i, enc in encoded_batches(model, x, seed=seed):  # rate: rewire's own models' coding
        yield enc.cpu().numpy().astype(np.int64), y[i:i + enc.shape[1]].cpu().numpy()


def lava_check(net: CompiledNetwork, path: Path, payloads, samples: int) -> dict:
    """Run ``samples`` test inputs through Lava and compare with the integer model.

    Returns:
        ``{"samples", "spike_exact", "output_spikes", "seconds"}``, or ``{"skipped": why}``.
    """
    from rewire.export.lava_run import lava_missing, run_netx

    if samples <= 0:
        return {"skipped": "--lava-samples 0"}
    missing = lava_missing()
    if missing:
        return {"skipped": missing}
    start = time.perf_counter()
    payload = next(iter(payloads))[0][:, :samples]
    padded = simulate.pad_for_lava(net, payload)
    ref = simulate.simulate(net, padded, lava_delay=True)[-1]
    exact = spikes = 0
    for b in range(payload.shape[1]):
        out = run_netx(path, padded[:, b])
        exact += int(np.array_equal(out, ref[:, b]))
        spikes += int(out.sum())
    # a comparison of silence is not a check: say so in the result itself
    return {"samples": int(payload.shape[1]), "spike_exact": exact, "output_spikes": spikes,
            "compared": spikes > 0,
            "seconds": time.perf_counter() - start}


def export_formats(profile: HardwareProfile, staged: dict) -> dict:
    """Which export formats apply to ``profile``'s chip, which were written, and why the
    others were skipped: ``{"chip": [...], "written": [...], "skipped": {format: reason}}``."""
    written = [f for f in KNOWN_FORMATS if f in staged]
    skipped = {f: (f"not a format of {profile.name} (profile formats: {list(profile.formats)})"
                   if f not in profile.formats else "no writer for this network in the pipeline")
               for f in KNOWN_FORMATS if f not in staged}
    return {"chip": list(profile.formats), "written": written, "skipped": skipped}


def _final_paths(out: Path, staged: dict) -> dict:
    """Where each staged file (and ``report.json``) will lie once published: name -> str."""
    files = {k: str(out / v.name) for k, v in staged.items()}
    files["report"] = str(out / "report.json")
    return files


def add_health(report: dict, labels: np.ndarray, activity: list[dict]) -> dict:
    """Add ``test_set`` (samples, classes, chance level), ``activity`` (spikes and active
    neurons per layer on the test set) and ``warnings`` (:func:`rewire.job.health.warnings`)
    to ``report``; return it.

    Raises:
        ValueError: the test set is empty (a check of nothing is a failed check).
    """
    majority, threshold = health.chance_threshold(labels)
    report["test_set"] = {"samples": int(len(labels)), "classes": int(labels.max()) + 1,
                          "majority_share": majority, "chance_threshold": threshold}
    report["activity"] = activity
    report["warnings"] = health.warnings(report)
    return report


def _publish(stage: Staging, staged: dict, report: dict) -> None:
    """Write ``report.json`` into the staging folder, then publish the whole set into
    ``--out`` at once (:class:`rewire.job.publish.Staging`: old set or new set, never a mix;
    files of the previous export that the new one lacks are gone, other files are kept)."""
    staged["report"] = write_text(stage.path / "report.json", to_json(report))
    stage.publish()


def run_uncompiled(prep: Prepared, result, t0: float, log=print) -> dict:
    """The end of the main job on a chip whose neurons rewire cannot compile (``neuron.model``
    other than ``cuba``: speck, xylo, truenorth): the trained network's synapses are mapped onto
    the chip's cores and reported; no fixed-point file is written, and the report says why.

    Raises:
        MappingError: the trained network does not fit the cores (before any file is written).
    """
    profile, spec, t1 = prep.profile, prep.spec, time.perf_counter()
    names = layer_names([Dense] * len(prep.model.linears))
    layers = [mapping.LayerConnectivity.from_mask(name, lin.weight.detach().cpu().numpy())
              for name, lin in zip(names, prep.model.linears)]
    cores = mapping.map_layers(layers, profile, spec.cores)
    reason = (f"neuron model {profile.neuron.model!r} of {profile.name} has no fixed-point "
              f"compiler in rewire (only 'cuba')")
    with Staging(prep.out) as stage:
        staging = stage.path
        staged = {"cores_json": export_cores.write_json(cores, staging / "cores.json"),
                  "cores_png": export_cores.write_png(cores, staging / "cores.png")}
        files = _final_paths(prep.out, staged)
        t2 = time.perf_counter()
        timings = {"train_s": t1 - t0, "compile_s": 0.0, "export_s": t2 - t1,
                   "total_s": t2 - t0}
        report = build_float_report(profile, tuple(prep.model.sizes), spec.steps, spec.encoding,
                                    cores, prep.budget, result, files, timings, reason,
                                    dataset=prep.split.name, config=spec)
        ir = lower(prep.model.cpu())
        inputs = (enc for _, enc in encoded_batches(prep.model, prep.split.x_test,
                                                     seed=spec.train.seed))
        if prep.spikes is not None:  # the run's fixed test spike trains (N, T, F)
            inputs = (prep.spikes.x_test[i:i + 512].transpose(0, 1)
                      for i in range(0, len(prep.spikes.x_test), 512))
        add_health(report, prep.split.y_test.cpu().numpy(), health.float_activity(ir, inputs))
        formats = export_formats(profile, staged)
        formats["skipped"].update({f: f"needs a compiled network: {reason}"
                                   for f in profile.formats})
        report["formats"] = formats
        _publish(stage, staged, report)
    log(format_report(report))
    return report


def training_line(spec: JobSpec) -> str:
    """The header line with the training options actually used (the model's defaults
    included), e.g. ``training: gradr, 60 epochs, lr 0.01, batch 64, seed 0, controller
    {'alpha_max': 0.95}``."""
    t = spec.train
    extra = f", controller {t.controller}" if t.controller else ""
    return (f"training: {t.method}, {t.epochs} epochs, lr {t.lr:g}, batch {t.batch_size}, "
            f"seed {t.seed}{extra}")


def run(prep: Prepared, log=print) -> dict:
    """Train, compile, export and report. Returns the report dict (also in report.json)."""
    spec, t0 = prep.spec, time.perf_counter()
    if prep.profile.neuron.model != "cuba" and not isinstance(prep.model, SpikingMLP):
        raise CompileError(
            f"profile {prep.profile.name!r}: its neuron model {prep.profile.neuron.model!r} has "
            f"no fixed-point compiler in rewire (only 'cuba': loihi2, loihi), and the float-only "
            f"path (train, map cores, report) takes fully connected networks only")
    sizes = prep.sizes if prep.user_model else prep.model.sizes
    log(f"rewire {__version__}: {prep.split.name} {sizes} T={spec.steps} "
        f"on {prep.profile.name}; budget {prep.budget.max_synapses} synapses "
        f"({prep.budget.connectivity:.2%}, {prep.budget.source})")
    log(training_line(spec))
    if isinstance(prep.model, SpikingConvNet):  # a silent conv layer would not learn
        torch.manual_seed(spec.train.seed)
        rates = prep.model.init_rates(prep.split.x_train[:128])
        log(f"conv init: firing rates {', '.join(f'{r:.2f}' for r in rates)} per step")
    spikes = prep.spikes
    if spikes is None:
        result = train(prep.model, prep.split, prep.budget, spec.train, **prep.run_options)
    else:  # fixed spike trains (N, T, F): per-sample (T, F), time on the batch's axis 1
        result = train(prep.model, TensorDataset(spikes.x_train, spikes.y_train), prep.budget,
                       spec.train, test_data=TensorDataset(spikes.x_test, spikes.y_test),
                       time_axis=1, **prep.run_options)
    if prep.profile.neuron.model != "cuba":
        return run_uncompiled(prep, result, t0, log)
    t1 = time.perf_counter()
    net = compile_network(lower(prep.model.cpu(), **prep.run_options), prep.profile,
                          prep.split.max_value, spec.cores,
                          calibration=None if spikes else prep.split.x_train.numpy())
    x_te, y_te = prep.split.x_test, prep.split.y_test
    test_spikes = None if spikes is None else spikes.x_test
    eq_inputs = x_te.cpu().numpy() if net.encoding == "current" else np.concatenate(
        [p for p, _ in test_payloads(prep.model, net, x_te, y_te, spec.train.seed,
                                     test_spikes)], axis=1)
    equiv = equivalence.compare(net, eq_inputs, labels=y_te.cpu().numpy())
    # the comparison runs the integer model on the same payloads and predicts as
    # simulate.accuracy does (spike-count argmax, ties to the lowest class): reuse it
    q_acc = equiv.integer_accuracy
    t2 = time.perf_counter()
    # Every file is built in a staging folder first and published only when all of them
    # exist, as one set: a failure or a kill midway leaves the previous export whole.
    with Staging(prep.out) as stage:
        staging = stage.path
        staged = {}
        if "netx" in prep.profile.formats:
            staged["netx"] = netx.write(net, staging / "model.net")
        if "onnx" in prep.profile.formats:
            staged["onnx"] = onnx_step.write(net, staging / "model_step.onnx")
            staged["onnx_unrolled"] = onnx_unrolled.write(net, staging / "model_unrolled.onnx")
            staged["onnx_int"] = onnx_int.write(net, staging / "model_int.onnx")
        if "nir" in prep.profile.formats:
            staged["nir"] = nir_graph.write(net, staging / "model.nir")
        staged["cores_json"] = export_cores.write_json(net, staging / "cores.json")
        staged["cores_png"] = export_cores.write_png(net, staging / "cores.png")
        t3 = time.perf_counter()
        lava = {"skipped": "profile has no netx target"}
        if "netx" in staged:
            lava = lava_check(net, staged["netx"],
                              test_payloads(prep.model, net, x_te, y_te, spec.train.seed,
                                            test_spikes),
                              spec.lava_samples)
        files = _final_paths(prep.out, staged)
        timings = {"train_s": t1 - t0, "compile_s": t2 - t1, "export_s": t3 - t2,
                   "total_s": time.perf_counter() - t0}
        report = build_report(net, prep.budget, result, q_acc, files, timings, lava,
                              dataset=prep.split.name, config=spec)
        report["config"]["controller"] = dict(spec.train.controller)  # conv: alpha_max
        report["formats"] = export_formats(prep.profile, staged)
        report["equivalence"] = equiv.to_dict()
        add_health(report, y_te.cpu().numpy(),
                   health.activity_from_equivalence(report["equivalence"]))
        _publish(stage, staged, report)
    log(format_report(report))
    return report
