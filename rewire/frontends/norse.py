r"""Norse / torch frontend: lower a user's ``nn.Module`` to the IR (:mod:`rewire.ir`).

Two ways in, both ending in one :class:`~rewire.ir.network.Network`:

* **Containers** (``torch.nn.Sequential``, ``norse.torch.SequentialState``, nested): their
  children, in order, are the data flow; nothing is run.
* **Any other module** is *run once* on an example input while every module call and every
  torch function between them is recorded (module forward hooks and a
  ``torch.overrides.TorchFunctionMode``). ``torch.fx`` (and nirtorch's tracer, built on it)
  trace symbolically and cannot run the time loop ``for t in range(x.shape[0])`` that Norse's
  documentation writes, hence a recording of one concrete run. From the record, the data path
  from the input to the output is followed through the supported modules; between them only
  these functions may stand: indexing (a time step ``x[t]`` of the input), multiplication of the
  input by a constant (the input gain), ``bernoulli`` of the input (rate coding),
  ``reshape``/``view``/``flatten`` (a :class:`~rewire.ir.nodes.Flatten`), ``add`` of two
  synaptic inputs into one cell (a feedback ``Linear`` from the same cell becomes
  :class:`~rewire.ir.nodes.RecurrentDense`), ``unsqueeze``/``expand``/``repeat`` of the input
  (presenting it every step), and ``stack``/``cat`` of the outputs.

Supported modules (:data:`CONVERTERS` in :mod:`rewire.frontends._norse_convert`;
:func:`register` adds more, explicitly): ``Linear`` (its bias the node's bias), ``Conv2d``
(zero padding, dilation 1, its bias the node's), ``BatchNorm1d``/``BatchNorm2d`` in eval mode
right after a ``Linear``/``Conv2d`` (folded into its weights and bias,
:func:`rewire.ir.fuse.fold_batchnorm`), ``AvgPool2d`` (a sum pool of weight ``1/(kH kW)``),
:class:`rewire.frontends.pooling.SumPool2d`, ``Flatten``, ``Dropout``/``Identity``
(inference: identity), and
Norse's ``LIFCell`` (→ ``CubaLIF``), ``LIFBoxCell`` (→ ``LIF``), ``IAFCell`` (→ ``IF``),
``LICell`` (→ ``CubaLI``), ``LIBoxCell`` (→ ``LI``) and ``LIFRecurrentCell`` (→
``RecurrentDense`` + ``CubaLIF``, ``input_weights``/``recurrent_weights`` with autapses
masked as Norse masks them), and rewire's :class:`~rewire.frontends.bitshift.LIFBitshiftCell`
(Xylo's neuron, → ``BitshiftLIF``). Synapse modules in a row without a neuron cell between them
(``Linear -> Linear``, ``Linear -> LIFRecurrentCell``, a pool or conv before a conv or a
flattened ``Linear``) are composed exactly into one layer named ``"a+b"``
(:func:`rewire.ir.fuse.fuse`), or refused naming the pair. **Nothing is dropped silently**: every parameter and buffer of
the model must end up in the IR, else :class:`~rewire.errors.LoweringError` names it; so does
every module or function on the data path that has no mapping, with the reason and what to do.

Run options (``steps``, ``encoding``, ``input_gain``) come from the arguments, else from what
``rewire.train`` recorded on the model, else from the model's attributes of those names where
it has them (rewire's ``SpikingMLP`` and ``SpikingConvNet`` do), else from the trace (steps =
calls of the last cell; a constant factor on the input: ``encoding="current"``), else the
defaults (16 steps, ``rate``), with a note saying so. The network's gain is the factor the
forward puts on its input times the ``input_gain`` option
(:func:`rewire.frontends.run_options.resolve_run_options`).

Example:
    >>> import torch
    >>> from norse.torch import LIFCell, SequentialState
    >>> model = SequentialState(torch.nn.Linear(4, 3, bias=False), LIFCell(),
    ...                         torch.nn.Linear(3, 2, bias=False), LIFCell())
    >>> net = lower(model, steps=8)
    >>> [(l.synapse.op, l.neuron.kind, l.out_shape) for l in net.layers]
    [('dense', 'CubaLIF', (3,)), ('dense', 'CubaLIF', (2,))]
"""

