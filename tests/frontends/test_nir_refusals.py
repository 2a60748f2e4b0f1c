"""NIR frontend: one refusal per unsupported piece; the error names it."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest

from rewire.errors import LoweringError
from rewire.frontends.nir import lower

from nir_chains import _conv_chain, _cuba, _graph, _linear
from export.test_nir import _set  # noqa: F401

warnings.filterwarnings("ignore", message=".*not writable.*")


# ---------------------------------------------------------------------------------------------
# (c) refusals: one per unsupported piece, the error names it


def _bad_nodes():
    return {
        "conv1d": (nir.Conv1d(input_shape=4, weight=np.ones((1, 1, 2)), stride=1, padding=0,
                              dilation=1, groups=1, bias=np.zeros(1)), "1-D convolution"),
        "delay": (nir.Delay(delay=np.ones(4)), "no synaptic delays"),
        "threshold": (nir.Threshold(threshold=np.ones(4)), "bare threshold"),
        "integrator": (nir.I(r=np.ones(4)), "never spikes"),
    }


@pytest.mark.parametrize("what", list(_bad_nodes()))
def test_unsupported_node_is_named(what):
    node, why = _bad_nodes()[what]
    g = _graph(("bad", node), ("fc", _linear(3, 4)), ("lif", _cuba(3)))
    with pytest.raises(LoweringError, match=f"'bad' \\({type(node).__name__}\\).*{why}") as err:
        lower(g, dt=1e-3)
    assert err.value.piece == "bad"


def _bad_graph(what):
    fc, lif = ("fc", _linear(3, 4)), ("lif", _cuba(3))
    if what == "branch":
        g = _graph(fc, lif)
        g.edges.append(("fc", "output"))
        return g, "fc", "fans out"
    if what == "merge":
        g = _graph(fc, lif)
        g.nodes["side"] = _linear(3, 4)
        g.edges.append(("side", "lif"))
        return g, "lif", "merge"
    if what == "two inputs":
        g = _graph(fc, lif)
        g.nodes["input2"] = nir.Input(input_type={"input": np.array([4])})
        g.edges.append(("input2", "fc"))
        return g, "input2", "exactly one Input"
    if what == "off chain":
        g = _graph(fc, lif)
        g.nodes["stray"] = _linear(3, 3)
        return g, "stray", "not on the path"
    if what == "cycle":
        g = _graph(fc, lif, ("fc2", _linear(3, 3)), ("lif2", _cuba(3)))
        g.edges.append(("lif2", "fc2"))
        return g, "fc2", "also connects elsewhere"
    if what == "self loop":
        g = _graph(fc, lif)
        g.edges.append(("lif", "lif"))
        return g, "lif", "to itself"
    if what == "two synapses":  # overlapping pool windows under the conv's zero padding
        g = _conv_chain(pool=nir.SumPool2d(kernel_size=np.array([3, 3]),
                                           stride=np.array([1, 1]), padding=np.array([0, 0])))
        g.nodes["conv2"] = nir.Conv2d(input_shape=(2, 2), weight=np.ones((2, 2, 3, 3)), stride=1,
                                      padding=1, dilation=1, groups=1, bias=np.zeros(2))
        g.edges = [e for e in g.edges if e != ("pool", "lif2")] + [("pool", "conv2"),
                                                                   ("conv2", "lif2")]
        return g, "conv2", "'pool' \\(SumPool2d\\) and 'conv2' \\(Conv2d\\) have no neuron between"
    if what == "no synapse":
        return _graph(("lif0", _cuba(4)), fc, lif), "lif0", "no synapse node"
    if what == "no neuron at the end":
        return _graph(fc, lif, ("fc2", _linear(2, 3))), "fc2", "not followed by a neuron"
    if what == "scale at the end":
        return _graph(fc, lif, ("s", nir.Scale(scale=np.ones(3)))), "s", "after the last"
    if what == "per-neuron tau":
        node = _cuba(3)
        node.tau_mem = np.array([1e-2, 2e-2, 1e-2])
        return _graph(fc, ("lif", node)), "lif", "tau_mem differs between neurons"
    if what == "tau below dt":
        return _graph(fc, ("lif", _cuba(3, tau_syn=1e-4))), "lif", "shorter than dt"
    if what == "recurrent LI":
        g = _graph(fc, ("li", nir.LI(tau=np.full(3, 1e-2), r=np.full(3, 10.0),
                                     v_leak=np.zeros(3))), ("rec", _linear(3, 3)))
        g.edges = [("input", "fc"), ("fc", "li"), ("li", "rec"), ("rec", "li"), ("li", "output")]
        return g, "li", "non-spiking"
    if what == "recurrent conv":
        g = _conv_chain()
        g.nodes["rec"] = _linear(32, 32)
        g.edges += [("lif1", "rec"), ("rec", "lif1")]
        return g, "rec", "recurrence on a conv layer"
    if what == "bad subgraph":
        sub = _graph(("a", _linear(3, 3)), ("b", _linear(3, 3)))
        return _graph(fc, lif, ("sub", sub)), "sub", "subgraph"
    if what == "conv dilation":
        conv = nir.Conv2d(input_shape=(6, 6), weight=np.ones((2, 1, 3, 3)), stride=1,
                          padding=0, dilation=2, groups=1, bias=np.zeros(2))
        return _conv_chain(conv), "conv", "dilation"
    if what == "avgpool padding":
        pool = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                             padding=np.array([1, 1]))
        return _conv_chain(pool=pool), "pool", "padding"
    if what == "scale per entry next to a conv":
        g = _conv_chain()
        g.nodes["s"] = nir.Scale(scale=np.arange(36.0).reshape(1, 6, 6))
        g.edges = [("input", "s"), ("s", "conv")] + [e for e in g.edges if e[0] != "input"]
        return g, "s", "per-entry scale"
    if what == "linear on a map":
        g = _conv_chain()
        g.nodes["fc"] = _linear(3, 32)
        g.nodes["lif9"] = _cuba(3)
        g.edges = [e for e in g.edges if e[1] != "output"] + [("lif1", "fc"), ("fc", "lif9"),
                                                              ("lif9", "output")]
        return g, "fc", "without a Flatten"
    raise KeyError(what)


REFUSED = ["branch", "merge", "two inputs", "off chain", "cycle", "self loop", "two synapses",
           "no synapse", "no neuron at the end", "scale at the end", "per-neuron tau",
           "tau below dt", "recurrent LI", "recurrent conv", "bad subgraph",
           "conv dilation", "avgpool padding", "scale per entry next to a conv",
           "linear on a map"]


@pytest.mark.parametrize("what", REFUSED)
def test_unsupported_structure_or_semantics_is_named(what):
    g, piece, match = _bad_graph(what)
    with pytest.raises(LoweringError, match=match) as err:
        lower(g, dt=1e-3)
    assert err.value.piece == piece, str(err.value)
    assert repr(piece) in str(err.value) and ";" in str(err.value)  # why; what to do


@pytest.mark.parametrize("edit, match", [
    (lambda g: {"dt": None}, "dt: the NIR graph has no metadata"),
    (lambda g: {"dt": 0.0}, "dt must be a finite number > 0"),
    (lambda g: {"dt": -1e-3}, "dt must be a finite number > 0"),
    (lambda g: {"dt": float("nan")}, "dt must be a finite number > 0"),
    (lambda g: {"steps": 0}, "steps must be an integer"),
    (lambda g: {"encoding": "phase"}, "encoding must be one of"),
    (lambda g: {"input_gain": -2.0}, "input_gain must be"),
    (lambda g: {"source": "brian2"}, "source must be one of"),
    (lambda g: _set(g, "lif", tau_mem=np.full(3, -1e-2)), "'lif' \\(CubaLIF\\).tau_mem must be > 0"),
    (lambda g: _set(g, "lif", tau_syn=np.full(3, np.nan)), "'lif' \\(CubaLIF\\).tau_syn: 3 entries are NaN"),
    (lambda g: _set(g, "lif", r=np.zeros(3)), "'lif' \\(CubaLIF\\).r must be > 0"),
    (lambda g: _set(g, "fc", weight=np.full((3, 4), np.nan)), "'fc' \\(Linear\\).weight: 12 entries are NaN"),
    (lambda g: _set(g, "fc", weight=np.ones((3, 5))), "'fc' \\(Linear\\).weight of shape \\(3, 5\\) takes 5"),
    (lambda g: setattr(g.nodes["lif"], "v_leak", np.zeros(4)), "'lif' \\(CubaLIF\\).v_leak has 4 entries for a layer of 3"),
    (lambda g: _set(g, "lif", v_reset=np.full(3, 100.0)), "'lif' \\(CubaLIF\\).*v_reset"),
])
def test_bad_values_raise_value_error_naming_the_field(edit, match):
    g = _graph(("fc", _linear(3, 4)), ("lif", _cuba(3)))
    kwargs = {"dt": 1e-3}
    out = edit(g)
    if isinstance(out, dict):
        kwargs.update({k: v for k, v in out.items() if v is not None})
        if out.get("dt", 1) is None:
            kwargs.pop("dt")
    with pytest.raises(ValueError, match=match):
        lower(g, **kwargs)


def test_an_output_type_that_does_not_match_is_refused():
    g = _graph(("fc", _linear(3, 4)), ("lif", _cuba(3)))
    g.nodes["output"] = nir.Output(output_type={"output": np.array([5])})
    with pytest.raises(ValueError, match="'output' \\(Output\\): output_type \\[5\\]"):
        lower(g, dt=1e-3)
    g.nodes["output"] = nir.Output(output_type={"output": np.array([1, 3])})  # nirtorch's batch
    assert lower(g, dt=1e-3).output_shape == (3,)


def test_an_edge_naming_a_missing_node_is_refused():
    g = _graph(("fc", _linear(3, 4)), ("lif", _cuba(3)))
    g.edges.append(("lif", "ghost"))
    with pytest.raises(LoweringError, match="'ghost'") as err:
        lower(g, dt=1e-3)
    assert err.value.piece == "ghost"
