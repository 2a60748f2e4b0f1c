"""Properties of hardware profiles: every valid profile survives dict and TOML round trips,
every invalid one is refused with a :class:`ProfileError` that names the offending field."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from hypothesis import assume, given, strategies as st

from rewire.hw_profiles import profile as profile_module
from rewire.hw_profiles.profile import (FORMAT_VERSION, KNOWN_FORMATS, HardwareProfile, Limits,
                                        NeuronFormat, ProfileError, WeightFormat,
                                        list_profiles, load_profile)

SECTIONS = {"limits": Limits, "weights": WeightFormat, "neuron": NeuronFormat}
INT_FIELDS = [(section, f.name, f.metadata["lo"], f.metadata["hi"])
              for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
              if f.metadata.get("kind") is int]
ALL_FIELDS = [(section, f.name) for section, cls in SECTIONS.items()
              for f in dataclasses.fields(cls)]
# fields every file of the current version must carry (older ones may default)
REQUIRED = [(section, f.name) for section, cls in SECTIONS.items()
            for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
            or f.metadata.get("since", 1) <= FORMAT_VERSION]
PER_CORE_LISTS = [f.name for f in dataclasses.fields(Limits) if f.metadata.get("kind") is list]
READABLE = getattr(profile_module, "READABLE_VERSIONS", (FORMAT_VERSION,))
BASES = [load_profile(name).to_dict() for name in list_profiles()]


def _field_value(f):
    kind = f.metadata.get("kind")
    if kind is int:
        hi = f.metadata["hi"]
        return st.integers(f.metadata["lo"], hi if hi is not None else 2**40)
    if kind is bool:
        return st.booleans()
    if kind is str:
        return st.sampled_from(f.metadata["choices"])
    return None  # per-core lists: kept from the base or emptied


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


def _clean_text(s: str) -> bool:
    """A name or description the profile accepts: printable, no surrounding blanks."""
    return s.strip() != "" and s == s.strip() and s.isprintable()


def _cross_field_rules(data: dict) -> dict:
    """Bring redrawn fields inside the rules that tie fields together: destination cores
    at most the chip's cores, distinct weights at most 2**bits, decay_bits not 1 or 2."""
    lim, w, n = data["limits"], data["weights"], data["neuron"]
    lim["dest_cores_per_neuron"] = min(lim["dest_cores_per_neuron"], lim["cores"])
    w["values_per_neuron"] = min(w["values_per_neuron"], 1 << w["bits"])
    if n["decay_bits"] in (1, 2):
        n["decay_bits"] = 3
    return data


