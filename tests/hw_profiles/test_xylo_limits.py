"""The Xylo profile's figures that rockpool's mapper (and XyloSim) check, each against a network
that just fits and one that just does not (issue 24, "done when"): input channels, hidden
neurons, readout neurons, fan-out, weight bits (int8 << weight_shift per matrix), threshold
range, two neuron layers. Whole file: ~3 s (the 1,000-neuron net is the largest)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from rewire.compiler.quantize import compile_network
from rewire.compiler.xylo import matrix_shift, xylo_shifts
from rewire.errors import CompileError, MappingError
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.network import Network
from rewire.ir.nodes import Dense, RecurrentDense

sys.path.insert(0, str(Path(__file__).parents[1] / "compiler"))
from xylo_nets import XYLO, chain, hidden, readout  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::rewire.errors.RewireWarning")


def test_profile_figures_are_the_mappers():
    """limits.max_inputs / neurons_per_core / output_neurons are rockpool 3.1's mapper's
    figures (read from its source: rockpool.devices.xylo does not import without samna)."""
    spec = importlib.util.find_spec("rockpool")
    if spec is None:
        pytest.skip("rockpool is not installed (the 'readers' extra)")
    text = (Path(spec.origin).parent / "devices/xylo/syns61201/xylo_mapper.py").read_text()
    assert re.search(r"max_hidden_neurons: int = (\d+)", text)[1] == str(XYLO.limits.neurons_per_core)
    assert re.search(r"max_output_neurons: int = (\d+)", text)[1] == str(XYLO.limits.output_neurons)
    assert f"len(graph.input_nodes) > {XYLO.limits.max_inputs}" in text
    lim, fmt = XYLO.limits, XYLO.neuron
    assert (lim.max_inputs, lim.neurons_per_core, lim.output_neurons, lim.fan_out) == \
        (16, 1000, 8, 64)
    assert (XYLO.weights.bits, XYLO.weights.exponent, fmt.max_threshold_mant) == (8, 0, 32767)
    assert "xylo" in XYLO.formats


# ----------------------------------------------------------------------------- counts

@pytest.mark.parametrize("n_in", [16, 17])
def test_input_channels(n_in):
    net = chain((n_in, 6, 4))
    if n_in <= 16:
        assert compile_network(net, XYLO).sizes[0] == 16
        return
    with pytest.raises(MappingError, match=r"17 inputs .* 16 input channels .*over by 1") as e:
        compile_network(net, XYLO)
    assert (e.value.limit, e.value.needed, e.value.allowed) == ("limits.max_inputs", 17, 16)


def _sparse(n_out, n_in, per_column, seed=0):
    """``(n_out, n_in)`` weights with ``per_column`` non-zero entries in each column."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_out, n_in), np.float32)
    for j in range(n_in):
        w[rng.choice(n_out, per_column, replace=False), j] = rng.normal(size=per_column) * 0.2
    return w


@pytest.mark.parametrize("second", [400, 401])
def test_hidden_neurons_counted_over_every_hidden_layer(second):
    """600 + 400 hidden neurons fit Xylo's 1,000; 600 + 401 do not."""
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(600, 16)).astype(np.float32) * 0.2,
               _sparse(second, 600, 8), _sparse(8, second, 4)]
    net = chain((16, 600, second, 8), weights=weights)
    if second == 400:
        compiled = compile_network(net, XYLO)
        assert sum(l.shape[0] for l in compiled.layers[:-1]) == 1000
        return
    with pytest.raises(MappingError, match=r"1001 hidden neurons .* 1000 .*over by 1") as e:
        compile_network(net, XYLO)
    assert e.value.limit == "limits.neurons_per_core"


@pytest.mark.parametrize("n_hidden", [1000, 1001])
def test_hidden_neurons_in_one_layer(n_hidden):
    net = chain((16, n_hidden, 8), scale=0.05)
    if n_hidden == 1000:
        assert compile_network(net, XYLO).layers[0].shape == (1000, 16)
        return
    with pytest.raises(MappingError, match="limits.neurons_per_core; over by 1"):
        compile_network(net, XYLO)


@pytest.mark.parametrize("n_out", [8, 9])
def test_readout_neurons(n_out):
    net = chain((16, 12, n_out))
    if n_out == 8:
        assert compile_network(net, XYLO).sizes[-1] == 8
        return
    with pytest.raises(MappingError, match=r"9 readout neurons .* 8 .*over by 1") as e:
        compile_network(net, XYLO)
    assert e.value.limit == "limits.output_neurons"


@pytest.mark.parametrize("layers", [2, 1])
def test_two_neuron_layers_at_least(layers):
    net = chain((16, 8) if layers == 1 else (16, 3, 8))
    if layers == 2:
        assert len(compile_network(net, XYLO).layers) == 2
        return
    with pytest.raises(MappingError, match="at least two neuron layers"):
        compile_network(net, XYLO)


# ----------------------------------------------------------------------------- fan-out

@pytest.mark.parametrize("fan", [64, 65])
def test_fan_out_into_the_next_hidden_layer(fan):
    """fc1's neuron 0 reaches ``fan`` of fc2's 70 neurons (weights_rec)."""
    rng = np.random.default_rng(1)
    w2 = _sparse(70, 10, 20)
    w2[:, 0] = 0
    w2[:fan, 0] = 0.3
    weights = [rng.normal(size=(10, 16)).astype(np.float32) * 0.3, w2, _sparse(8, 70, 3)]
    net = chain((16, 10, 70, 8), weights=weights)
    if fan == 64:
        compiled = compile_network(net, XYLO)
        assert np.count_nonzero(compiled.layers[1].weight_int[:, 0]) == 64
        return
    with pytest.raises(MappingError, match=r"layer fc1: neuron 0 has 65 outgoing .*over by 1") \
            as e:
        compile_network(net, XYLO)
    assert (e.value.limit, e.value.needed, e.value.allowed) == ("limits.fan_out", 65, 64)


