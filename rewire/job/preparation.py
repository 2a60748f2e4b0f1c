"""Before any work: every input of the main job checked once, and the untrained model built.

:func:`prepare` turns a :class:`~rewire.job.spec.JobSpec` into a :class:`Prepared` job (the
profile loaded, the data read, the budget computed, the output folder probed), so that a bad
option fails in a second, not after training.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rewire.compiler import mapping
from rewire.errors import CompileError
from rewire.frontends import lower
from rewire.hw_profiles.profile import HardwareProfile, load_profile
from rewire.job.checks import (check_conv, check_fields, check_neuron_fits, check_out_dir,
                               check_trainable)
from rewire.job.events import SpikeData, check_input, load_events, rate_code
from rewire.job.publish import remove_stale
from rewire.job.spec import JobSpec
from rewire.training.budget import SynapseBudget, make_budget, model_budget
from rewire.training.conv import SpikingConvNet, image_shape
from rewire.training.data import Split, load_split
from rewire.training.gradr import apply_gradr
from rewire.training.layout import sample_shape
from rewire.training.model import SpikingMLP
from rewire.training.xylo_model import XyloMLP

#: The ``mlp`` of a chip whose ``neuron.model`` is the key: Xylo's bit-shift neurons
#: (:class:`~rewire.training.xylo_model.XyloMLP`); any other chip trains rewire's
#: :class:`~rewire.training.model.SpikingMLP` of Norse LIF cells.
MLP_MODELS = {"cuba_bitshift": XyloMLP}
#: ``neuron.model`` values rewire compiles to fixed point (the job compiles, writes and checks
#: the chip's files); the others end with the trained float network mapped onto the cores.
COMPILED_MODELS = ("cuba", "cuba_bitshift")


def has_compiler(profile: HardwareProfile) -> bool:
    """Whether rewire compiles for ``profile``'s neurons (:data:`COMPILED_MODELS`)."""
    return profile.neuron.model in COMPILED_MODELS


@dataclass
class Prepared:
    """Validated inputs of the job.

    Attributes:
        spec: the job, with ``input`` and ``encoding`` resolved.
        profile: the chip.
        split: the data (for spike input: the trains' per-step means, for the header).
        model: the untrained model (rewire's, or the user's).
        budget: the synapse budget training must end inside.
        out: the output folder.
        spikes: the run's fixed spike trains, or ``None`` for dense input.
        user_model: ``model`` is the user's (it needs ``run_options`` to be lowered).
        sizes: neurons per layer, input first (a user model's, from its IR).
        input_shape: the per-sample image ``(C, H, W)`` a user's model takes (its data,
            ``split`` and ``spikes``, are laid out so), or ``None`` for flat features.
    """

    spec: JobSpec
    profile: HardwareProfile
    split: Split
    model: SpikingMLP | XyloMLP | SpikingConvNet
    budget: SynapseBudget
    out: Path
    spikes: SpikeData | None = None
    user_model: bool = False
    sizes: tuple[int, ...] = ()
    input_shape: tuple[int, ...] | None = None

    @property
    def run_options(self) -> dict:
        """``steps``, ``encoding``, ``input_gain`` of a user's model, and its
        ``input_shape`` when it takes images (its frontend, ``train`` and the compiler need
        them; rewire's own models carry them)."""
        if not self.user_model:
            return {}
        shape = {} if self.input_shape is None else {"input_shape": self.input_shape}
        return {"steps": self.spec.steps, "encoding": self.spec.encoding,
                "input_gain": self.spec.input_gain, **shape}


def _gradr_budget(spec: JobSpec, profile: HardwareProfile, model) -> SynapseBudget:
    """The budget of any model from its own GradR layers (:func:`model_budget`), counted on a
    GradR-parametrized copy (``train`` parametrizes the model itself)."""
    probe = copy.deepcopy(model)
    apply_gradr(probe)
    return model_budget(probe, profile, cores=spec.cores, max_synapses=spec.max_synapses,
                        connectivity=spec.connectivity, max_fan_in=spec.max_fan_in)


