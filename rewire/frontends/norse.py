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

Supported modules (:data:`CONVERTERS`; :func:`register` adds more): ``Linear`` (bias-free or
zero bias), ``Conv2d`` (zero padding, dilation 1, no bias), ``AvgPool2d`` (a sum pool of
weight ``1/(kH kW)``), ``Flatten``, ``Dropout``/``Identity`` (inference: identity), and
Norse's ``LIFCell`` (→ ``CubaLIF``), ``LIFBoxCell`` (→ ``LIF``), ``IAFCell`` (→ ``IF``),
``LICell`` (→ ``CubaLI``), ``LIBoxCell`` (→ ``LI``) and ``LIFRecurrentCell`` (→
``RecurrentDense`` + ``CubaLIF``, ``input_weights``/``recurrent_weights`` with autapses
masked as Norse masks them). **Nothing is dropped silently**: every parameter and buffer of
the model must end up in the IR, else :class:`~rewire.errors.LoweringError` names it; so does
every module or function on the data path that has no mapping, with the reason and what to do.

Run options (``steps``, ``encoding``, ``input_gain``) come from the arguments, else from the
model's attributes of those names where it has them (rewire's ``SpikingMLP`` and
``SpikingConvNet`` do), else from the trace (steps = calls of the last cell; a constant factor
on the input = gain, ``encoding="current"``), else the defaults (16 steps, ``rate``), with a
note saying so.

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

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from norse.torch import (IAFCell, LIBoxCell, LICell, LIFBoxCell, LIFCell, LIFRecurrentCell,
                         SequentialState)
from torch import nn
from torch.overrides import TorchFunctionMode

from rewire.errors import LoweringError
from rewire.ir import nodes as ir
from rewire.ir.network import Network

__all__ = ["CONVERTERS", "register", "lower", "to_module", "IRModule"]

DEFAULT_STEPS = 16


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _scalar_param(cell: nn.Module, p, field_name: str, path: str) -> float:
    value = torch.as_tensor(getattr(p, field_name)).detach().cpu()
    if value.numel() != 1 and not torch.all(value == value.reshape(-1)[0]):
        raise LoweringError(f"{path} ({type(cell).__name__}): {field_name} differs between "
                            f"neurons ({value.numel()} values); a chip layer has one "
                            f"{field_name}: use one value per layer", path)
    return float(value.reshape(-1)[0])


def _check_reset(cell: nn.Module, p, path: str) -> None:
    reset = getattr(p, "reset_method", None)
    if reset is not None and getattr(reset, "__name__", "") not in ("reset_value", ""):
        raise LoweringError(f"{path} ({type(cell).__name__}): reset_method "
                            f"{getattr(reset, '__name__', reset)!r}; the chip resets v to "
                            f"v_reset (Norse's reset_value): use that", path)


def _dt(cell: nn.Module) -> float:
    return float(getattr(cell, "dt", 1e-3))


def _lif(cell, path):
    p = cell.p
    g = lambda f: _scalar_param(cell, p, f, path)  # noqa: E731
    return ir.CubaLIF(g("tau_syn_inv"), g("tau_mem_inv"), g("v_th"), g("v_leak"), g("v_reset"),
                      _dt(cell))


def _lif_box(cell, path):
    p = cell.p
    _check_reset(cell, p, path)
    g = lambda f: _scalar_param(cell, p, f, path)  # noqa: E731
    return ir.LIF(g("tau_mem_inv"), g("v_th"), g("v_leak"), g("v_reset"), _dt(cell))


def _iaf(cell, path):
    g = lambda f: _scalar_param(cell, cell.p, f, path)  # noqa: E731
    return ir.IF(g("v_th"), g("v_reset"), _dt(cell))


def _li(cell, path):
    g = lambda f: _scalar_param(cell, cell.p, f, path)  # noqa: E731
    return ir.CubaLI(g("tau_syn_inv"), g("tau_mem_inv"), g("v_leak"), _dt(cell))


