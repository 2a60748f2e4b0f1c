"""The job's quantization-aware training rule (issue 23, item 3): the final epochs train on
the chip's grid (:mod:`rewire.training.qat`) when the float-vs-integer class agreement is
below :data:`QAT_BELOW`, or always with ``--qat N``; the table and ``report.json`` say which.

The agreement is measured on (at most :data:`CHECK_SAMPLES`) training inputs when the QAT
epochs would start, never on the test set. When the rule leaves QAT off, training is the same
run as without the rule (the check runs the compiler on the model and changes nothing: the
random state is forked around it), so the files are byte-identical.
"""

from __future__ import annotations

import numpy as np

from rewire.job.preparation import has_compiler
from rewire.training.qat import QAT, auto_epochs
from rewire.training.train import encoded_batches

QAT_BELOW = 0.99    #: class agreement below which ``--qat auto`` turns QAT on
CHECK_SAMPLES = 1000  #: training inputs the agreement is measured on


def check_inputs(prep) -> np.ndarray:
    """What :func:`rewire.compiler.equivalence.compare` takes for the first
    :data:`CHECK_SAMPLES` training inputs of ``prep`` (a
    :class:`rewire.job.preparation.Prepared`): ``(B, n_in)`` values for ``current`` encoding,
    else the spike trains ``(T, B, n_in)`` (the run's fixed trains, or rewire's rate coding
    seeded by ``train.seed``)."""
    if prep.spikes is not None:
        return prep.spikes.x_train[:CHECK_SAMPLES].transpose(0, 1).cpu().numpy()
    x = prep.split.x_train[:CHECK_SAMPLES]
    encoding = prep.run_options.get("encoding") or getattr(prep.model, "encoding", "current")
    if encoding == "current":
        return x.cpu().numpy()
    return np.concatenate([enc.cpu().numpy() for _, enc in encoded_batches(
        prep.model, x, seed=prep.spec.train.seed)], axis=1)


def qat_option(prep) -> QAT | None:
    """The ``qat=`` of ``train`` for the job ``prep``: ``None`` for ``--qat off``, for ``auto``
    on a one-epoch run, and for a chip rewire does not compile (no fixed point to train for).

    Raises:
        ValueError: ``--qat N`` on a chip whose neuron model has no compiler (named).
    """
    spec = prep.spec
    if spec.qat == "off" or (spec.qat == "auto" and spec.train.epochs < 2):
        return None  # auto never trains the whole run on the grid: no epoch to measure after
    if not has_compiler(prep.profile):
        if spec.qat == "auto":
            return None
        raise ValueError(f"qat: profile {prep.profile.name!r} has no fixed-point compiler "
                         f"(neuron model {prep.profile.neuron.model!r}), so there is no grid "
                         f"to train on; leave --qat at auto or off")
    auto = spec.qat == "auto"
    return QAT(prep.profile, auto_epochs(spec.train.epochs) if auto else spec.qat,
               input_max_value=prep.split.max_value, cores=spec.cores,
               calibration=None if prep.spikes is not None else prep.split.x_train.numpy(),
               below=QAT_BELOW if auto else None,
               check_inputs=check_inputs(prep) if auto else None)


def qat_line(info: dict) -> str | None:
    """The table's ``QAT`` line of ``report["qat"]`` (``None`` when the job ran without it)."""
    if not info:
        return None
    if info.get("check_failed"):
        return f"off: the agreement could not be measured ({info['check_failed']})"
    before = info.get("agreement_before")
    measured = "" if before is None else f"float vs int agreement {before:.2%} on training data"
    if not info.get("on"):
        return f"off: {measured} >= {info['below']:.0%} when the final {info['epochs']} " \
               f"epochs would start"
    why = f" ({measured} < {info['below']:.0%})" if before is not None else " (--qat)"
    return (f"on for the final {info['epochs']} epochs{why}; {info.get('grid_zero', 0)} "
            f"connected synapses round to 0 on the grid")
