"""Every documented frontend option works through the public face, ``rewire.compile`` and
``rewire.lower`` (issue 22 item 6), and takes effect: one test per option, each run through
both entry points; an option the frontend does not take is refused by name."""

from __future__ import annotations

import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from norse.torch import LIFCell, SequentialState

import rewire

DATA = Path(__file__).parent.parent / "data"
LEAKY = DATA / "snntorch_leaky.nir"
warnings.filterwarnings("ignore", message=".*not writable.*")


def _ir(entry, model, **options):
    """The IR network ``entry`` made of ``model``: ``rewire.lower``'s, or the float IR of
    ``rewire.compile``'s compiled network (the same run options, as the compiler keeps
    them)."""
    if entry == "lower":
        return rewire.lower(model, **options)
    from rewire.ir.compiled import float_network

    net = rewire.compile(model, "loihi2", **options)
    return float_network(net)


ENTRIES = ("compile", "lower")


def _nir_graph():
    return nir.NIRGraph.from_list(
        nir.Linear(weight=np.full((3, 4), 2.0)),
        nir.LIF(tau=np.full(3, 0.01), r=np.full(3, 10.0), v_leak=np.zeros(3),
                v_threshold=np.full(3, 10.0)))


def _mlp():
    torch.manual_seed(0)
    return SequentialState(torch.nn.Linear(4, 3, bias=False), LIFCell(),
                           torch.nn.Linear(3, 2, bias=False), LIFCell())


# --------------------------------------------------------------------- NIR frontend options


@pytest.mark.parametrize("entry", ENTRIES)
def test_nir_source_option(entry):
    """``source=`` (the TypeError "got multiple values for argument 'source'" before)."""
    detected = _ir(entry, LEAKY, dt=1e-4, encoding="current")
    declared = _ir(entry, LEAKY, dt=1e-4, encoding="current", source="nir")
    assert detected.source == "nir:snntorch"
    assert declared.source == "nir"
    snn = _ir(entry, _nir_graph(), dt=1e-3, source="snntorch")
    assert snn.source == "nir:snntorch"


@pytest.mark.parametrize("entry", ENTRIES)
def test_nir_dt_option(entry):
    assert _ir(entry, _nir_graph(), dt=1e-3).dt == 1e-3
    assert _ir(entry, _nir_graph(), dt=2e-3).dt == 2e-3


@pytest.mark.parametrize("entry", ENTRIES)
def test_nir_steps_option(entry):
    assert _ir(entry, _nir_graph(), dt=1e-3, steps=7).steps == 7
    assert _ir(entry, _nir_graph(), dt=1e-3).steps == 16


@pytest.mark.parametrize("entry", ENTRIES)
def test_nir_encoding_option(entry):
    assert _ir(entry, _nir_graph(), dt=1e-3, encoding="current").encoding == "current"
    assert _ir(entry, _nir_graph(), dt=1e-3, encoding="rate").encoding == "rate"


@pytest.mark.parametrize("entry", ENTRIES)
def test_nir_input_gain_option(entry):
    """The IR presents ``gain * x`` and divides the first weights by the gain."""
    plain = _ir(entry, _nir_graph(), dt=1e-3, encoding="current")
    gained = _ir(entry, _nir_graph(), dt=1e-3, encoding="current", input_gain=4.0)
    assert (plain.input_gain, gained.input_gain) == (1.0, 4.0)
    np.testing.assert_allclose(gained.layers[0].synapse.weight * 4.0,
                               plain.layers[0].synapse.weight, rtol=1e-6)


# ------------------------------------------------------------------ Norse frontend options


@pytest.mark.parametrize("entry", ENTRIES)
def test_norse_steps_encoding_gain_options(entry):
    net = _ir(entry, _mlp(), steps=5, encoding="current", input_gain=3.0)
    assert (net.steps, net.encoding, net.input_gain) == (5, "current", 3.0)
    net = _ir(entry, _mlp(), steps=9, encoding="rate")
    assert (net.steps, net.encoding) == (9, "rate")


