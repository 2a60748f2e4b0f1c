"""What the Xylo compiler refuses before any work, each by name with a fix that compiles
(rewire/compiler/xylo_checks.py), and the limit next to it that still compiles. ~1 s."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from xylo_nets import XYLO, chain, hidden, readout

from rewire.compiler import xylo
from rewire.compiler.quantize import compile_network
from rewire.compiler.xylo_checks import nearest_dash
from rewire.errors import CompileError
from rewire.ir.network import Network, Skip
from rewire.ir.nodes import (LI, LIF, BitshiftLIF, Conv2d, CubaLIF, Dense, Flatten,
                             RecurrentDense, SumPool2d)

pytestmark = pytest.mark.filterwarnings("ignore::rewire.errors.RewireWarning")
NORSE = CubaLIF(tau_syn_inv=200.0, tau_mem_inv=100.0)  # Norse LIFCell's defaults, dt 1 ms


def test_nearest_dash_rounds_log2_of_tau_over_dt_as_rockpool():
    assert (nearest_dash(1e-3, 200.0), nearest_dash(1e-3, 100.0)) == (2, 3)
    assert 1 - 2.0 ** -2 == 0.75 and 1 - 2.0 ** -3 == 0.875  # Norse's 0.8 / 0.9 become these
    assert nearest_dash(1e-3, 1000.0) == 0 and nearest_dash(1e-3, 1.0) == round(math.log2(1e3))


@pytest.mark.parametrize("neuron, fix", [
    (NORSE, "LIFBitshiftCell(dash_syn=2, dash_mem=3)"),
    (CubaLIF(tau_syn_inv=500.0, tau_mem_inv=50.0), "LIFBitshiftCell(dash_syn=1, dash_mem=4)"),
    (LIF(tau_mem_inv=100.0), "LIFBitshiftCell(dash_syn=1, dash_mem=3)"),
])
def test_a_neuron_that_is_not_bitshift_names_the_cell_to_train_with(neuron, fix):
    with pytest.raises(CompileError, match=r"layer fc1: a \w+ neuron.*" + re.escape(fix)):
        compile_network(chain((16, 10, 8), neurons=[neuron, readout()]), XYLO)
    fixed = chain((16, 10, 8), neurons=[hidden(*_dashes(fix)), readout()])
    assert compile_network(fixed, XYLO).layers[0].i_decay == _dashes(fix)[0]


def _dashes(fix):
    return tuple(int(v) for v in re.findall(r"=(\d+)", fix))


def test_a_leaky_integrator_readout_is_refused():
    with pytest.raises(CompileError, match="layer fc2: a LI neuron"):
        compile_network(chain((16, 10, 4), neurons=[hidden(), LI(tau_mem_inv=100.0)]), XYLO)


def test_conv_and_pool_layers_are_refused():
    conv = Network((Conv2d(np.ones((2, 1, 3, 3), np.float32)), hidden(),
                    SumPool2d(kernel=(2, 2)), hidden(), Flatten(),
                    Dense(np.ones((8, 2), np.float32)), readout()),
                   input_shape=(1, 4, 4), encoding="current")
    with pytest.raises(CompileError, match="layer conv1: a Conv2d layer, but Xylo holds dense"):
        compile_network(conv, XYLO)


@pytest.mark.parametrize("where", [0, 1])
def test_a_bias_is_refused(where):
    base = chain((16, 10, 8))
    nodes = list(base.nodes)
    w = nodes[2 * where].weight
    nodes[2 * where] = Dense(w, bias=np.full(len(w), 0.1, np.float32))
    with pytest.raises(CompileError, match=f"layer fc{where + 1}: a bias.*bias=False"):
        compile_network(Network(tuple(nodes), input_shape=(16,), encoding="current"), XYLO)


def test_a_recurrent_readout_is_refused_a_recurrent_hidden_layer_compiles():
    with pytest.raises(CompileError, match="layer fc2: Xylo's readout neurons cannot be recurrent"):
        compile_network(chain((16, 10, 8), recurrent=(1,)), XYLO)
    assert compile_network(chain((16, 10, 8), recurrent=(0,)), XYLO).layers[0].recurrent


def test_a_skip_connection_is_refused():
    base = chain((16, 10, 10, 8))
    net = Network(base.nodes, input_shape=(16,), encoding="current",
                  skips=(Skip(1, 3, np.ones((8, 10), np.float32)),))
    with pytest.raises(CompileError, match="skip connection into layer fc3"):
        compile_network(net, XYLO)


@pytest.mark.parametrize("spikes, ok", [(31, True), (30, False), (1, False)])
def test_hidden_layers_allow_31_spikes(spikes, ok):
    net = chain((16, 10, 8), neurons=[hidden(max_spikes=spikes), readout()])
    if ok:
        compile_network(net, XYLO)
        return
    with pytest.raises(CompileError, match=f"fc1: max_spikes = {spikes}.*max_spikes=31"):
        compile_network(net, XYLO)


@pytest.mark.parametrize("spikes, ok", [(1, True), (2, False)])
def test_the_readout_allows_one_spike(spikes, ok):
    net = chain((16, 10, 8), neurons=[hidden(), readout(max_spikes=spikes)])
    if ok:
        compile_network(net, XYLO)
        return
    with pytest.raises(CompileError, match="fc2: max_spikes = 2.*max_spikes=1"):
        compile_network(net, XYLO)


@pytest.mark.parametrize("dash, ok", [(15, True), (16, False)])
@pytest.mark.parametrize("field", ["dash_syn", "dash_mem"])
def test_dash_fits_decay_bits(field, dash, ok):
    net = chain((16, 10, 8), neurons=[BitshiftLIF(**{"dash_syn": 2, "dash_mem": 3, field: dash},
                                                  max_spikes=31), readout()])
    if ok:
        assert getattr(compile_network(net, XYLO).layers[0].chip.neuron, field) == 15
        return
    with pytest.raises(CompileError, match=f"fc1: {field} = 16 is above 15"):
        compile_network(net, XYLO)


@pytest.mark.parametrize("events, ok", [(15, True), (16, False)])
def test_input_events_at_most_15(events, ok):
    net = chain((16, 10, 8))
    if ok:
        assert compile_network(net, XYLO, events).input_max_value == 15
        return
    with pytest.raises(CompileError, match="input_max_value = 16: Xylo clips its input at 15"):
        compile_network(net, XYLO, events)


def test_rate_input_ignores_input_max_value():
    assert compile_network(chain((16, 10, 8), encoding="rate"), XYLO, 255).encoding == "rate"


@pytest.mark.parametrize("cores", [2, 0, True])
def test_xylo_has_one_core(cores):
    with pytest.raises(CompileError, match="cores must be 1"):
        compile_network(chain((16, 10, 8)), XYLO, cores=cores)


def test_refusals_come_before_any_work(monkeypatch):
    """Every structural refusal is raised before a scale is computed."""
    def no_work(*args):
        raise AssertionError("quantization started")
    monkeypatch.setattr(xylo, "_caps", no_work)
    for net in (chain((17, 10, 8)), chain((16, 10, 9)), chain((16, 8)),
                chain((16, 10, 8), recurrent=(1,)),
                chain((16, 10, 8), neurons=[hidden(max_spikes=1), readout()]),
                chain((16, 10, 8), neurons=[NORSE, NORSE])):
        with pytest.raises(CompileError):
            compile_network(net, XYLO)


def test_a_recurrent_first_layer_maps_its_16_inputs():
    net = Network((RecurrentDense(np.ones((10, 16), np.float32) * 0.1,
                                  np.eye(10, dtype=np.float32) * 0.1), hidden(),
                   Dense(np.ones((8, 10), np.float32) * 0.1), readout()),
                  input_shape=(16,), encoding="current")
    compiled = compile_network(net, XYLO)
    assert compiled.mapping.usage[0].input_axons <= 26 and compiled.sizes[0] == 16