@st.composite
def valid_profiles(draw):
    """A shipped profile (current format) with any subset of its fields redrawn in range."""
    data = copy.deepcopy(draw(st.sampled_from(BASES)))
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            strat = _field_value(f)
            if strat is not None and draw(st.booleans()):
                data[section][f.name] = draw(strat)
    for key in PER_CORE_LISTS:  # per-core figures must match cores and the uniform figure
        data["limits"][key] = []
    _cross_field_rules(data)
    data["format_version"] = FORMAT_VERSION
    data["name"] = draw(_text.filter(_clean_text))
    data["description"] = draw(_text.filter(_clean_text))
    data["formats"] = draw(st.lists(st.sampled_from(KNOWN_FORMATS), unique=True))
    energy_sources = {k: v for k, v in data["sources"].items() if k.startswith("energy.")}
    data["sources"] = draw(st.dictionaries(
        st.sampled_from([f"{s}.{k}" for s, k in ALL_FIELDS]),
        st.tuples(st.sampled_from(["V: ", "S: ", "U: "]), _text).map("".join), max_size=4))
    data["sources"].update(energy_sources)  # published energy figures must keep a source
    return data


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(data: dict) -> str:
    """A minimal TOML writer for the profile layout (strings, ints, lists, tables)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return _toml_str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"[{k}]")
            lines += [f"{_toml_str(kk)} = {value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


@given(data=valid_profiles())
def test_valid_profile_round_trips_through_dict_and_toml(tmp_path_factory, data):
    """Every valid profile loads, dumps back to the same dict (``to_dict(from_dict(d)) == d``),
    and a TOML file of that dict loads to an equal profile."""
    prof = HardwareProfile.from_dict(data, "gen.toml")
    assert prof.to_dict() == data
    path = tmp_path_factory.mktemp("prof") / "chip.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    assert load_profile(path) == prof
    assert HardwareProfile.from_dict(prof.to_dict()) == prof


@given(data=valid_profiles(), which=st.sampled_from(INT_FIELDS),
       side=st.sampled_from(["lo", "hi"]), offset=st.integers(0, 2**20))
def test_int_field_accepted_exactly_inside_its_range(data, which, side, offset):
    """An integer field is accepted at its documented bounds and refused one past them (and
    anywhere further out), with an error naming the field and the allowed range."""
    section, key, lo, hi = which
    assume(side == "lo" or hi is not None)
    edge = lo if side == "lo" else hi
    inside = copy.deepcopy(data)
    inside[section][key] = edge
    if (section, key) == ("limits", "dest_cores_per_neuron"):
        inside["limits"]["cores"] = max(inside["limits"]["cores"], edge)  # at most the cores
    if (section, key) == ("weights", "values_per_neuron"):
        inside["weights"]["bits"] = 16  # 2**16 values exist only with 16 bits
    data = _cross_field_rules(inside)
    assert getattr(getattr(HardwareProfile.from_dict(inside), section), key) == edge
    outside = copy.deepcopy(data)
    outside[section][key] = edge - 1 - offset if side == "lo" else edge + 1 + offset
    with pytest.raises(ProfileError, match=rf"field '{section}\.{key}' must be (>=|in \[)"):
        HardwareProfile.from_dict(outside, "t.toml")


def _field(section, key):
    return next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)


def _kind(section, key):
    return _field(section, key).metadata.get("kind")


def _choices(section, key):
    return tuple(_field(section, key).metadata.get("choices", ()))


_wrong_type = st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=5),
                        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2),
                                                                             st.integers(),
                                                                             max_size=2),
                        st.none())


@given(data=valid_profiles(), which=st.sampled_from(ALL_FIELDS), bad=_wrong_type)
def test_wrong_type_in_any_section_field_names_it(data, which, bad):
    """A value of the wrong type (float, bool, string, list, table, none) in any section field
    is refused with an error that names exactly that field."""
    section, key = which
    assume(not (isinstance(bad, str) and bad.lower() in _choices(section, key)))
    assume(not (isinstance(bad, bool) and _kind(section, key) is bool))
    assume(not (isinstance(bad, list) and _kind(section, key) is list))
    data = copy.deepcopy(data)
    data[section][key] = bad
    with pytest.raises(ProfileError, match=rf"field '{section}\.{key}'"):
        HardwareProfile.from_dict(data, "t.toml")


_top_bad = {
    "format_version": st.one_of(st.integers().filter(lambda v: v not in READABLE), st.just(1.0),
                                st.just(True), st.text(max_size=3), st.none()),
    "name": st.one_of(st.just(""), st.text(" \t\n", max_size=3), st.integers(), st.none(),
                      st.lists(st.text(max_size=2), max_size=2)),
    "description": st.one_of(st.just(""), st.integers(), st.none(), st.booleans()),
    "formats": st.one_of(st.text(max_size=4), st.none(), st.integers(),
                         st.lists(st.text(max_size=6).filter(lambda s: s not in KNOWN_FORMATS),
                                  min_size=1, max_size=3)),
    "sources": st.one_of(st.lists(st.text(max_size=3), max_size=2), st.integers(),
                         st.dictionaries(st.text(max_size=3), st.integers(), min_size=1,
                                         max_size=2)),
    "limits": st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)),
}


@given(data=valid_profiles(), which=st.sampled_from(sorted(_top_bad)), payload=st.data())
def test_bad_top_level_value_names_the_field(data, which, payload):
    """A wrong top-level value (version other than the integer 1, blank name, unknown
    format, non-table section, non-string sources) is refused naming that field."""
    data = copy.deepcopy(data)
    data[which] = payload.draw(_top_bad[which])
    with pytest.raises(ProfileError, match=rf"field '{which}'"):
        HardwareProfile.from_dict(data, "t.toml")


@given(data=valid_profiles(), which=st.sampled_from(REQUIRED + [(None, "limits"),
                                                               (None, "weights"),
                                                               (None, "neuron")]),
       extra=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_missing_or_unknown_field_is_named(data, which, extra):
    """Removing any required field, or adding any unknown key (a typo) to any table, is
    refused with an error naming the missing or unknown field."""
    section, key = which
    missing = copy.deepcopy(data)
    (missing if section is None else missing[section]).pop(key)
    name = key if section is None else f"{section}.{key}"
    with pytest.raises(ProfileError, match=rf"field '{name}' is missing"):
        HardwareProfile.from_dict(missing, "t.toml")
    sec = section or "limits"
    known = {f.name for f in dataclasses.fields(SECTIONS[sec])}
    assume(extra not in known)
    typo = copy.deepcopy(data)
    typo[sec][extra] = 1
    with pytest.raises(ProfileError, match=rf"field '{sec}\.{extra}' is not a known field"):
        HardwareProfile.from_dict(typo, "t.toml")


@given(data=valid_profiles())
def test_weight_format_is_a_signed_grid_of_2_to_the_bits_values(data):
    """The representable chip weights are exactly ``2**bits`` multiples of ``step``, from
    ``min_int`` to ``max_int``, symmetric but for one extra negative value."""
    w = HardwareProfile.from_dict(data).weights
    assert w.step == 2 ** w.exponent
    assert (w.max_int - w.min_int) // w.step + 1 == 2 ** w.bits
    assert w.min_int % w.step == 0 and w.max_int % w.step == 0
    assert w.max_int == -w.min_int - w.step