from __future__ import annotations

import dataclasses

import math

import numpy as np
import torch
from norse.torch import LIFRecurrentCell
from torch import nn

from rewire.errors import LoweringError
from rewire.frontends._norse_convert import (CONVERTERS, Norm, _bias, _converter,
                                             _is_container, _LOWERED, _np, _parametrization,
                                             _unsupported, register)
from rewire.frontends._norse_skips import traced_skips
from rewire.frontends._norse_trace import _chain_from_trace, _trace, check_module_behaviour
from rewire.frontends.run_options import resolve_run_options
from rewire.frontends.torch_module import IRModule, to_module
from rewire.ir import nodes as ir
from rewire.ir._checked import check_encoding, check_gain, check_int, check_steps
from rewire.ir.fuse import fold_batchnorm, fuse
from rewire.ir.network import Network

__all__ = ["CONVERTERS", "register", "lower", "to_module", "IRModule"]

_NEURON_TYPES = tuple(ir.NEURONS.values())

DEFAULT_STEPS = 16


def _nodes_for(module: nn.Module, path: str) -> list:
    cls, converter = _converter(module)
    if converter is None:
        raise _unsupported(module, path)
    try:
        out = converter(module, path)
    except LoweringError:
        raise
    except ValueError as exc:  # an IR node refused a value (NaN weight, tau <= 0, ...)
        raise LoweringError(f"{path or '<model>'} ({type(module).__name__}): {exc}", path) \
            from None
    return [] if out is None else out if isinstance(out, list) else [out]


def _container_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out = []
    for name, child in model.named_children():
        if _is_container(child):
            out += [(f"{name}.{p}", m) for p, m in _container_modules(child)]
        else:
            out.append((name, child))
    return out


def _check_all_lowered(model: nn.Module, used: set) -> None:
    """Every parameter and buffer of ``model`` belongs to a lowered module's lowered fields."""
    for path, module in model.named_modules():
        if _parametrization(path):
            continue
        cls = _converter(module)[0]
        own = list(module.named_parameters(recurse=False)) + \
            list(module.named_buffers(recurse=False))
        for name, _ in own:
            full = f"{path}.{name}" if path else name
            if module not in used or cls is None:
                raise LoweringError(f"parameter {full} ({type(module).__name__}) is not on the "
                                    f"data path from the input to the output, so it would be "
                                    f"dropped; remove it or use it in forward", full)
            if cls is not None and name not in _LOWERED.get(cls, ()):
                raise LoweringError(f"parameter {full} of {type(module).__name__} has no place "
                                    f"in the IR; it would be dropped", full)


def _option(value, model, name, check):
    """A run option: the argument, else the model's plain attribute of that name (checked by
    ``check``, named ``model.<name>``), else None."""
    if value is not None:
        return value
    attr = getattr(model, name, None)
    if attr is None or isinstance(attr, (nn.Module, torch.Tensor)):
        return None
    return check(attr, f"model.{name}")


#: Most input values per sample ``input_shape`` may give (10**8, float32: 400 MB).
MAX_INPUT_SIZE = 10**8


def _check_options(steps, encoding, input_gain, input_shape) -> None:
    """Refuse run options rather than coerce them (``steps=0`` is not 16, ``2.5`` not 2,
    ``True`` not 1, ``encoding=""`` not ``"rate"``).

    Raises:
        TypeError: an option of the wrong type. ValueError: out of range (named).
    """
    if steps is not None:
        check_steps(steps, "steps")
    if encoding is not None:
        check_encoding(encoding, "encoding")
    if input_gain is not None:
        check_gain(input_gain, "input_gain")
    if input_shape is not None:
        if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (1, 3):
            raise TypeError(f"input_shape must be a tuple (n,) or (C, H, W), got "
                            f"{input_shape!r}")
        for k, n in enumerate(input_shape):
            check_int(f"input_shape[{k}]", n, 1, MAX_INPUT_SIZE)
        if int(np.prod([int(n) for n in input_shape], dtype=object)) > MAX_INPUT_SIZE:
            raise ValueError(f"input_shape {tuple(input_shape)} holds more than "
                             f"{MAX_INPUT_SIZE} values per sample")


