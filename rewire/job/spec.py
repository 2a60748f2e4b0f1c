"""What the main job is asked to do: :class:`JobSpec` and the training defaults of each model.

Every default of the job lives here (and in :class:`rewire.training.train.TrainConfig`): the
command line (:mod:`rewire.job.cli`) builds its parser from these fields, so
``python -m rewire.export`` and ``rewire.run_job()`` run the same job.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewire.errors import RewireError
from rewire.hw_profiles.profile import load_profile
from rewire.training.train import TrainConfig

MODELS = ("mlp", "conv")

#: Training defaults of ``model="conv"`` where they differ from the mlp's (``TrainConfig()``),
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
CONV_CONTROLLER = {"alpha_max": 0.95, "short_below": 0}  # short-run schedule untried on conv
#: Default epochs of ``model="conv"`` per data set (an epoch of MNIST's 8,000 training images
#: in ``mnist-t10k`` is 5.6 times one of digits' 1,437; one of the standard split's 60,000 is
#: 7.5 times that, so one epoch of ``mnist`` takes 1.5 times the steps of the 5 epochs
#: measured on ``mnist-t10k`` in docs/conv.md); other data sets get ``CONV_EPOCHS_OTHER``.
CONV_EPOCHS = {"digits": 60, "mnist-t10k": 5, "mnist": 1}
CONV_EPOCHS_OTHER = 10


#: The job's defaults for a chip whose ``neuron.model`` is the key, where they differ from
#: those of every other chip (:data:`COMMON_DEFAULTS`): the task, network and training the job
#: runs on it when the fields are left out. ``cuba_bitshift`` (SynSense Xylo Audio 2: 16 input
#: channels, 8 outputs): the 16-channel 8-class ``digits-xylo`` task, with the figures chosen
#: on its validation split (the last 231 training samples; docs/training.md, "Xylo").
PROFILE_DEFAULTS = {
    "cuba_bitshift": {"dataset": "digits-xylo", "hidden": (128,), "steps": 8,
                      "input_gain": 4.0, "connectivity": None,
                      "train": {"epochs": 40, "lr": 3e-3}},
}
#: The defaults of the fields :data:`PROFILE_DEFAULTS` may set, on every other chip.
COMMON_DEFAULTS = {"dataset": "digits", "hidden": (256,), "steps": 16, "input_gain": 4.0,
                   "connectivity": 0.1}
#: The default of ``JobSpec.connectivity`` until the profile is known (``None`` is a value:
#: no connectivity limit).
PROFILE_CONNECTIVITY = "profile"


def profile_defaults(profile) -> dict:
    """The job's defaults for ``profile`` (a shipped name or a TOML path): :data:`COMMON_DEFAULTS`
    updated by :data:`PROFILE_DEFAULTS` of its ``neuron.model``. A profile that cannot be
    loaded gets the common ones (:func:`rewire.job.preparation.prepare` names its error)."""
    try:
        model = load_profile(profile).neuron.model
    except (RewireError, OSError, ValueError, TypeError):
        model = None
    return {**COMMON_DEFAULTS, **PROFILE_DEFAULTS.get(model, {})}


def default_train_config(model: str = "mlp", dataset: str = "digits",
                         profile: str | None = None) -> TrainConfig:
    """The training defaults of ``model`` on ``dataset``: ``TrainConfig()`` for the mlp
    (updated by the ``train`` entry of :data:`PROFILE_DEFAULTS` for ``profile``'s neurons);
    for ``conv`` the learning rate :data:`CONV_LR`, the controller's :data:`CONV_CONTROLLER`
    and the epochs of :data:`CONV_EPOCHS`.

    Raises:
        ValueError: ``model`` is not one of :data:`MODELS` (the job's only check of it).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if model == "mlp":
        own = profile_defaults(profile).get("train", {}) if profile is not None else {}
        return TrainConfig(**own)
    return TrainConfig(epochs=CONV_EPOCHS.get(dataset, CONV_EPOCHS_OTHER), lr=CONV_LR,
                       controller=dict(CONV_CONTROLLER))


@dataclass(frozen=True)
class JobSpec:
    """Everything the main job needs; the command line's options are these fields (and
    ``train``'s), under the names :data:`rewire.job.cli.FLAGS` gives them.

    Attributes:
        profile: shipped profile name or TOML path.
        out: output folder.
        dataset, data_dir: data set (``digits`` and ``digits-xylo`` need no folder).
            Left out (``None``), ``dataset``, ``hidden``, ``steps``, ``input_gain``,
            ``connectivity`` and ``train`` take the profile's defaults
            (:func:`profile_defaults`: ``digits``, ``(256,)``, 16, 4, 0.1; on Xylo the
            16-channel 8-class ``digits-xylo`` task and its network).
        model: ``"mlp"`` (:class:`rewire.training.model.SpikingMLP`) or ``"conv"``
            (:class:`rewire.training.conv.SpikingConvNet` on the square image).
        hidden: hidden layer sizes (``mlp``).
        channels, kernels, strides, pools: conv stages (``conv``): output channels, kernel
            size, stride and sum-pooling window of each (padding ``kernel // 2``).
        steps: time steps ``T``.
        encoding: ``current`` or ``rate`` (default: ``current`` for dense input, ``rate``
            for spike trains).
        input: ``"dense"`` (default without ``events``: the data set's values, encoded by
            ``encoding`` every batch) or ``"spikes"`` (the values made into fixed Bernoulli
            spike trains ``(N, T, F)`` before training, seeded by ``train.seed``:
            :mod:`rewire.job.events`).
        events: an ``.npz`` of spike trains to train on instead of ``dataset`` (implies
            ``input="spikes"``; its arrays: :mod:`rewire.job.events`).
        input_gain: constant-current gain.
        cores, max_synapses, connectivity, max_fan_in: budget options (see
            :func:`rewire.training.budget.make_budget`).
        train: :class:`TrainConfig`; ``None`` (the default) takes the model's defaults,
            :func:`default_train_config` (``TrainConfig()`` for the mlp).
        qat: quantization-aware training (:mod:`rewire.job.qat_rule`): ``"auto"`` (default:
            the final epochs train on the chip's grid when the float-vs-integer class
            agreement, measured on training data when they would start, is below 99 %),
            ``"off"``, or a number of final epochs trained on the grid in any case.
        lava_samples: test samples to run through Lava and compare spike for spike with the
            integer model (0 = skip; skipped when Lava is not installed). The default, 10, is
            the same from Python and from the command line (before this version Python's was
            0): ``rewire.run_job()`` runs the job ``python -m rewire.export`` runs.
        strict: the run's warnings are errors: after the files are written and the table
            printed, :func:`rewire.job.runner.run` raises a
            :class:`~rewire.errors.StrictError` naming every warning (the compiler's,
            :mod:`rewire.compiler.diagnostics`, and the report's,
            :mod:`rewire.job.health`); ``--strict`` exits with code 3.

    Raises:
        ValueError: ``model`` is not one of :data:`MODELS` (the other fields are checked by
            :func:`rewire.job.preparation.prepare`, before any work).
    """

    profile: str = "loihi2"
    out: str = "build"
    dataset: str | None = None
    data_dir: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] | None = None
    channels: tuple[int, ...] = (16, 32)
    kernels: tuple[int, ...] = (5, 3)
    strides: tuple[int, ...] = (2, 1)
    pools: tuple[int, ...] = (1, 2)
    steps: int | None = None
    encoding: str | None = None
    input_gain: float | None = None
    cores: int | None = None
    max_synapses: int | None = None
    connectivity: float | None | str = PROFILE_CONNECTIVITY
    max_fan_in: int | None = None
    train: TrainConfig | None = None
    lava_samples: int = 10
    input: str | None = None
    events: str | None = None
    strict: bool = False
    qat: str | int = "auto"

    def __post_init__(self) -> None:
        unset = [f for f in COMMON_DEFAULTS if f != "connectivity" and getattr(self, f) is None]
        if self.connectivity == PROFILE_CONNECTIVITY:
            unset.append("connectivity")
        if unset or self.train is None:
            chip = profile_defaults(self.profile)
            for name in unset:
                object.__setattr__(self, name, chip[name])
        defaults = default_train_config(self.model, self.dataset, self.profile)
        if self.train is None:
            object.__setattr__(self, "train", defaults)
        if self.qat not in ("auto", "off") and (isinstance(self.qat, bool) or not isinstance(
                self.qat, int) or not 1 <= self.qat <= self.train.epochs):
            raise ValueError(f"qat must be 'auto', 'off' or a number of final epochs in [1, "
                             f"epochs = {self.train.epochs}], got {self.qat!r}")


def training_line(spec: JobSpec) -> str:
    """The header line with the training options actually used (the model's defaults
    included), e.g. ``training: gradr, 60 epochs, lr 0.01, batch 64, seed 0, controller
    {'alpha_max': 0.95}``."""
    t = spec.train
    extra = f", controller {t.controller}" if t.controller else ""
    return (f"training: {t.method}, {t.epochs} epochs, lr {t.lr:g}, batch {t.batch_size}, "
            f"seed {t.seed}{extra}")


__all__ = ["COMMON_DEFAULTS", "PROFILE_DEFAULTS", "profile_defaults", "CONV_CONTROLLER", "CONV_EPOCHS", "CONV_EPOCHS_OTHER", "CONV_LR", "JobSpec", "MODELS",
           "default_train_config", "training_line"]