def _li_box(cell, path):
    g = lambda f: _scalar_param(cell, cell.p, f, path)  # noqa: E731
    return ir.LI(g("tau_mem_inv"), g("v_leak"), _dt(cell))


def _no_bias(module: nn.Module, path: str) -> None:
    bias = getattr(module, "bias", None)
    if bias is not None and bool(torch.any(bias != 0)):
        raise LoweringError(f"{path} ({type(module).__name__}): a non-zero bias; Norse adds it "
                            f"to the synaptic current every step, the chip would add it to the "
                            f"voltage, and rewire has no bias path yet: train with bias=False",
                            path)


def _linear(m: nn.Linear, path):
    _no_bias(m, path)
    return ir.Dense(_np(m.weight))


def _conv(m: nn.Conv2d, path):
    _no_bias(m, path)
    if tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
        raise LoweringError(f"{path} (Conv2d): dilation {tuple(m.dilation)}, padding_mode "
                            f"{m.padding_mode!r}, padding {m.padding!r}; the chip's conv "
                            f"takes dilation 1 and integer zero padding", path)
    return ir.Conv2d(_np(m.weight), tuple(m.stride), tuple(m.padding), m.groups)


def _avgpool(m: nn.AvgPool2d, path):
    if m.ceil_mode:
        raise LoweringError(f"{path} (AvgPool2d): ceil_mode=True has windows of varying size; "
                            f"use ceil_mode=False", path)
    kernel = (m.kernel_size, m.kernel_size) if isinstance(m.kernel_size, int) \
        else tuple(m.kernel_size)
    if m.padding not in (0, (0, 0)) and not m.count_include_pad:
        raise LoweringError(f"{path} (AvgPool2d): padding with count_include_pad=False "
                            f"divides edge windows differently; use padding=0", path)
    div = m.divisor_override or kernel[0] * kernel[1]
    stride = m.stride if m.stride is not None else kernel
    return ir.SumPool2d(kernel, stride, m.padding, 1.0 / div)


def _recurrent(cell: LIFRecurrentCell, path):
    w_rec = _np(cell.recurrent_weights)
    if not cell.autapses:
        np.fill_diagonal(w_rec, 0.0)
    neuron = _lif(cell, path)
    return [ir.RecurrentDense(_np(cell.input_weights), w_rec), neuron]


#: Module type -> ``converter(module, path)`` returning an IR node, a list of nodes, or
#: ``None`` (the module is an identity at inference and is skipped).
CONVERTERS: dict[type, Callable] = {
    nn.Linear: _linear, nn.Conv2d: _conv, nn.AvgPool2d: _avgpool,
    nn.Flatten: lambda m, p: ir.Flatten(), nn.Identity: lambda m, p: None,
    nn.Dropout: lambda m, p: None,
    LIFCell: _lif, LIFBoxCell: _lif_box, IAFCell: _iaf, LICell: _li, LIBoxCell: _li_box,
    LIFRecurrentCell: _recurrent,
}
#: Modules whose output is ``(out, state)``.
STATEFUL = (LIFCell, LIFBoxCell, IAFCell, LICell, LIBoxCell, LIFRecurrentCell)
#: Parameters each converter lowers (everything else a module holds must be absent).
_LOWERED = {nn.Linear: ("weight", "bias"), nn.Conv2d: ("weight", "bias"),
            LIFRecurrentCell: ("input_weights", "recurrent_weights")}


def register(module_type: type, converter: Callable, stateful: bool = False,
             lowered: tuple[str, ...] = ()) -> None:
    """Teach the frontend a module type.

    Args:
        module_type: the ``nn.Module`` subclass.
        converter: ``converter(module, path)`` -> IR node, list of nodes, or ``None``.
        stateful: the module returns ``(out, state)`` (a neuron cell).
        lowered: names of the module's own parameters/buffers the converter carries into the
            IR (the others make :func:`lower` refuse).
    """
    global STATEFUL
    CONVERTERS[module_type] = converter
    if stateful:
        STATEFUL = STATEFUL + (module_type,)
    _LOWERED[module_type] = tuple(lowered)


