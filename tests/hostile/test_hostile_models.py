"""Hostile models and run options to ``rewire.compile`` / ``rewire.lower`` (issue 27, items 3
and 4): a hook that changes what a module computes is refused by name (a hook zeroing ``fc1``
compiled identical to the model without it), and run options are refused, not coerced
(``steps`` 0 became 16, 2.5 became 2, ``True`` became 1; ``encoding=""`` became ``rate``)."""

from __future__ import annotations

import math

import pytest
import torch
from norse.torch import LIFCell, LICell, SequentialState
from torch import nn

import rewire
from rewire.errors import LoweringError

from conftest import random_network


def _model():
    torch.manual_seed(0)
    return SequentialState(nn.Linear(6, 5, bias=False), LIFCell(), nn.Linear(5, 3, bias=False),
                           LICell())


HOOKS = {
    "forward hook": lambda m: m.register_forward_hook(lambda mod, a, out: out * 0),
    "forward pre-hook": lambda m: m.register_forward_pre_hook(lambda mod, a: (a[0] * 0,)),
    "backward hook": lambda m: m.register_full_backward_hook(lambda mod, gi, go: None),
    "backward pre-hook": lambda m: m.register_full_backward_pre_hook(lambda mod, go: None),
}


@pytest.mark.parametrize("what", sorted(HOOKS))
@pytest.mark.parametrize("lower", ["compile", "lower", "traced"])
def test_hooks_are_refused_by_name(loihi2, what, lower):
    model = _model() if lower != "traced" else random_network((6, 5, 3), steps=4)
    target = model[0] if lower != "traced" else model.linears[0]
    handle = HOOKS[what](target)
    path = "0" if lower != "traced" else "linears.0"
    with pytest.raises(LoweringError, match=rf"module {path} \(Linear\) has a {what}"):
        if lower == "compile":
            rewire.compile(model, loihi2, steps=4)
        else:
            rewire.lower(model, steps=4)
    handle.remove()
    rewire.lower(model, steps=4)  # without the hook it lowers


@pytest.mark.parametrize("kind", ["forward", "forward_pre"])
def test_global_module_hooks_are_refused(kind):
    register = getattr(torch.nn.modules.module, f"register_module_{kind}_hook")
    handle = register((lambda m, a, o: o) if kind == "forward" else (lambda m, a: None))
    try:
        with pytest.raises(LoweringError, match="global forward"):
            rewire.lower(_model(), steps=4)
    finally:
        handle.remove()


def test_a_subclass_overriding_forward_is_refused():
    class Doubled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model = SequentialState(Doubled(6, 5, bias=False), LIFCell(), nn.Linear(5, 3, bias=False),
                            LICell())
    with pytest.raises(LoweringError, match=r"module 0 \(Doubled\) subclasses Linear but "
                                            r"overrides forward"):
        rewire.lower(model, steps=4)


@pytest.mark.parametrize("option,value,error", [
    ("steps", 0, ValueError), ("steps", -3, ValueError), ("steps", 2.5, TypeError),
    ("steps", True, TypeError), ("steps", "8", TypeError), ("steps", 10**7, ValueError),
    ("encoding", "", ValueError), ("encoding", "Rate", ValueError), ("encoding", 1, TypeError),
    ("input_gain", 0, ValueError), ("input_gain", math.inf, ValueError),
    ("input_gain", math.nan, ValueError), ("input_gain", True, TypeError),
    ("input_gain", "2", TypeError), ("input_shape", (0,), ValueError),
    ("input_shape", 6, TypeError), ("input_shape", (10**5, 10**5, 10**5), ValueError),
])
@pytest.mark.parametrize("entry", ["compile", "lower", "traced"])
def test_run_options_are_refused_not_coerced(loihi2, option, value, error, entry):
    model = random_network((6, 5, 3), steps=4) if entry == "traced" else _model()
    with pytest.raises(error, match=option):
        if entry == "compile":
            rewire.compile(model, loihi2, **{option: value})
        else:
            rewire.lower(model, **{option: value})


@pytest.mark.parametrize("option,value,error", [
    ("steps", 0, ValueError), ("steps", 2.5, TypeError), ("steps", True, TypeError),
    ("encoding", "", ValueError), ("input_gain", -1.0, ValueError)])
def test_nir_run_options_are_refused_not_coerced(loihi2, option, value, error):
    from rewire.export import nir_graph
    graph = nir_graph.to_nir(rewire.compile(_model(), loihi2, steps=4))
    with pytest.raises(error, match=option):
        rewire.lower(graph, **{option: value})
    graph.metadata[option] = value
    with pytest.raises(ValueError, match=rf"metadata\['{option}'\]"):
        rewire.lower(graph)


def test_model_attributes_are_checked_too():
    model = random_network((6, 5, 3), steps=4)
    model.steps = 0
    with pytest.raises(ValueError, match=r"model\.steps"):
        rewire.lower(model)
