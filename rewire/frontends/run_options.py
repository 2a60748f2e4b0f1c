r"""The run options of a lowered Norse/torch model (``steps``, ``encoding``, ``input_gain``),
shared by :func:`rewire.frontends.norse.lower` and :func:`rewire.training.train.train` so that
the two read a model alike.

**Gains compose by one rule**: the network's input current is
:math:`g\,x` with

.. math::  g = g_\mathrm{forward} \cdot g_\mathrm{option},

:math:`g_\mathrm{forward}` the constant factor the model's own forward puts on its input
(found by the trace; for a model that presents its input itself, rewire's ``SpikingMLP`` and
``SpikingConvNet``, its ``input_gain`` attribute, which is that factor) and
:math:`g_\mathrm{option}` the ``input_gain`` run option, the factor applied to the input
*before* the forward (what :func:`rewire.training.train.train` multiplies dense input by when
it encodes it). Either is 1 when absent. ``rewire.train`` records its run options on the model
(:data:`TRAINED_OPTIONS`); lowering that model takes them as defaults and refuses an explicit
option that differs, naming both values.
"""

from __future__ import annotations

import torch
from torch import nn

from rewire.errors import LoweringError
from rewire.ir._checked import check_encoding, check_gain, check_steps

__all__ = ["TRAINED_OPTIONS", "presents_own_input", "trained_options", "resolve_run_options"]

#: The attribute :func:`rewire.training.train.train` sets on a model it trained: a dict of the
#: run options (``steps``, ``encoding``, ``input_gain``) it presented the input with, as
#: ``TrainResult.run_options`` holds them.
TRAINED_OPTIONS = "_rewire_trained_options"
_RUN_CHECKS = {"steps": check_steps, "encoding": check_encoding, "input_gain": check_gain}


def presents_own_input(model: nn.Module) -> bool:
    """Whether ``model`` takes the samples themselves ``(B, ...)`` and presents them over its
    steps (``encode`` and ``run_encoded`` methods: rewire's ``SpikingMLP`` and
    ``SpikingConvNet``); its ``input_gain`` attribute is then the gain of its own forward,
    not a run option applied before it."""
    return callable(getattr(model, "encode", None)) and \
        callable(getattr(model, "run_encoded", None))


def trained_options(model: nn.Module) -> dict | None:
    """The run options ``rewire.train`` recorded on ``model`` (:data:`TRAINED_OPTIONS`), or
    ``None`` for a model it did not train."""
    record = getattr(model, TRAINED_OPTIONS, None)
    return dict(record) if isinstance(record, dict) else None


def _attribute(model: nn.Module, name: str):
    """The model's plain attribute ``name`` (checked, named ``model.<name>``), else None."""
    value = getattr(model, name, None)
    if value is None or isinstance(value, (nn.Module, torch.Tensor)):
        return None
    return _RUN_CHECKS[name](value, f"model.{name}")


def resolve_run_options(model: nn.Module, info: dict, steps=None, encoding=None,
                        input_gain=None) -> tuple[int | None, str, float, list[str]]:
    r"""The lowered network's ``steps``, ``encoding`` and ``input_gain`` (see the module
    docstring for the gain rule).

    Each option is the argument, else what ``rewire.train`` recorded on the model, else the
    model's attribute of that name (for ``input_gain`` only on a model that does not present
    its input itself), else what the trace found (``info["steps"]``: calls of the busiest
    module; ``encoding`` ``"current"`` when the forward multiplies its input by a constant,
    else ``"rate"``); ``steps`` may come back ``None`` (not known).

    Args:
        model: the model being lowered.
        info: the trace's findings, ``{"gain": float | None, "steps": int}``.
        steps, encoding, input_gain: the explicit run options (``None``: not given).

    Returns:
        ``(steps, encoding, gain, notes)``: ``gain`` is
        :math:`g_\mathrm{forward} \cdot g_\mathrm{option}`; ``notes`` says how it was composed
        when both factors differ from 1.

    Raises:
        rewire.errors.LoweringError: an explicit option that differs from the one
            ``rewire.train`` presented the input with (both values named; ``input_gain``
            only with ``current`` encoding, the only one it acts in); a constant factor
            on the input in the forward with ``encoding="rate"`` (spikes carry no gain).
    """
    given = {"steps": steps, "encoding": encoding, "input_gain": input_gain}
    record = trained_options(model) or {}
    traced = info.get("gain")
    for name in given:  # input_gain last: it matters only with current encoding
        value, trained = given[name], record.get(name)
        if name == "input_gain" and encoding != "current":
            trained = None if value is not None else trained
        if value is not None and trained is not None and value != trained:
            raise LoweringError(
                f"{name}={value!r} given, but rewire.train presented this model's input "
                f"with {name}={trained!r} (TrainResult.run_options): the chip would see "
                f"another input than the one the model was trained on; pass "
                f"{name}={trained!r} or leave {name} out", name)
        if value is None:
            given[name] = trained
        if name == "encoding":
            encoding = given["encoding"] or _attribute(model, "encoding") or \
                ("current" if traced is not None else "rate")
    own = presents_own_input(model)
    forward_gain = traced if traced is not None else \
        (_attribute(model, "input_gain") if own else None)
    option = given["input_gain"] if given["input_gain"] is not None else \
        (None if own else _attribute(model, "input_gain"))
    steps = given["steps"] or _attribute(model, "steps") or info.get("steps") or None
    if encoding == "rate" and traced is not None and traced != 1.0:
        raise LoweringError(
            f"the forward multiplies its input by {traced:g}, but the input is spike trains "
            f"(encoding 'rate'): the chip's input spikes carry no gain, so the factor would be "
            f"lost; fold it into the first layer's weights (with torch.no_grad(): "
            f"first_layer.weight.mul_({traced:g})) and take it out of forward", "input_gain")
    gain = (forward_gain if forward_gain is not None else 1.0) * \
        (option if option is not None else 1.0)
    notes = []
    if forward_gain not in (None, 1.0) and option not in (None, 1.0):
        notes.append(f"input_gain {gain:g} = {forward_gain:g} (the model's forward multiplies "
                     f"its input by it) x {option:g} (the input_gain run option)")
    return steps, encoding, float(gain), notes
