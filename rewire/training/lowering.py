"""Refuse before training: :func:`rewire.training.train.train` lowers the model to the IR
(:func:`rewire.frontends.lower`, the frontend ``rewire.compile`` uses) with the run options
training presents the input with, before the first optimizer step, so that whatever
``rewire.compile`` would refuse (a ``MaxPool2d``, a module called at two places, a gain the
chip's input cannot carry) is refused before any epoch, and records those options on the model
(:data:`rewire.frontends.run_options.TRAINED_OPTIONS`) for ``rewire.compile`` to take.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rewire.errors import CompileError, RewireError
from rewire.frontends import lower
from rewire.frontends.run_options import TRAINED_OPTIONS, presents_own_input
from rewire.ir.network import Network
from rewire.training.counting import record_fixed_synapses
from rewire.training.feed import resolve_options
from rewire.training.layout import sample_shape

__all__ = ["lower_before_data", "lower_for_training", "record_options", "known_shape"]


def known_shape(shape: tuple) -> bool:
    """Whether every entry of a per-sample shape is known (``None``: any size)."""
    return all(s is not None for s in shape)


def _example(model: nn.Module, steps: int, shape: tuple) -> torch.Tensor:
    """The input ``rewire.compile``'s frontend runs the forward on: ``(1, F)`` samples for a
    model that presents its input itself, else ``(min(T, 3), 1, *shape)`` zeros, on the
    model's device."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if presents_own_input(model):
        return torch.zeros((1, int(math.prod(shape))), device=device)
    # a few steps show the data path (the run options give the steps): a long run's full
    # length would trace (and hold) every step before the memory check has spoken
    return torch.zeros((min(int(steps), 3), 1, *shape), device=device)


def lower_for_training(model: nn.Module, options: dict, shape: tuple,
                       input_shape: tuple | None) -> Network:
    """Lower ``model`` as ``rewire.compile(model, ..., **options)`` would, before training.

    An earlier run's record on the model is set aside meanwhile (this run's options replace
    it, see :func:`record_options`), and the model is lowered in eval mode, as it will be
    compiled (a BatchNorm folds its running statistics); the model is not changed.

    Args:
        model: the model about to be trained (plain or GradR-parametrized).
        options: ``steps``, ``encoding``, ``input_gain`` (``TrainResult.run_options``).
        shape: the per-sample input shape, every entry known.
        input_shape: the ``input_shape`` the user gave ``train`` (passed on as given).

    Returns:
        The IR :class:`~rewire.ir.network.Network` (discarded by ``train``). The synapses of
        its identity shortcuts are recorded on the model
        (:func:`rewire.training.counting.record_fixed_synapses`): the budget counts them.

    Raises:
        rewire.errors.LoweringError: what the frontend cannot lower, named, with its fix.
        rewire.errors.CompileError: a value an IR node refuses (as ``rewire.compile``).
        ValueError: the model's forward fails on the input the frontend runs it on.
    """
    previous = model.__dict__.pop(TRAINED_OPTIONS, None)
    example = _example(model, options["steps"], shape)
    was_training = model.training
    model.eval()  # as compiled: a BatchNorm folds its running statistics (eval mode)
    try:
        opts = dict(options)  # run_options carry the data's input_shape where it matters
        given = opts.pop("input_shape", None)
        opts["input_shape"] = input_shape if input_shape is not None else given
        net = lower(model, example, **opts)
        # identity shortcuts: synapses the chip holds and no weight tensor does
        record_fixed_synapses(model, net, lambda m: lower(m, example, **opts))
        return net
    except RewireError:
        raise
    except ValueError as exc:  # an IR node refused a value, as rewire.compile reports it
        raise CompileError(f"the model cannot be compiled: {exc}") from None
    except (RuntimeError, TypeError, IndexError) as exc:
        raise ValueError(f"rewire.train lowers the model before training, as rewire.compile "
                         f"will, by running its forward once on {tuple(example.shape)} zeros; "
                         f"it raised {type(exc).__name__}: {exc}; the forward must take "
                         f"(T, B, ...) input (rewire's own models: (B, features))") from exc
    finally:
        model.train(was_training)
        if previous is not None:
            model.__dict__[TRAINED_OPTIONS] = previous


def record_options(model: nn.Module, options: dict) -> None:
    """Record the run options training presents the input with on ``model``
    (:data:`~rewire.frontends.run_options.TRAINED_OPTIONS`): lowering it later takes them as
    defaults and refuses a different explicit option, naming both values."""
    model.__dict__[TRAINED_OPTIONS] = dict(options)


def lower_before_data(model: nn.Module, steps, encoding, input_gain,
                      input_shape: tuple | None) -> tuple[dict, tuple] | None:
    """:func:`lower_for_training` before any batch is read, with the options dense input
    would be presented with (:func:`rewire.training.feed.resolve_options`), where the
    model's per-sample shape is known without data; else ``None`` (lowered once the first
    batch tells the shape).

    Returns:
        ``(options, shape)`` it lowered with, or ``None``.

    Raises:
        as :func:`lower_for_training`; ``ValueError`` for options or a shape
        :class:`~rewire.training.feed.Feed` would refuse too.
    """
    own = presents_own_input(model)
    s, e, g = resolve_options(model, steps, encoding, input_gain)
    shape = sample_shape(model, input_shape)
    if own:  # rewire's models take flat features; their gain is their forward's own
        g, shape = 1.0, (math.prod(shape),)
    if not known_shape(shape):
        return None
    options = {"steps": s, "encoding": e, "input_gain": g}
    lower_for_training(model, options, shape, input_shape)
    return options, shape