def _converter(module: nn.Module):
    for cls in type(module).__mro__:
        if cls in CONVERTERS:
            return cls, CONVERTERS[cls]
    return None, None


def _is_container(module: nn.Module) -> bool:
    return isinstance(module, (nn.Sequential, SequentialState, nn.ModuleList))


def _supported() -> str:
    return ", ".join(sorted(c.__name__ for c in CONVERTERS))


def _unsupported(module: nn.Module, path: str, why: str = "") -> LoweringError:
    hint = {"MaxPool2d": "use AvgPool2d (a sum pool on the chip) or a strided Conv2d",
            "BatchNorm1d": "fold the normalization into the weights before compiling",
            "BatchNorm2d": "fold the normalization into the weights before compiling",
            "LIF": "use LIFCell (one step) inside your time loop or a SequentialState",
            "LIFBox": "use LIFBoxCell (one step) inside your time loop"}
    name = type(module).__name__
    fix = hint.get(name, f"supported modules: {_supported()}")
    return LoweringError(f"{path or '<model>'} ({name}): {why or 'no mapping to the IR'}; "
                         f"{fix}", path)


# --------------------------------------------------------------------------- tracing


@dataclass
class _Call:
    """One recorded module call or torch function on the data path."""

    kind: str                      # "module" or "function"
    target: object                 # the module, or the function's name
    path: str = ""
    inputs: list = field(default_factory=list)   # provenance of each tensor argument
    const: float | None = None     # a scalar factor (mul)
    shape: tuple | None = None     # reshape target


_INPUT = "input"


def _source(prov: dict, t: torch.Tensor):
    """Provenance of ``t``: its own, or, for a view the function mode did not see (torch 2.3
    dispatches ``x[t]`` with an integer index outside ``TorchFunctionMode``), its base's
    through an indexing step."""
    if id(t) in prov:
        return prov[id(t)][0]
    base = getattr(t, "_base", None)
    if base is not None and id(base) in prov:
        # only x[t] (one index of the leading, time axis) is a plain step of the data; any
        # other unrecorded view (a slice, a transpose) is named and refused by _resolve
        name = "__getitem__" if tuple(t.shape) == tuple(base.shape[1:]) else \
            f"a view of shape {tuple(t.shape)} of a tensor of shape {tuple(base.shape)}"
        return _Call("function", name, inputs=[prov[id(base)][0]], shape=tuple(t.shape))
    return None


class _Recorder(TorchFunctionMode):
    """Records torch functions called outside supported modules, with tensor provenance."""

    def __init__(self, prov: dict, calls: list):
        super().__init__()
        self.prov, self.calls, self.depth = prov, calls, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.depth:
            return out
        sources = [_source(self.prov, a) for a in _flat(args) + _flat(list(kwargs.values()))
                   if isinstance(a, torch.Tensor)]
        sources = [src for src in sources if src is not None]
        if not sources:
            return out
        name = getattr(func, "__name__", str(func))
        if name == "__getitem__" and not (len(args) > 1 and isinstance(args[1], int)):
            # x[t] steps through time; a slice or a fancy index changes the data itself
            name = f"indexing [{str(args[1])[:40] if len(args) > 1 else ''}]"
        call = _Call("function", name, inputs=sources)
        scalars = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        if name in ("mul", "__mul__", "__rmul__") and scalars:
            call.const = float(scalars[0])
        elif name in ("mul", "__mul__", "__rmul__"):
            consts = [a for a in args if isinstance(a, torch.Tensor) and
                      _source(self.prov, a) is None]
            if consts and consts[0].numel() == 1:
                call.const = float(consts[0])
        if isinstance(out, torch.Tensor):
            call.shape = tuple(out.shape)
        self.calls.append(call)
        for o in _flat([out]):
            if isinstance(o, torch.Tensor):
                self.prov[id(o)] = (call, o)
        return out


