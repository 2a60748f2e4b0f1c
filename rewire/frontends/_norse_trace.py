"""Norse frontend, the tracer: run a module once on an example input, record every module
call and every torch function between them (forward hooks and a ``TorchFunctionMode``), and
follow the data path from the input to the output (see :mod:`rewire.frontends.norse`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules import module as _torch_module
from torch.overrides import TorchFunctionMode

from rewire.errors import LoweringError
from rewire.frontends._norse_convert import (_converter, _is_container, _parametrization,
                                             _unsupported, is_stateful)
from rewire.frontends._norse_skips import classify_sums


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


#: Module attributes holding hooks that change what a module computes (torch 2.3
#: ``torch/nn/modules/module.py``) -> how the message names them.
_HOOKS = {"_forward_hooks": "forward hook", "_forward_pre_hooks": "forward pre-hook",
          "_backward_hooks": "backward hook", "_backward_pre_hooks": "backward pre-hook"}
#: torch's hooks on every module (``register_module_forward_hook`` and friends).
_GLOBAL_HOOKS = {"_global_forward_hooks": "global forward hook",
                 "_global_forward_pre_hooks": "global forward pre-hook",
                 "_global_backward_hooks": "global backward hook",
                 "_global_backward_pre_hooks": "global backward pre-hook"}


def _hook_name(hook) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__


def check_module_behaviour(model: nn.Module) -> None:
    """Refuse what the frontend would silently drop: forward, pre- and backward hooks on any
    module (a hook that zeroes ``fc1`` would compile as if it were not there), torch's global
    module hooks, and a subclass of a lowered module that overrides ``forward`` or
    ``__call__`` (it would be lowered as its base class).

    Raises:
        rewire.errors.LoweringError: naming the module (path and type) and the hook.
    """
    for attr, what in _GLOBAL_HOOKS.items():
        hooks = getattr(_torch_module, attr, None) or {}
        for hook in hooks.values():
            raise LoweringError(f"a {what} ({_hook_name(hook)}) is registered on every torch "
                                f"module; rewire cannot lower what it does: remove it "
                                f"before compiling", _hook_name(hook))
    for path, m in model.named_modules():
        label = f"module {path or '<model>'} ({type(m).__name__})"
        for attr, what in _HOOKS.items():
            for hook in (getattr(m, attr, None) or {}).values():
                raise LoweringError(f"{label} has a {what} ({_hook_name(hook)}); rewire "
                                    f"cannot lower what a hook does, so the compiled network "
                                    f"would differ: remove the hook (fold what it does into "
                                    f"the weights or the forward)", path or type(m).__name__)
        cls = _converter(m)[0]
        if cls is None or type(m) is cls:
            continue
        for method in ("forward", "__call__"):
            if getattr(type(m), method) is not getattr(cls, method):
                raise LoweringError(f"{label} subclasses {cls.__name__} but overrides "
                                    f"{method}; rewire lowers {cls.__name__}'s own "
                                    f"computation only: use {cls.__name__} itself",
                                    path or type(m).__name__)


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
            first = out[0] if is_stateful(module) and isinstance(out, tuple) else out
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


def _origins(call: _Call) -> frozenset | None:
    """Where a module call's input comes from: the modules (or the input) behind the glue; a
    sum gives each of its parts. ``None`` when the glue is not followed (refused elsewhere)."""
    try:
        src = _resolve(call.inputs[0], [])
    except LoweringError:
        return None
    parts = [s[0] for s in src[1]] if src[0] == "add" else [src[0]]
    return frozenset(p.target if isinstance(p, _Call) else p for p in parts)


def _refuse_reuse(calls: list, first_call: dict, paths: dict) -> None:
    """Name a module called at two places of the data path (one ``Linear`` applied twice per
    step), before the walk would call its two consumers a branch. A call whose origins are
    part of another call's (a recurrent cell fed by its feed-forward synapse alone at
    ``t = 0``) is the same place.

    Raises:
        rewire.errors.LoweringError: naming the module and both places.
    """
    for module in first_call:
        keys = {o for c in calls if c.kind == "module" and c.target is module and c.inputs
                for o in [_origins(c)] if o is not None}
        places = [k for k in keys if not any(k < other for other in keys)]
        if len(places) < 2:
            continue
        path = paths.get(module, "")
        label = lambda k: " + ".join(sorted("the input" if o == _INPUT  # noqa: E731
                                            else paths.get(o, "?") for o in k))
        where = " and on ".join(sorted(label(k) for k in places))
        raise LoweringError(
            f"{path or '<model>'} ({type(module).__name__}) is called at {len(places)} places "
            f"of the data path each step (on {where}); a chip layer is one module at one "
            f"place: give each place its own module (to share weights between them, share "
            f"the Parameter, second.weight = first.weight: GradR keeps such a tie and the "
            f"chip stores the weights once per layer)", path)


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
    _refuse_reuse(calls, first_call, paths)
    # a cell fed by a sum: its recurrent Linear, skip connections and its main synapse
    feedback, skips = classify_sums(source_of, paths, _INPUT)
    info["skips"] = skips
    steps = max((sum(1 for c in calls if c.kind == "module" and c.target is m)
                 for m in first_call), default=0)
    info["steps"] = steps
    # walk from the input
    fb_modules = set(feedback.values()) | {s.linear for s in skips if s.linear is not None}
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