@pytest.mark.parametrize("recurrent", [56, 57])
def test_fan_out_counts_recurrent_and_readout_weights(recurrent):
    """A recurrent hidden neuron's fan-out is its weights_rec column plus its weights_out
    column: 56 + 8 = 64 fits, 57 + 8 = 65 does not."""
    rng = np.random.default_rng(2)
    w_rec = _sparse(60, 60, 10, seed=3)
    w_rec[:, 0] = 0
    w_rec[:recurrent, 0] = 0.2
    w_out = np.full((8, 60), 0.3, np.float32)
    net = Network((RecurrentDense(rng.normal(size=(60, 16)).astype(np.float32) * 0.3, w_rec),
                   hidden(), Dense(w_out), readout()), input_shape=(16,), steps=8,
                  encoding="current")
    if recurrent == 56:
        compile_network(net, XYLO)
        return
    with pytest.raises(MappingError, match="neuron 0 has 65 outgoing synapses"):
        compile_network(net, XYLO)


# ----------------------------------------------------------------------------- weight bits

def _one_hot(v_th):
    """Rate input, fc1 reads one input per neuron at weight 1.0: its scale is set by the
    weight bits (127 << 8 = 32512 per unit) unless the threshold binds first."""
    w1 = np.eye(16, dtype=np.float32)
    return chain((16, 16, 8), weights=[w1, np.full((8, 16), 0.1, np.float32)],
                 neurons=[hidden(v_th=v_th), readout()], encoding="rate")


def test_weight_bits_just_fit_at_the_largest_shift():
    net = compile_network(_one_hot(0.5), XYLO)
    fc1 = net.layers[0]
    assert fc1.scale_limited_by == "weight bits"
    assert int(fc1.weight_int.max()) == 127 << 8 == 32512
    assert xylo_shifts(net)["weights_in"] == 8


@pytest.mark.parametrize("weights, shift", [
    ([127, -128, 1], 0), ([127 << 8, -128 << 8, 256], 8), ([254, -256, 2], 1)])
def test_matrices_that_fit_int8_at_one_shift(weights, shift):
    assert matrix_shift([np.array([weights])], XYLO) == shift


@pytest.mark.parametrize("weights", [[127, 128], [128 << 8], [-129 << 8], [255, 2]])
def test_matrices_that_fit_no_int8_shift(weights):
    with pytest.raises(CompileError, match="no weight_shift in 0..8"):
        matrix_shift([np.array([weights])], XYLO, "weights_in")


def _reload_with(net, **fields):
    data = json.loads(json.dumps(net.to_dict()))
    data["layers"][0].update(fields)
    return CompiledNetwork.from_dict(data)


@pytest.mark.parametrize("top", [127 << 8, 128 << 8])
def test_a_saved_network_keeps_weights_within_int8_shifted_by_8(top):
    net = compile_network(_one_hot(0.5), XYLO)
    w = net.layers[0].weight_int.copy()
    w[0, 0] = top
    entry = {"dtype": "int32", "shape": list(w.shape), "data": w.reshape(-1).tolist()}
    if top == 127 << 8:
        assert int(_reload_with(net, weight_int=entry).layers[0].weight_int.max()) == top
        return
    with pytest.raises(ValueError, match=r"weight_int: 1 weights .* \[-32768, 32512\]"):
        _reload_with(net, weight_int=entry)


# ----------------------------------------------------------------------------- threshold

def test_threshold_just_fits_at_the_top():
    """A threshold far above the weights sets the scale: 32767 exactly."""
    net = compile_network(chain((16, 12, 8), neurons=[hidden(v_th=1e4), readout()]), XYLO)
    assert net.layers[0].scale_limited_by == "threshold bits"
    assert net.layers[0].v_th_mant == 32767


@pytest.mark.parametrize("v_th_mant", [32767, 32768])
def test_a_saved_threshold_above_int16_is_refused(v_th_mant):
    net = compile_network(chain((16, 12, 8)), XYLO)
    if v_th_mant == 32767:
        assert _reload_with(net, v_th_mant=v_th_mant).layers[0].v_th_mant == 32767
        return
    with pytest.raises(ValueError, match="v_th_mant"):
        _reload_with(net, v_th_mant=v_th_mant)


@pytest.mark.parametrize("factor, fits", [(1.01, True), (0.99, False)])
def test_threshold_just_fits_at_the_bottom(factor, fits):
    """With the scale at 32512 per unit (weight bits), v_th = 0.5 / 32512 rounds to 1; a
    hair less rounds to 0, which Xylo cannot hold."""
    net = _one_hot(0.5 / 32512 * factor)
    if fits:
        assert compile_network(net, XYLO).layers[0].v_th_mant == 1
        return
    with pytest.raises(CompileError, match=r"layer fc1: vThMant = 0 is outside 1..32767"):
        compile_network(net, XYLO)


def test_compiled_fields_are_frozen_figures():
    """The chip image holds the dashes and the int16 threshold (reloaded unchanged)."""
    net = compile_network(chain((16, 12, 8)), XYLO)
    again = CompiledNetwork.from_dict(json.loads(json.dumps(net.to_dict())))
    assert [dataclasses.astuple(l.chip)[1:] for l in again.layers] == \
        [dataclasses.astuple(l.chip)[1:] for l in net.layers]
    assert xylo_shifts(again) == xylo_shifts(net)