@pytest.mark.parametrize("entry", ENTRIES)
def test_norse_input_shape_option(entry):
    conv = SequentialState(torch.nn.Conv2d(1, 2, 3, bias=False), LIFCell(), torch.nn.Flatten(),
                           torch.nn.Linear(2 * 6 * 6, 3, bias=False), LIFCell())
    net = _ir(entry, conv, input_shape=(1, 8, 8), steps=4)
    assert net.input_shape == (1, 8, 8) and net.layers[0].out_shape == (2, 6, 6)
    conv10 = SequentialState(torch.nn.Conv2d(1, 2, 3, bias=False), LIFCell(),
                             torch.nn.Flatten(), torch.nn.Linear(2 * 8 * 8, 3, bias=False),
                             LIFCell())
    assert _ir(entry, conv10, input_shape=(1, 10, 10), steps=4).layers[0].out_shape == \
        (2, 8, 8)


class _OwnLoop(torch.nn.Module):
    """A module with its own time loop over the input's first axis."""

    def __init__(self):
        super().__init__()
        self.fc, self.lif = torch.nn.Linear(4, 2, bias=False), LIFCell()

    def forward(self, x):
        state, out = None, []
        for t in range(x.shape[0]):
            z, state = self.lif(self.fc(x[t]), state)
            out.append(z)
        return torch.stack(out)


@pytest.mark.parametrize("entry", ENTRIES)
def test_norse_example_input_option(entry):
    """The recorded run is the example's: its length is the steps."""
    assert _ir(entry, _OwnLoop(), example_input=torch.zeros(6, 1, 4)).steps == 6
    assert _ir(entry, _OwnLoop(), example_input=torch.zeros(3, 2, 4)).steps == 3


# ---------------------------------------------------------------- the compiler's own options


def test_compile_options_input_max_value_cores_calibration():
    a = rewire.compile(_mlp(), "loihi2", steps=4, encoding="current", input_max_value=16,
                       cores=3)
    assert a.input_max_value == 16 and a.mapping.allotted == 3
    torch.manual_seed(0)
    wide = SequentialState(torch.nn.Linear(64, 3, bias=False), LIFCell(),
                           torch.nn.Linear(3, 2, bias=False), LIFCell())
    with torch.no_grad():
        wide[0].weight.abs_().mul_(0.5)
    options = dict(steps=4, encoding="current", input_gain=2.0, input_max_value=255)
    worst = rewire.compile(wide, "loihi2", **options).layers[0]
    calibrated = rewire.compile(wide, "loihi2", calibration=np.full((2, 64), 0.05),
                                **options).layers[0]
    # inputs far below the worst case bound the first layer's sums: a finer weight scale
    assert worst.scale_limited_by == "weight bits"
    assert calibrated.scale > 2 * worst.scale


# --------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("entry", ENTRIES)
def test_an_option_the_frontend_lacks_is_named(entry):
    with pytest.raises(TypeError, match="input_shape: not an option for a NIR graph.*source"):
        _ir(entry, _nir_graph(), dt=1e-3, input_shape=(4,))
    with pytest.raises(TypeError, match="dt: not an option for a torch module"):
        _ir(entry, _mlp(), dt=1e-3)
    with pytest.raises(TypeError, match="example_input is for torch modules only"):
        _ir(entry, _nir_graph(), dt=1e-3, example_input=torch.zeros(1, 4))


@pytest.mark.parametrize("entry", ENTRIES)
def test_options_with_an_ir_network_are_refused_not_ignored(entry):
    ir = rewire.lower(_mlp(), steps=4)
    with pytest.raises(ValueError, match="steps: an IR Network carries its own run options"):
        _ir(entry, ir, steps=8)
    assert _ir(entry, ir).steps == 4
