"""Hardware profiles: shipped files load, cite every field, round-trip, and bad ones fail with
the field named."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import given, strategies as st

from rewire.hw_profiles.profile import (KNOWN_FORMATS, PROFILE_DIR, HardwareProfile, Limits,
                                        ProfileError, list_profiles, load_profile)

SHIPPED = ["loihi", "loihi2", "speck", "truenorth", "xylo"]


def test_the_five_chips_ship():
    assert list_profiles() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_every_field_cites_a_source(name):
    prof = load_profile(name)
    assert prof.format_version == 2
    data = prof.to_dict()
    for section in ("limits", "weights", "neuron"):
        for key in data[section]:
            src = prof.sources.get(f"{section}.{key}", "")
            assert src[:2] in ("V:", "S:", "U:") and len(src) > 10, \
                f"{name}: {section}.{key} has no source"
    assert set(prof.formats) <= set(KNOWN_FORMATS) and prof.formats


@pytest.mark.parametrize("name, cores, neurons, synapses, fmt", [
    ("loihi2", 128, 8192, 937500, ("netx", "onnx", "nir")),
    ("loihi", 128, 1024, 131072, ("onnx", "nir")),
    ("speck", 9, 65536, 65536, ("nir", "onnx")),
    ("xylo", 1, 1000, 88000, ("nir", "onnx", "xylo")),
    ("truenorth", 4096, 256, 65536, ("onnx",)),
])
def test_key_figures(name, cores, neurons, synapses, fmt):
    prof = load_profile(name)
    assert (prof.limits.cores, prof.limits.neurons_per_core) == (cores, neurons)
    assert max(prof.core_synapses(c) for c in range(cores)) == synapses
    assert prof.formats == fmt
    assert ("netx" in prof.formats) == (name == "loihi2")  # only Loihi 2 has a netx target


def test_loihi2_figures(loihi2):
    assert loihi2.weights.min_int == -256 and loihi2.weights.max_int == 254
    assert loihi2.neuron.max_threshold_mant == 131071
    assert loihi2.max_synapses == 120_000_000


def test_chip_specific_limits():
    speck, xylo, tn, loihi = (load_profile(n) for n in ("speck", "xylo", "truenorth", "loihi"))
    # DYNAP-CNN's 9 cores differ (sinabs get_constraints): kernel and neuron memory per core
    assert [speck.core_synapses(c) // 1024 for c in range(9)] == [16, 16, 16, 32, 32, 64, 64, 16, 16]
    assert [speck.core_neurons(c) // 1024 for c in range(9)] == [64, 64, 64, 32, 32, 16, 16, 16, 16]
    assert speck.synapse_capacity(2) == 128 * 1024  # the two largest cores
    assert speck.limits.dest_cores_per_neuron == 2 and not speck.limits.split_layers
    assert (xylo.limits.max_inputs, xylo.limits.output_neurons, xylo.limits.fan_out) == (16, 8, 64)
    assert xylo.max_neurons == 1008
    assert (tn.limits.axons_in_per_core, tn.limits.dest_cores_per_neuron) == (256, 1)
    assert tn.weights.values_per_neuron == 4
    # Loihi: 128 KiB of synapse memory per core, counted in 8-bit weights
    assert loihi.limits.synapse_memory_bits == 128 * 1024 * 8
    assert loihi.core_synapses(0) == 131072 and loihi.limits.axons_in_per_core == 4096


def test_memory_in_bits_caps_the_count(loihi2):
    lim = dataclasses.replace(loihi2.limits, synapse_memory_bits=8000)
    prof = dataclasses.replace(loihi2, limits=lim)
    assert prof.core_synapses(0) == 1000  # 8000 bits / 8-bit weights < 937,500


@pytest.mark.parametrize("name", SHIPPED)
def test_round_trip(name):
    prof = load_profile(name)
    assert HardwareProfile.from_dict(prof.to_dict()) == prof


def test_user_file_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text((PROFILE_DIR / "loihi2.toml").read_text().replace("cores = 128", "cores = 4"))
    assert load_profile(path).limits.cores == 4


def test_version_1_file_still_loads(loihi2):
    """A version-1 file has none of the fields new in version 2: they take their defaults."""
    data = copy.deepcopy(loihi2.to_dict())
    data["format_version"] = 1
    for key in ("synapse_memory_bits", "synapse_storage", "fan_out", "axons_in_per_core",
                "axons_out_per_core", "dest_cores_per_neuron", "layers_per_core",
                "split_layers", "max_inputs", "output_neurons", "core_neurons", "core_synapses"):
        del data["limits"][key]
    del data["weights"]["values_per_neuron"]
    prof = HardwareProfile.from_dict(data, "old.toml")
    assert prof.limits == dataclasses.replace(loihi2.limits)
    assert prof.limits.layers_per_core == 1 and prof.limits.synapse_storage == "sparse"
    data["format_version"] = 2
    with pytest.raises(ProfileError, match="field 'limits.synapse_memory_bits' is missing"):
        HardwareProfile.from_dict(data, "new.toml")


@pytest.mark.parametrize("arg, needle", [
    ("nochip", "unknown profile 'nochip'"),
    ("/nonexistent/chip.toml", "profile file not found"),
])
def test_bad_name_or_path(arg, needle):
    with pytest.raises(ProfileError, match=needle):
        load_profile(arg)


def test_bad_toml(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = [unclosed\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(path)


INT_FIELDS = [("limits", "cores"), ("limits", "neurons_per_core"),
              ("limits", "synapses_per_core"), ("weights", "bits"), ("neuron", "state_bits")]


@given(field=st.sampled_from(INT_FIELDS),
       bad=st.one_of(st.integers(max_value=0), st.text(max_size=3), st.floats(allow_nan=False),
                     st.booleans()))
def test_invalid_int_field_names_the_field(loihi2, field, bad):
    """Property: any non-positive, non-integer or boolean value of a count field is refused
    with an error that names that field."""
    data = copy.deepcopy(loihi2.to_dict())
    section, key = field
    data[section][key] = bad
    with pytest.raises(ProfileError, match=rf"'{section}\.{key}'"):
        HardwareProfile.from_dict(data, "test.toml")


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d["limits"].pop("cores"), "limits.cores"),
    (lambda d: d["limits"].update(cores_typo=3), "limits.cores_typo"),
    (lambda d: d.update(format_version=3), "format_version"),
    (lambda d: d.update(formats=["netx", "vhdl"]), "formats"),
    (lambda d: d.update(formats=["onnx", "onnx"]), "formats"),
    (lambda d: d["neuron"].update(model="izhikevich"), "neuron.model"),
    (lambda d: d["weights"].update(bits=40), "weights.bits"),
    (lambda d: d.pop("neuron"), "neuron"),
    (lambda d: d.update(name=""), "name"),
    (lambda d: d["limits"].update(synapse_storage="compressed"), "limits.synapse_storage"),
    (lambda d: d["limits"].update(split_layers="yes"), "limits.split_layers"),
    (lambda d: d["limits"].update(fan_out=-1), "limits.fan_out"),
    (lambda d: d["limits"].update(core_neurons=[8192, 0]), "limits.core_neurons"),
    (lambda d: d["limits"].update(core_neurons=[8192, 8192]), "limits.core_neurons"),
    (lambda d: d["limits"].update(core_synapses=[5] * 128), "limits.core_synapses"),
    (lambda d: d["sources"].update({"limits.cores": "Intel said so"}), "sources.limits.cores"),
])
def test_malformed_profile(loihi2, mutate, field):
    data = copy.deepcopy(loihi2.to_dict())
    mutate(data)
    with pytest.raises(ProfileError, match=rf"test.toml: field '{field}'"):
        HardwareProfile.from_dict(data, "test.toml")


def test_limits_defaults_keep_old_constructor_calls():
    """Code that builds ``Limits`` with the version-1 fields only keeps working."""
    lim = Limits(cores=2, neurons_per_core=10, synapses_per_core=100, fan_in=0, max_delay=0)
    assert lim.layers_per_core == 1 and lim.split_layers and lim.synapse_storage == "sparse"