def _flat(items) -> list:
    out = []
    for x in items:
        if isinstance(x, (list, tuple)):
            out += _flat(x)
        else:
            out.append(x)
    return out


_PASS = {"__getitem__", "getitem", "reshape", "view", "flatten", "unsqueeze", "expand",
         "expand_as", "repeat", "contiguous", "clone", "float", "to", "detach", "squeeze",
         "unbind", "__iter__"}
#: Functions allowed only on the model input (encoding it), not between layers.
_INPUT_ONLY = {"mul", "__mul__", "__rmul__", "bernoulli", "bernoulli_", "clamp", "clamp_",
               "clip"}


def _trace(model: nn.Module, example: torch.Tensor):
    """Run ``model(example)`` recording calls; returns ``(calls in order, modules by path)``."""
    prov: dict[int, tuple] = {}
    calls: list[_Call] = []
    rec = _Recorder(prov, calls)
    paths = {m: p for p, m in model.named_modules()}
    hooks = []

    def pre(module, args):
        rec.depth += 1  # first: what the hook itself touches (t._base) is not recorded
        if rec.depth == 1:
            srcs = [_source(prov, a) for a in _flat(list(args)) if isinstance(a, torch.Tensor)]
            srcs = [src for src in srcs if src is not None]
            call = _Call("module", module, paths.get(module, ""), srcs[:1])
            module._rewire_call = call
            calls.append(call)

    def post(module, args, out):
        if rec.depth == 1:
            call = module.__dict__.pop("_rewire_call")
            first = out[0] if isinstance(module, STATEFUL) and isinstance(out, tuple) else out
            if isinstance(first, torch.Tensor):
                prov[id(first)] = (call, first)
        rec.depth -= 1

    for path, m in model.named_modules():
        if m is model or _is_container(m) or _parametrization(path):
            continue
        if _converter(m)[1] is not None or not list(m.children()):
            hooks.append(m.register_forward_pre_hook(pre))
            hooks.append(m.register_forward_hook(post))
    prov[id(example)] = (_INPUT, example)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), rec:
            model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return calls, paths


def _resolve(src, ops: list):
    """Follow glue functions back to the input or a module call; collect what they did."""
    while isinstance(src, _Call) and src.kind == "function":
        name = src.target
        if name in _PASS or name in _INPUT_ONLY:
            if name in ("mul", "__mul__", "__rmul__") and src.const is None:
                raise LoweringError(f"a multiplication of two signals on the data path "
                                    f"(torch {name}); only a constant input gain maps", name)
            ops.append(src)
            src = src.inputs[0]
        elif name in ("add", "__add__", "__radd__"):
            return ("add", [_resolve(s, []) for s in src.inputs], ops)
        else:
            raise LoweringError(f"torch function {name!r} on the data path between modules has "
                                f"no mapping to the IR; only indexing, reshape/flatten, a "
                                f"constant input gain, bernoulli rate coding and the add of a "
                                f"recurrent Linear may stand between modules", name)
    return (src, None, ops)


