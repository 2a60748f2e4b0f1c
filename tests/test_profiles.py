"""Hardware profiles: shipped files load, round-trip, and bad ones fail with the field named."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, strategies as st

from rewire.hw_profiles.profile import (HardwareProfile, ProfileError, list_profiles,
                                        load_profile)


def test_shipped_profiles_load_and_cite_every_field():
    assert "loihi2" in list_profiles()
    for name in list_profiles():
        prof = load_profile(name)
        data = prof.to_dict()
        for section in ("limits", "weights", "neuron"):
            for key in data[section]:
                src = prof.sources.get(f"{section}.{key}", "")
                assert src[:2] in ("V:", "S:", "U:"), f"{name}: {section}.{key} has no source"


def test_loihi2_figures(loihi2):
    assert loihi2.limits.cores == 128
    assert loihi2.weights.min_int == -256 and loihi2.weights.max_int == 254
    assert loihi2.neuron.max_threshold_mant == 131071
    assert "netx" in loihi2.formats


def test_round_trip(loihi2):
    assert HardwareProfile.from_dict(loihi2.to_dict()) == loihi2


def test_user_file_by_path(tmp_path, loihi2):
    path = tmp_path / "mine.toml"
    path.write_text((load_profile.__globals__["PROFILE_DIR"] / "loihi2.toml").read_text()
                    .replace("cores = 128", "cores = 4"))
    assert load_profile(path).limits.cores == 4


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
              ("limits", "synapses_per_core"), ("weights", "bits"), ("neuron", "decay_bits")]


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
    (lambda d: d.update(format_version=2), "format_version"),
    (lambda d: d.update(formats=["netx", "vhdl"]), "formats"),
    (lambda d: d["neuron"].update(model="izhikevich"), "neuron.model"),
    (lambda d: d["weights"].update(bits=40), "weights.bits"),
    (lambda d: d.pop("neuron"), "neuron"),
    (lambda d: d.update(name=""), "name"),
])
def test_malformed_profile(loihi2, mutate, field):
    data = copy.deepcopy(loihi2.to_dict())
    mutate(data)
    with pytest.raises(ProfileError, match=rf"test.toml: field '{field}'"):
        HardwareProfile.from_dict(data, "test.toml")