def lower(model: nn.Module, example_input: torch.Tensor | None = None, *,
          steps: int | None = None, encoding: str | None = None,
          input_gain: float | None = None, input_shape: tuple[int, ...] | None = None
          ) -> Network:
    """Lower a Norse/torch model to an IR :class:`~rewire.ir.network.Network`.

    Args:
        model: ``nn.Sequential``/``SequentialState`` of supported modules, or any module whose
            forward runs on ``example_input`` (see the module docstring). It is not modified.
        example_input: an input the model's forward takes: ``(B, ...)`` for a model that loops
            over time itself (rewire's ``SpikingMLP``), ``(T, B, ...)`` for one that loops over
            the input's first axis. Default: ``(1, n_in)`` (with ``model.steps``) or
            ``(T, 1, n_in)`` zeros, ``n_in`` from the first Linear (``input_shape`` from the
            model's ``input_shape`` attribute for conv nets).
        steps, encoding, input_gain: run options (see the module docstring).
        input_shape: per-sample input shape (default from the first layer or the example);
            a ``(C, H, W)`` image before a dense first layer stays the network's
            ``input_shape`` (a leading :class:`~rewire.ir.nodes.Flatten`): the layout the
            model's forward takes.

    Returns:
        The IR network (``source = "norse"``), layers named by module path.

    Raises:
        rewire.errors.LoweringError: a module, parameter or function that cannot be lowered,
            naming it (type and path), why, and what to do instead; a forward, pre- or
            backward hook on any module (or torch's global module hooks), or a subclass of a
            lowered module overriding its forward (:func:`check_module_behaviour`).
        TypeError, ValueError: run options of the wrong type or out of range (``steps`` an
            integer in [1, 10**6], ``encoding`` ``"current"``/``"rate"``, ``input_gain`` a
            finite number > 0), named; refused, never coerced.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"lower takes an nn.Module, got {type(model).__name__}")
    _check_options(steps, encoding, input_gain, input_shape)
    for name, check in (("steps", check_steps), ("encoding", check_encoding),
                        ("input_gain", check_gain)):
        _option(None, model, name, check)  # the model's own attributes, before any run
    check_module_behaviour(model)
    notes: list[str] = []
    direct = _is_container(model) or _converter(model)[1] is not None  # nothing to trace
    if direct:
        chain = _container_modules(model) if _is_container(model) else [("", model)]
        feedback: dict = {}
        info = {"gain": None, "steps": 0, "skips": []}
    else:
        example = example_input if example_input is not None else \
            _default_example(model, steps, input_shape)
        calls, paths = _trace(model, example)
        modules, feedback, info = _chain_from_trace(model, calls, paths)
        chain = [(paths.get(m, ""), m) for m in modules]
        _check_all_lowered(model, set(modules) | set(feedback.values()) | {model} |
                           {s.linear for s in info["skips"] if s.linear is not None})
        if input_shape is None:
            per = tuple(example.shape[2:]) if example.dim() >= 3 and not hasattr(model, "steps") \
                and not hasattr(model, "input_shape") else tuple(example.shape[1:])
            input_shape = tuple(getattr(model, "input_shape", per))
    nodes, names, kinds, layer_of = [], [], [], {}
    for path, m in chain:
        new = _nodes_for(m, path)
        if m in feedback:
            fb = feedback[m]
            if not isinstance(fb, nn.Linear) or not new or not isinstance(new[0], (ir.CubaLIF,
                                                                                   ir.LIF, ir.IF)):
                raise _unsupported(fb, paths.get(fb, ""), "a feedback module other than a "
                                   "Linear into a spiking cell")
            ff = nodes.pop()
            if not isinstance(ff, ir.Dense):
                raise _unsupported(m, path, "a recurrent cell whose feed-forward synapse is not "
                                   "a Linear")
            biases = [b for b in (ff.bias, _bias(fb)) if b is not None]
            nodes.append(ir.RecurrentDense(ff.weight, _np(fb.weight),
                                           sum(b.astype(np.float64) for b in biases)
                                           if biases else None))
        for node in new:
            if isinstance(node, Norm):
                nodes.append(_fold_norm(nodes.pop() if nodes else None, node, m, path))
                continue
            if isinstance(node, ir.SYNAPSES):
                names.append(path or type(m).__name__)
                kinds.append(type(m).__name__)
                prev = next((n for n in reversed(nodes) if isinstance(n, (*ir.SYNAPSES,
                                                                          ir.Flatten))), None)
                if node.op in ("dense", "dense_rec") and prev is not None and \
                        prev.op in ("conv", "sumpool"):
                    nodes.append(ir.Flatten())  # torch's x.flatten(1) of the (C, H, W) map
            nodes.append(node)
        # a cell's layer (1-based): the neuron nodes so far (fusing synapses keeps them)
        layer_of[m] = sum(isinstance(n, _NEURON_TYPES) for n in nodes)
    if not nodes:
        raise LoweringError("the model holds no module rewire can lower", "")
    if direct:
        _check_all_lowered(model, set(model.modules()))
    first = next(n for n in nodes if not isinstance(n, ir.Flatten))
    if input_shape is None:
        input_shape = tuple(getattr(model, "input_shape", ())) or \
            ((first.weight.shape[1],) if first.op in ("dense", "dense_rec") else ())
    if not input_shape:
        raise LoweringError("the input shape of a convolutional model is unknown: pass "
                            "input_shape=(C, H, W) or an example_input", "")
    names = _unique(names)
    nodes, names, fused_notes = fuse(nodes, names, input_shape, kinds)
    notes += fused_notes
    if len(input_shape) != 3 and isinstance(nodes[0], ir.Flatten):
        nodes = nodes[1:]  # a layout is kept for (C, H, W) images only
        input_shape = (int(np.prod(input_shape)),)
    if len(input_shape) == 3 and nodes[0].op in ("dense", "dense_rec"):
        nodes = [ir.Flatten(), *nodes]  # the model's input layout is kept: (C, H, W)
    steps, encoding, gain, gain_notes = resolve_run_options(model, info, steps, encoding,
                                                            input_gain)
    if steps is None:
        steps = DEFAULT_STEPS
        notes.append(f"steps not given: {DEFAULT_STEPS} assumed")
    notes += gain_notes
    try:
        net = Network(nodes=tuple(nodes), input_shape=tuple(input_shape), steps=int(steps),
                      encoding=encoding, input_gain=float(gain), names=tuple(names),
                      source="norse", notes=tuple(notes))
        if info["skips"]:
            net = dataclasses.replace(net, skips=traced_skips(
                info["skips"], layer_of, [l.neurons for l in net.layers],
                int(np.prod(input_shape))))
        return net
    except ValueError as exc:
        raise LoweringError(f"the lowered layers do not form a chip network: {exc}", "") \
            from None


def _fold_norm(prev, norm: Norm, module: nn.Module, path: str):
    """The synapse ``prev`` with the eval-mode BatchNorm ``norm`` folded in."""
    if not isinstance(prev, (ir.Dense, ir.Conv2d)):
        what = "the input" if prev is None else type(prev).__name__
        raise LoweringError(f"{path} ({type(module).__name__}): follows {what}, not a Linear or "
                            f"Conv2d; a BatchNorm is folded into the weights of the Linear/"
                            f"Conv2d right before it: move it right after one, or remove it",
                            path)
    try:
        return fold_batchnorm(prev, norm.gamma, norm.beta, norm.mean, norm.var, norm.eps)
    except ValueError as exc:
        raise LoweringError(f"{path} ({type(module).__name__}): {exc}", path) from None


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def _default_example(model: nn.Module, steps, input_shape) -> torch.Tensor:
    shape = input_shape or getattr(model, "input_shape", None)
    if shape is None:
        first = next((m for m in model.modules() if isinstance(m, (nn.Linear, LIFRecurrentCell,
                                                                   nn.Conv2d))), None)
        if isinstance(first, nn.Linear):
            shape = (first.in_features,)
        elif isinstance(first, LIFRecurrentCell):
            shape = (int(first.input_size),)
        else:
            raise LoweringError(f"{type(model).__name__}: pass example_input (or input_shape) "
                                f"so that forward can be run once", "")
    shape = tuple(int(s) for s in shape)
    if hasattr(model, "steps"):  # the model presents the input for its steps itself
        return torch.zeros((1, int(math.prod(shape))))
    return torch.zeros((int(steps or DEFAULT_STEPS), 1, *shape))
