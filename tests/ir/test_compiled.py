"""The compiled network's data in rewire.ir: typed layers, the chip image of every neuron kind,
layer names given once, and saving and reloading (the core mapping included; version-2 dicts
written by the previous rewire still load)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import rewire
from rewire.compiler.mapping import load_compiled
from rewire.errors import CompileError
from rewire.ir import nodes
from rewire.ir.chip_neurons import CHIP_NEURONS, chip_class
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import (CompiledConv, CompiledDense, CompiledRecurrentDense,
                                       CompiledSumPool, layer_names)
from rewire.ir.cores import CoreMapping
from rewire.ir.neurons import NEURONS

V2 = json.loads((Path(__file__).parents[1] / "data" / "compiled_v2.json").read_text())
TYPES = {"conv": [CompiledConv, CompiledSumPool, CompiledDense],
         "recurrent": [CompiledRecurrentDense, CompiledDense]}


def test_every_neuron_kind_has_a_chip_image():
    assert set(CHIP_NEURONS) == set(NEURONS.values())
    for cls in NEURONS.values():
        assert chip_class(cls.__new__(cls)).IR is cls
    with pytest.raises(CompileError, match="no chip image"):
        chip_class(object())


def test_layer_names_are_numbered_per_kind():
    rng = np.random.default_rng(0)
    syn = [nodes.Conv2d(rng.normal(size=(2, 1, 3, 3)), 1, 1, 1), nodes.SumPool2d((2, 2), 2, 0, 1.0),
           nodes.Conv2d(rng.normal(size=(2, 2, 3, 3)), 1, 1, 1), nodes.Dense(np.ones((3, 4))),
           nodes.RecurrentDense(np.ones((2, 3)), np.zeros((2, 2)))]
    assert layer_names(syn) == ["conv1", "pool1", "conv2", "fc1", "fc2"]


@pytest.mark.parametrize("name", sorted(V2))
def test_version_2_dicts_load_with_their_types_and_mapping(name):
    """A dict saved by the previous rewire (one CompiledLayer with a kind string, no saved
    placement) loads: typed layers, chip constants kept, the core mapping recomputed."""
    data = V2[name]
    with pytest.raises(ValueError, match="load_compiled"):
        CompiledNetwork.from_dict(data)
    net = load_compiled(data)
    assert [type(l) for l in net.layers] == TYPES[name]
    for layer, old in zip(net.layers, data["layers"]):
        assert (layer.i_decay, layer.v_decay, layer.v_th_mant) == \
            (old["i_decay"], old["v_decay"], old["v_th_mant"])
        assert layer.weight_int.tolist() == np.reshape(old["weight_int"]["data"],
                                                       old["weight_int"]["shape"]).tolist()
        assert layer.neuron.kind == old["neuron"]["kind"]
    assert net.mapping.allotted == data["cores"]
    assert net.mapping.neurons_per_layer == tuple(l.shape[0] for l in net.layers)
    assert net.mapping.layer_names == tuple(l["name"] for l in data["layers"])


@pytest.mark.parametrize("name", sorted(V2))
def test_compiled_network_round_trips_with_its_mapping(name):
    net = load_compiled(V2[name])
    back = CompiledNetwork.from_dict(json.loads(json.dumps(net.to_dict())))
    assert [type(l) for l in back.layers] == [type(l) for l in net.layers]
    assert back.mapping.to_dict(placement=True) == net.mapping.to_dict(placement=True)
    assert all(np.array_equal(a, b) for a, b in zip(back.mapping.placement, net.mapping.placement))
    assert [l.chip for l in back.layers] == [l.chip for l in net.layers]


def test_core_mapping_needs_its_placement(small_net):
    _, net = small_net
    with pytest.raises(ValueError, match="placement"):
        CoreMapping.from_dict(net.mapping.to_dict())
    with pytest.raises(ValueError, match="version"):
        CoreMapping.from_dict({**net.mapping.to_dict(placement=True), "mapping_version": 9})


def test_compile_network_takes_only_the_ir(small_net, loihi2):
    from rewire.compiler.quantize import compile_network

    model, net = small_net
    with pytest.raises(TypeError, match="rewire.frontends.lower"):
        compile_network(model, loihi2, 16)
    again = compile_network(rewire.lower(model), loihi2, 16)
    assert [l.weight_int.tolist() for l in again.layers] == \
        [l.weight_int.tolist() for l in net.layers]
