"""Hostile hardware profiles (issue 17, items 2 and 12): every count has an upper bound with
its reason, huge counts are refused at once, capacities cost the same for 1 or 2**20 cores,
and the checks that used to fire only after training (a name with NUL, ``decay_bits`` 1 or
2) fire on load."""

from __future__ import annotations

import copy
import dataclasses
import time

import pytest

from rewire.hw_profiles import profile as profile_module
from rewire.hw_profiles.profile import (MAX_CORES, HardwareProfile, ProfileError, Limits,
                                        NeuronFormat, WeightFormat, load_profile)

SECTIONS = {"limits": Limits, "weights": WeightFormat, "neuron": NeuronFormat}
INT_FIELDS = [(section, f.name, f.metadata["hi"]) for section, cls in SECTIONS.items()
              for f in dataclasses.fields(cls) if f.metadata.get("kind") is int]
HUGE = [10**7, 2**31, 2**63 - 1, 2**64, 10**30]


def test_every_count_has_an_upper_bound_with_a_reason():
    for section, key, hi in INT_FIELDS:
        assert hi is not None, f"{section}.{key} has no upper bound"
    for f in dataclasses.fields(Limits):
        if f.metadata.get("kind") is int:
            assert f.metadata["why"], f"limits.{f.name} has no reason for its bound"


OVER = [(s, k, hi, v) for s, k, hi in INT_FIELDS for v in sorted({hi + 1, *HUGE}) if v > hi]


@pytest.mark.parametrize("section, key, hi, value", OVER,
                         ids=[f"{s}.{k}={v}" for s, k, _, v in OVER])
def test_huge_count_is_refused_at_once_naming_field_and_bound(loihi2, section, key, hi, value):
    data = copy.deepcopy(loihi2.to_dict())
    data[section][key] = value
    start = time.perf_counter()
    with pytest.raises(ProfileError, match=rf"field '{section}\.{key}' must be in \[\d+, "
                                           rf"{hi}\]"):
        HardwareProfile.from_dict(data, "chip.toml")
    assert time.perf_counter() - start < 0.5  # generous: the machine is shared


def test_reason_is_in_the_message(loihi2):
    data = copy.deepcopy(loihi2.to_dict())
    data["limits"]["cores"] = 10**7
    with pytest.raises(ProfileError, match="SpiNNaker"):
        HardwareProfile.from_dict(data, "chip.toml")


def test_capacities_do_not_scale_with_the_cores(loihi2):
    """10**7 cores used to cost 6.6 s and 170 MB per call: at the bound (2**20 cores) every
    figure the budget reads is O(1) for uniform cores."""
    data = copy.deepcopy(loihi2.to_dict())
    data["limits"]["cores"] = MAX_CORES
    prof = HardwareProfile.from_dict(data)
    start = time.perf_counter()
    for _ in range(100):
        assert prof.max_synapses == MAX_CORES * 937_500
        assert prof.neuron_capacity(4) == 4 * 8192
        assert prof.synapse_capacity(3) == 3 * 937_500
        prof.summary()
    assert time.perf_counter() - start < 1.0  # was 6.6 s for ONE call at 10**7 cores


def test_uniform_and_listed_capacities_agree(loihi2):
    speck = load_profile("speck")
    listed = dataclasses.replace(loihi2.limits, cores=3, core_neurons=(8192,) * 3,
                                 core_synapses=(937_500,) * 3)
    uniform = dataclasses.replace(loihi2.limits, cores=3)
    a = dataclasses.replace(loihi2, limits=listed)
    b = dataclasses.replace(loihi2, limits=uniform)
    for n in (None, 0, 1, 2, 3, 7):
        assert a.neuron_capacity(n) == b.neuron_capacity(n)
        assert a.synapse_capacity(n) == b.synapse_capacity(n)
    assert speck.synapse_capacity(2) == 128 * 1024


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "chip\n", " chip", "chip\t", "x" * 65,
                                  "\x1b[31mred", "a\u2028b"])
def test_name_with_nul_or_control_characters_is_refused(loihi2, name):
    data = copy.deepcopy(loihi2.to_dict())
    data["name"] = name
    with pytest.raises(ProfileError, match="field 'name' must be at most 64 printable"):
        HardwareProfile.from_dict(data, "chip.toml")


def test_name_with_nul_in_a_file(tmp_path, loihi2):
    text = (profile_module.PROFILE_DIR / "loihi2.toml").read_text()
    path = tmp_path / "chip.toml"
    path.write_text(text.replace('name = "loihi2"', 'name = "loi\\u0000hi2"'))
    with pytest.raises(ProfileError, match="field 'name'"):
        load_profile(path)


@pytest.mark.parametrize("bits", [1, 2])
def test_decay_bits_1_or_2_refused_on_load(loihi2, bits):
    data = copy.deepcopy(loihi2.to_dict())
    data["neuron"]["decay_bits"] = bits
    with pytest.raises(ProfileError, match="field 'neuron.decay_bits' must be 0 .* or 3..16"):
        HardwareProfile.from_dict(data, "chip.toml")


@pytest.mark.parametrize("bits", [0, 3, 16])
def test_decay_bits_0_and_3_to_16_load(loihi2, bits):
    data = copy.deepcopy(loihi2.to_dict())
    data["neuron"]["decay_bits"] = bits
    assert HardwareProfile.from_dict(data).neuron.decay_bits == bits


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["limits"].update(dest_cores_per_neuron=129), "limits.dest_cores_per_neuron"),
    (lambda d: d["weights"].update(values_per_neuron=257), "weights.values_per_neuron"),
    (lambda d: d["limits"].update(core_neurons=[8192] * (MAX_CORES + 1)), "limits.core_neurons"),
    (lambda d: d["limits"].update(core_synapses=[2**40]), "limits.core_synapses"),
    (lambda d: d.update(description="x" * 1001), "description"),
    (lambda d: d.update(description="a\x00b"), "description"),
])
def test_cross_field_and_list_bounds(loihi2, mutate, field):
    data = copy.deepcopy(loihi2.to_dict())
    mutate(data)
    with pytest.raises(ProfileError, match=rf"field '{field}'"):
        HardwareProfile.from_dict(data, "chip.toml")


@pytest.mark.parametrize("name", ["loihi2", "speck", "truenorth", "xylo", "loihi"])
def test_mapping_cost_follows_the_cores_used(name):
    """Item 2: a chip of 2**20 identical cores maps a small network as fast as a small chip
    (the packer opens cores as it needs them; the whole-layer assignment tries only as many
    identical cores as there are layers)."""
    import numpy as np

    from rewire.compiler import mapping

    data = copy.deepcopy(load_profile(name).to_dict())
    lim = data["limits"]
    lim.update(cores=MAX_CORES, core_neurons=[], core_synapses=[])
    prof = HardwareProfile.from_dict(data)
    mapping.check_network(prof, (16, 8, 4))  # imports, once
    layers = [mapping.LayerConnectivity.from_mask("fc1", np.ones((8, 16))),
              mapping.LayerConnectivity.from_mask("fc2", np.ones((4, 8)))]
    start = time.perf_counter()
    for _ in range(5):
        mapping.check_network(prof, (16, 8, 4))
        m = mapping.map_layers(layers, prof)
    assert time.perf_counter() - start < 3.0
    assert m.cores <= 3