def _prepare_user_model(spec: JobSpec, profile: HardwareProfile, split: Split, out: Path,
                        spikes, model: torch.nn.Module) -> Prepared:
    """Check a user's model against the job before any training: it lowers to the IR (what
    it cannot is named), its input size is the data's, its neurons fit the chip, and its
    budget comes from its own GradR layers (:func:`model_budget`).

    Raises:
        TypeError: ``model`` is not a torch module.
        CompileError: the profile has no fixed-point compiler (:data:`COMPILED_MODELS`).
        ValueError: rate coding of dense data asked for (use ``input="spikes"``), or the
            model's input size is not the data's, or its output neurons not its classes.
        rewire.errors.LoweringError: a module or parameter the compiler cannot map.
    """
    from rewire.ir.chip_neurons import neuron_decays

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: give a torch nn.Module, got {type(model).__name__}")
    if not has_compiler(profile):
        raise CompileError(f"profile {profile.name!r}: the main job takes a model of your own "
                           f"only for a chip rewire compiles for (neuron.model 'cuba': loihi2, "
                           f"loihi; 'cuba_bitshift': xylo); train it with rewire.train and map "
                           f"it yourself")
    if spec.encoding == "rate" and spikes is None:
        raise ValueError("encoding 'rate' with a model of your own: give input='spikes' (fixed "
                         "spike trains, the same for training, the chip and Lava) or events=")
    image = _image_layout(model, split)
    ir = lower(model, steps=spec.steps, encoding=spec.encoding, input_gain=spec.input_gain,
               **({} if image is None else {"input_shape": image}))
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
    if image is not None:  # the data in the model's own layout, for train and the checks
        split = dataclasses.replace(split, x_train=split.x_train.reshape(-1, *image),
                                    x_test=split.x_test.reshape(-1, *image))
        if spikes is not None:
            spikes = dataclasses.replace(
                spikes, x_train=spikes.x_train.reshape(*spikes.x_train.shape[:2], *image),
                x_test=spikes.x_test.reshape(*spikes.x_test.shape[:2], *image))
    return Prepared(spec, profile, split, model, _gradr_budget(spec, profile, model), out,
                    spikes, user_model=True, sizes=sizes, input_shape=image)


def _image_layout(model: torch.nn.Module, split: Split) -> tuple[int, ...] | None:
    """The per-sample image ``(C, H, W)`` a user's model takes where the job's data are flat
    features: its ``input_shape`` attribute, or for a first ``Conv2d`` of ``C`` input
    channels the square image of the data's features; ``None`` for a model of flat input.

    Raises:
        ValueError: a first ``Conv2d`` whose channels do not divide the features into square
            images (named).
    """
    try:
        own = sample_shape(model)
    except ValueError:
        return None  # the frontend names what it cannot lower
    if len(own) != 3:
        return None
    if None not in own:
        return tuple(own)
    try:
        return image_shape(split.num_features, int(own[0]))
    except ValueError:
        raise ValueError(f"model: its first Conv2d takes {own[0]} channel(s), but "
                         f"{split.name}'s {split.num_features} features are not {own[0]} "
                         f"square image(s)") from None


def prepare(spec: JobSpec, model: torch.nn.Module | None = None) -> Prepared:
    """Check every input before any work and build the untrained model.

    Args:
        spec: the job.
        model: a model of your own (any Norse/torch module the compiler lowers, untrained or
            pre-trained, not yet GradR-parametrized) instead of ``spec.model``'s; it takes
            ``(T, B, n_in)`` input, or ``(T, B, C, H, W)`` images for a model that starts
            with a ``Conv2d`` (the data's features as square images of its channels) or has
            an ``input_shape`` attribute (``spec.steps``, ``spec.encoding``,
            ``spec.input_gain`` say how the data becomes that input).

    Raises:
        ProfileError, DataError, BudgetError, ValueError: naming the field and the fix.
        CompileError, LoweringError: (``model``) what the chip or the compiler cannot take.
    """
    check_fields(spec)
    profile = load_profile(spec.profile)
    out = check_out_dir(spec.out)
    remove_stale(out)  # staging folders that killed runs left beside or inside the output
    kind, encoding = check_input(spec.input, spec.events, spec.encoding)
    spec = dataclasses.replace(spec, input=kind, encoding=encoding)
    spikes = None
    if spec.events is not None:
        spikes, split = load_events(spec.events, spec.steps)
    # the initial weights follow the seed too: the same seed gives the same files
    torch.manual_seed(spec.train.seed)
    if spec.events is None:
        split = load_split(spec.dataset, spec.data_dir)
        if kind == "spikes":
            spikes = rate_code(split, spec.steps, spec.train.seed)
            split = dataclasses.replace(split, name=f"{split.name}:spikes")
    if model is not None:
        return _prepare_user_model(spec, profile, split, out, spikes, model)
    if spec.model == "conv":
        check_conv(spec, image_shape(split.num_features))
        model = SpikingConvNet(image_shape(split.num_features), channels=spec.channels,
                               kernels=spec.kernels, strides=spec.strides, pools=spec.pools,
                               classes=split.num_classes, steps=spec.steps,
                               encoding=spec.encoding, input_gain=spec.input_gain)
        check_neuron_fits(profile, model.neuron)
        return Prepared(spec, profile, split, model, _gradr_budget(spec, profile, model), out,
                        spikes)
    sizes = (split.num_features, *spec.hidden, split.num_classes)
    check_trainable(sizes)
    mapping.check_network(profile, sizes, spec.cores)  # what no pruning can fix, before training
    model = MLP_MODELS.get(profile.neuron.model, SpikingMLP)(
        sizes, steps=spec.steps, encoding=spec.encoding, input_gain=spec.input_gain)
    check_neuron_fits(profile, model.neuron)
    budget = make_budget(profile, sizes, cores=spec.cores, max_synapses=spec.max_synapses,
                         connectivity=spec.connectivity, max_fan_in=spec.max_fan_in)
    return Prepared(spec, profile, split, model, budget, out, spikes)


__all__ = ["COMPILED_MODELS", "MLP_MODELS", "Prepared", "has_compiler", "prepare"]