def _chain_from_trace(model, calls, paths):
    """The ordered module calls along the data path, and what the glue told us."""
    # the first call of each module that reads a signal (a feedback Linear's call at t = 0 may
    # read the user's initial zeros, which come from nowhere)
    first_call: dict[nn.Module, _Call] = {}
    for c in calls:
        if c.kind == "module" and (c.target not in first_call or not first_call[c.target].inputs):
            first_call[c.target] = c
    info = {"gain": None, "steps": 0}
    source_of: dict[nn.Module, object] = {}
    feedback: dict[nn.Module, nn.Module] = {}
    for module, call in first_call.items():
        path = call.path
        if _converter(module)[1] is None:
            raise _unsupported(module, path)
        if not call.inputs:
            raise LoweringError(f"{path} ({type(module).__name__}) is called on a tensor that "
                                f"does not come from the model input", path)
        ops: list = []
        src = _resolve(call.inputs[0], ops)
        between = [op.target for op in ops if op.target in _INPUT_ONLY]
        if between and src[0] != _INPUT:
            raise LoweringError(f"torch {between[0]} between layers, before {path} "
                                f"({type(module).__name__}); the chip passes spikes between "
                                f"layers unchanged: put a scale into the weights instead",
                                between[0])
        for op in ops:
            if op.target in ("mul", "__mul__", "__rmul__"):
                info["gain"] = op.const
        if src[0] == "add":
            parts = [s[0] for s in src[1]]
            source_of[module] = parts
        else:
            source_of[module] = src[0]
    # a cell fed by the sum of two synapses: one fed by the chain, one by the cell itself
    for module, src in list(source_of.items()):
        if isinstance(src, list):
            if len(src) != 2 or not all(isinstance(s, _Call) for s in src):
                raise LoweringError(f"{paths.get(module, '')}: the sum of {len(src)} inputs "
                                    f"feeds it; rewire maps only a feed-forward synapse plus a "
                                    f"recurrent one from the same layer", paths.get(module, ""))
            a, b = (s.target for s in src)
            fb = [m for m in (a, b) if isinstance(source_of.get(m), _Call)
                  and source_of[m].target is module]
            if len(fb) != 1:
                raise LoweringError(
                    f"{paths.get(module, '')} ({type(module).__name__}) sums two synaptic "
                    f"inputs, but neither comes from its own spikes; feedback between layers "
                    f"(or a skip connection) has no mapping on the chip: only recurrence within "
                    f"a layer (netx dense_rec)", paths.get(module, ""))
            feedback[module] = fb[0]
            source_of[module] = src[0] if fb[0] is b else src[1]
    steps = max((sum(1 for c in calls if c.kind == "module" and c.target is m)
                 for m in first_call), default=0)
    info["steps"] = steps
    # walk from the input
    fb_modules = set(feedback.values())
    chain, current, seen = [], _INPUT, set()
    while True:
        nxt = [m for m, s in source_of.items() if m not in fb_modules and
               ((s == _INPUT) if current == _INPUT else (isinstance(s, _Call) and
                                                         s.target is current))]
        if not nxt:
            break
        if len(nxt) > 1:
            names = ", ".join(paths.get(m, "?") for m in nxt)
            raise LoweringError(f"the output of {paths.get(current, 'the input')} feeds "
                                f"{len(nxt)} modules ({names}); branches have no mapping: the "
                                f"IR is a chain of layers", names)
        m = nxt[0]
        if m in seen:  # pragma: no cover - a cycle outside the recurrent pattern
            break
        seen.add(m)
        chain.append(m)
        current = m
    return chain, feedback, info


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


def _parametrization(path: str) -> bool:
    """Whether a module path lies inside a ``torch.nn.utils.parametrize`` container (the
    parametrized tensor, e.g. GradR's ``s * relu(theta)`` weight, is what is lowered)."""
    return "parametrizations" in path.split(".")


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


