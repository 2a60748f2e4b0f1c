"""Properties of the core mapping (issue 8): every neuron is placed exactly once, no core is
over any limit, and the number of cores is the optimum on cases where the optimum is known.

Settings come from the conftest profiles (``REWIRE_HYPOTHESIS=ci`` or ``thorough``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from hypothesis import given, strategies as st

from rewire.compiler.mapping import OUTPUT_CORE, LayerConnectivity, map_layers
from rewire.errors import MappingError
from rewire.hw_profiles.profile import load_profile

BASE = load_profile("loihi2")


def chip(**limits):
    return dataclasses.replace(BASE, limits=dataclasses.replace(BASE.limits, **limits))


@st.composite
def networks(draw, max_layers=3, max_width=24):
    """Random sparse layer stacks: a list of (out, in) boolean connectivities."""
    widths = draw(st.lists(st.integers(1, max_width), min_size=2, max_size=max_layers + 1))
    density = draw(st.floats(0.05, 1.0))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return [rng.random((n_out, n_in)) < density for n_in, n_out in zip(widths[:-1], widths[1:])]


@st.composite
def chips(draw):
    """Small random chips, so that limits bind: any storage, sharing and axon limit."""
    return chip(cores=draw(st.integers(1, 64)),
                neurons_per_core=draw(st.integers(1, 16)),
                synapses_per_core=draw(st.integers(24, 200)),
                synapse_storage=draw(st.sampled_from(["sparse", "dense", "dense_pow2"])),
                axons_in_per_core=draw(st.sampled_from([0, 24, 40])),
                layers_per_core=draw(st.sampled_from([0, 1, 2])),
                dest_cores_per_neuron=0, axons_out_per_core=0)


def storage_words(storage, n_in, k, axons):
    if storage == "sparse":
        return None
    if storage == "dense":
        return axons * k
    return n_in * 2 ** math.ceil(math.log2(k))


def check_mapping(m, masks, prof):
    """Recompute every core's load from the placement alone and compare with the limits."""
    lim = prof.limits
    assert len(m.placement) == len(masks)
    for where, mask in zip(m.placement, masks):
        assert where.shape == (mask.shape[0],)               # every neuron placed once
        assert where.min() >= 0 and where.max() < len(m.usage)
    physical = [u.core for u in m.usage if u.core != OUTPUT_CORE]
    assert len(set(physical)) == len(physical) == m.cores <= m.allotted
    for ci, u in enumerate(m.usage):
        layers = [li for li, w in enumerate(m.placement) if (w == ci).any()]
        neurons = sum(int((m.placement[li] == ci).sum()) for li in layers)
        connected = sum(int(masks[li][m.placement[li] == ci].sum()) for li in layers)
        axons = [int(masks[li][m.placement[li] == ci].any(axis=0).sum()) for li in layers]
        assert (u.neurons, u.connected, u.input_axons) == (neurons, connected, sum(axons))
        assert neurons <= prof.core_neurons(u.core)
        if lim.layers_per_core:
            assert len(layers) <= lim.layers_per_core
        if lim.axons_in_per_core:
            assert sum(axons) <= lim.axons_in_per_core
        dense = [storage_words(lim.synapse_storage, masks[li].shape[1],
                               int((m.placement[li] == ci).sum()), a)
                 for li, a in zip(layers, axons)]
        words = connected if lim.synapse_storage == "sparse" else sum(dense)
        assert u.synapses == words <= prof.core_synapses(u.core)


@given(masks=networks(), prof=chips())
def test_every_neuron_placed_once_and_no_core_over_a_limit(masks, prof):
    """Property: a mapping either exists and respects every per-core limit, recomputed from the
    placement, or a MappingError names a limit whose need exceeds what it allows."""
    layers = [LayerConnectivity.from_mask(f"fc{k + 1}", m) for k, m in enumerate(masks)]
    try:
        m = map_layers(layers, prof)
    except MappingError as err:
        assert err.limit.startswith("limits.") and err.needed > err.allowed
        assert err.layer in {l.name for l in layers}
        return
    check_mapping(m, masks, prof)


@given(sizes=st.lists(st.integers(1, 60), min_size=1, max_size=4),
       cap=st.integers(1, 20), share=st.booleans())
def test_neuron_bound_packing_is_optimal(sizes, cap, share):
    """Property: with only the neuron limit binding, the cores used are the optimum,
    ceil(all neurons / cap) when layers may share cores, else the sum of ceil(layer / cap)."""
    prof = chip(neurons_per_core=cap, layers_per_core=0 if share else 1, cores=256)  # >= 4 * 60
    layers = [LayerConnectivity.dense(f"fc{k + 1}", n, 3) for k, n in enumerate(sizes)]
    m = map_layers(layers, prof)
    best = math.ceil(sum(sizes) / cap) if share else sum(math.ceil(n / cap) for n in sizes)
    assert m.cores == best


@given(exps=st.lists(st.integers(0, 6), min_size=1, max_size=60), cap_exp=st.integers(6, 8))
def test_divisible_fan_ins_pack_optimally(exps, cap_exp):
    """Property: fan-ins that are powers of two into cores of 2**k synapses (a divisible bin
    packing, where first-fit decreasing is optimal: Coffman, Garey & Johnson 1987) use exactly
    ceil(total synapses / capacity) cores, the lower bound."""
    cap = 2 ** cap_exp
    fan_ins = [2 ** e for e in exps]
    mask = np.zeros((len(fan_ins), 64), bool)
    for i, f in enumerate(fan_ins):
        mask[i, :f] = True
    prof = chip(synapses_per_core=cap, neurons_per_core=10_000)
    m = map_layers([LayerConnectivity.from_mask("fc1", mask)], prof)
    assert m.cores == math.ceil(sum(fan_ins) / cap)


@given(masks=networks(max_layers=2), prof=chips())
def test_never_below_the_lower_bound(masks, prof):
    """Property: no mapping beats ceil(neurons / cap) or ceil(connected synapses / cap)."""
    prof = dataclasses.replace(prof, limits=dataclasses.replace(prof.limits,
                                                                synapse_storage="sparse"))
    layers = [LayerConnectivity.from_mask(f"fc{k + 1}", m) for k, m in enumerate(masks)]
    try:
        m = map_layers(layers, prof)
    except MappingError:
        return
    neurons = sum(mk.shape[0] for mk in masks)
    synapses = sum(int(mk.sum()) for mk in masks)
    assert m.cores >= math.ceil(neurons / prof.limits.neurons_per_core)
    assert m.cores >= math.ceil(synapses / prof.limits.synapses_per_core)
