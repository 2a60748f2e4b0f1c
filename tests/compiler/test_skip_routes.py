"""Skip connections' routes in the core mapping: a neuron whose spikes go to the next layer
and, through a skip connection, to a later one reaches the cores of both, and
``limits.dest_cores_per_neuron`` (Speck: 2) counts them all."""

import dataclasses

import numpy as np
import pytest

from rewire.compiler.mapping import layer_connectivity
from rewire.compiler.quantize import compile_network
from rewire.errors import MappingError
from rewire.ir.network import Network, Skip
from rewire.ir.nodes import IF, Dense


def _profile(base, **limits):
    return dataclasses.replace(base, limits=dataclasses.replace(base.limits, **limits))


def _net(skip: bool) -> Network:
    """4 -> 4 -> 4 -> 4 IF layers, dense; with ``skip``, layer 1's spikes also feed layer 3."""
    rng = np.random.default_rng(0)
    nodes = []
    for _ in range(3):
        nodes += [Dense(rng.uniform(0.2, 1.0, (4, 4)).astype(np.float32)), IF()]
    skips = (Skip(1, 3, np.eye(4, dtype=np.float32)),) if skip else ()
    return Network(tuple(nodes), input_shape=(4,), steps=4, encoding="rate", skips=skips)


def test_a_skip_adds_its_targets_cores_to_a_neurons_destinations(loihi2):
    """Two neurons per core: each layer spans 2 cores. Layer 1's neurons reach layer 2's 2
    cores (dense), and through the identity skip the one core of layer 3 holding their
    counterpart: 3 destinations, over a limit of 2 (a limit the chain alone meets, so the old
    count, which read only the next layer, passed)."""
    small = _profile(loihi2, neurons_per_core=2, dest_cores_per_neuron=2)
    chain = compile_network(_net(False), small)
    assert max(u.output_routes for u in chain.mapping.usage) <= 2 * 2  # 2 neurons x 2 cores
    with pytest.raises(MappingError, match=r"layer fc1: neuron 0 reaches 3 cores of fc2 and, "
                       r"through a skip connection, fc3 .*dest_cores_per_neuron; over by 1"):
        compile_network(_net(True), small)
    roomy = compile_network(_net(True), _profile(loihi2, neurons_per_core=2,
                                                 dest_cores_per_neuron=3))
    fc1_cores = [u for u in roomy.mapping.usage if "fc1" in u.layers]
    assert [u.output_routes for u in fc1_cores] == [2 * 3, 2 * 3]


def test_the_skip_columns_are_located_in_the_mask(loihi2):
    """layer_connectivity says where each skip's columns begin: after the layer's own."""
    compiled = compile_network(_net(True), loihi2)
    conn = layer_connectivity(compiled.layers[2])
    assert conn.skips == ((1, 4),) and conn.mask.shape == (4, 8)
    assert conn.mask[:, 4:].sum() == 4  # the identity