def _option(value, model, name):
    """A run option: the argument, else the model's plain attribute of that name, else None."""
    if value is not None:
        return value
    attr = getattr(model, name, None)
    return None if isinstance(attr, (nn.Module, torch.Tensor)) else attr


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
        input_shape: per-sample input shape (default from the first layer or the example).

    Returns:
        The IR network (``source = "norse"``), layers named by module path.

    Raises:
        rewire.errors.LoweringError: a module, parameter or function that cannot be lowered,
            naming it (type and path), why, and what to do instead.
        ValueError: bad run options.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"lower takes an nn.Module, got {type(model).__name__}")
    notes: list[str] = []
    direct = _is_container(model) or _converter(model)[1] is not None  # nothing to trace
    if direct:
        chain = _container_modules(model) if _is_container(model) else [("", model)]
        feedback: dict = {}
        info = {"gain": None, "steps": 0}
    else:
        example = example_input if example_input is not None else \
            _default_example(model, steps, input_shape)
        calls, paths = _trace(model, example)
        modules, feedback, info = _chain_from_trace(model, calls, paths)
        chain = [(paths.get(m, ""), m) for m in modules]
        _check_all_lowered(model, set(modules) | set(feedback.values()) | {model})
        if input_shape is None:
            per = tuple(example.shape[2:]) if example.dim() >= 3 and not hasattr(model, "steps") \
                and not hasattr(model, "input_shape") else tuple(example.shape[1:])
            input_shape = tuple(getattr(model, "input_shape", per))
    nodes, names = [], []
    for path, m in chain:
        new = _nodes_for(m, path)
        if m in feedback:
            fb = feedback[m]
            if not isinstance(fb, nn.Linear) or not new or not isinstance(new[0], (ir.CubaLIF,
                                                                                   ir.LIF, ir.IF)):
                raise _unsupported(fb, paths.get(fb, ""), "a feedback module other than a "
                                   "bias-free Linear into a spiking cell")
            ff = nodes.pop()
            if not isinstance(ff, ir.Dense):
                raise _unsupported(m, path, "a recurrent cell whose feed-forward synapse is not "
                                   "a Linear")
            _no_bias(fb, paths.get(fb, ""))
            nodes.append(ir.RecurrentDense(ff.weight, _np(fb.weight)))
        for node in new:
            if isinstance(node, ir.SYNAPSES):
                names.append(path or type(m).__name__)
                prev = next((n for n in reversed(nodes) if isinstance(n, (*ir.SYNAPSES,
                                                                          ir.Flatten))), None)
                if node.op in ("dense", "dense_rec") and prev is not None and \
                        prev.op in ("conv", "sumpool"):
                    nodes.append(ir.Flatten())  # torch's x.flatten(1) of the (C, H, W) map
            nodes.append(node)
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
    if input_shape and nodes and isinstance(nodes[0], ir.Flatten):
        nodes = nodes[1:]
        input_shape = (int(np.prod(input_shape)),)
    if len(input_shape) == 3 and nodes[0].op in ("dense", "dense_rec"):
        input_shape = (int(np.prod(input_shape)),)
    default_enc = "current" if info["gain"] is not None else "rate"
    encoding = _option(encoding, model, "encoding") or default_enc
    gain = _option(input_gain, model, "input_gain")
    if gain is None:
        gain = info["gain"] if info["gain"] is not None else 1.0
    steps = _option(steps, model, "steps") or info["steps"] or None
    if steps is None:
        steps = DEFAULT_STEPS
        notes.append(f"steps not given: {DEFAULT_STEPS} assumed")
    names = _unique(names)
    try:
        return Network(nodes=tuple(nodes), input_shape=tuple(input_shape), steps=int(steps),
                       encoding=encoding, input_gain=float(gain), names=tuple(names),
                       source="norse", notes=tuple(notes))
    except ValueError as exc:
        raise LoweringError(f"the lowered layers do not form a chip network: {exc}", "") \
            from None


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


# --------------------------------------------------------------------------- IR -> module


class IRModule(nn.Module):
    """A runnable Norse model of an IR network (float, the semantics of
    :mod:`rewire.ir.dynamics`): what a NIR file imported for training or inspection becomes.

    Shapes:
        input: ``(B, *input_shape)`` for ``current`` encoding (presented ``steps`` times,
        times ``input_gain``), else ``(T, B, *input_shape)``; output ``(T, B, *out_shape)``.
    """

    def __init__(self, network: Network) -> None:
        super().__init__()
        self.network = network
        self.steps, self.encoding, self.input_gain = (network.steps, network.encoding,
                                                      network.input_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from rewire.ir import dynamics

        return dynamics.run(self.network, dynamics.encode(self.network, x))[-1]


def to_module(network: Network) -> IRModule:
    """A torch module running ``network`` (see :class:`IRModule`)."""
    return IRModule(network)
