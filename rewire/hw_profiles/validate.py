"""Validation of a hardware profile's TOML layout: every field checked against the metadata
of :mod:`rewire.hw_profiles.sections`, each error naming the file, the field, what was found
and what is allowed (``docs/profiles.md``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from rewire.errors import ProfileError
import math

from rewire.hw_profiles.sections import (MAX_CORES, MAX_SYNAPSES, EnergyModel, Limits,
                                         NeuronFormat, WeightFormat)

__all__ = ["FORMAT_VERSION", "READABLE_VERSIONS", "KNOWN_FORMATS", "parse_fields"]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KNOWN_FORMATS = ("netx", "onnx", "nir", "xylo")

_TOP_KEYS = {"format_version", "name", "description", "formats", "limits", "weights",
             "neuron", "energy", "sources"}
_SECTIONS = {"limits": Limits, "weights": WeightFormat, "neuron": NeuronFormat}


def _fail(origin: str, key: str, msg: str) -> ProfileError:
    return ProfileError(f"{origin}: field '{key}' {msg}")


def _check_value(origin: str, key: str, f: dataclasses.Field, value: Any) -> Any:
    kind = f.metadata["kind"]
    if kind == "text":
        _check_text(origin, key, value, 1000)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or not f.metadata["lo"] <= value <= f.metadata["hi"]:
            raise _fail(origin, key, f"must be a number in [{f.metadata['lo']}, "
                                     f"{f.metadata['hi']:g}] ({f.metadata['why']}), got {value!r}")
        return float(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise _fail(origin, key, f"must be true or false, got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list) or len(value) > MAX_CORES or any(
                isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SYNAPSES
                for v in value):
            raise _fail(origin, key, f"must be a list of integers in [1, {MAX_SYNAPSES}] (one "
                                     f"per core) or [], got {str(value)[:80]}")
        return tuple(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(origin, key, f"must be an integer, got {value!r}")
        lo, hi = f.metadata["lo"], f.metadata["hi"]
        if value < lo or (hi is not None and value > hi):
            allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            why = f" ({f.metadata['why']})" if value > lo and f.metadata.get("why") else ""
            raise _fail(origin, key, f"must be {allowed}{why}, got {value}")
        return value
    choices = f.metadata["choices"]
    if not isinstance(value, str) or value.lower() not in choices:
        raise _fail(origin, key, f"must be one of {list(choices)}, got {value!r}")
    return value.lower()


def _parse_section(origin: str, section: str, raw: Any, cls: type, version: int) -> Any:
    if not isinstance(raw, Mapping):
        raise _fail(origin, section, f"must be a table [{section}], got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise _fail(origin, f"{section}.{unknown[0]}",
                    f"is not a known field; allowed in [{section}]: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        key = f"{section}.{name}"
        if name not in raw:
            if f.metadata.get("since", 1) > version:
                continue  # an older file: the field keeps its "no limit" default
            raise _fail(origin, key, f"is missing ({f.metadata.get('doc', name)}); add it "
                                     f"to [{section}]")
        values[name] = _check_value(origin, key, f, raw[name])
    return cls(**values)


def _check_limits(origin: str, lim: Limits) -> None:
    if lim.dest_cores_per_neuron > lim.cores:
        raise _fail(origin, "limits.dest_cores_per_neuron", f"must be <= limits.cores "
                                                            f"({lim.cores}), got "
                                                            f"{lim.dest_cores_per_neuron}")
    for key, per_core, total in (("core_neurons", lim.core_neurons, lim.neurons_per_core),
                                 ("core_synapses", lim.core_synapses, lim.synapses_per_core)):
        if per_core and len(per_core) != lim.cores:
            raise _fail(origin, f"limits.{key}", f"must list one figure per core "
                                                 f"(limits.cores = {lim.cores}), got {len(per_core)}")
        if per_core and max(per_core) != total:
            raise _fail(origin, f"limits.{key}", f"must have its largest entry equal to the "
                                                 f"uniform figure {total}, got {max(per_core)}")


def _check_formats(origin: str, wfmt: WeightFormat, nfmt: NeuronFormat) -> None:
    if wfmt.values_per_neuron > 1 << wfmt.bits:
        raise _fail(origin, "weights.values_per_neuron", f"must be <= 2**weights.bits = "
                                                         f"{1 << wfmt.bits} (that many values "
                                                         f"exist), got {wfmt.values_per_neuron}")
    if nfmt.decay_bits in (1, 2):
        raise _fail(origin, "neuron.decay_bits", f"must be 0 (no decay) or 3..16, got "
                                                 f"{nfmt.decay_bits}: decays of k/2 or k/4 per "
                                                 f"step express no LIF time constant longer "
                                                 f"than 4 steps (rewire's default neuron, "
                                                 f"dt/tau_mem = 0.1, needs 3 bits)")


def _check_text(origin: str, key: str, value: Any, longest: int) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _fail(origin, key, f"must be a non-empty string, got {str(value)[:80]!r}")
    if len(value) > longest or not value.isprintable() or value != value.strip():
        raise _fail(origin, key, f"must be at most {longest} printable characters without "
                                 f"NUL, control characters or surrounding blanks, got "
                                 f"{value[:80]!r}")


def _parse_energy(origin: str, raw: Any, sources: Mapping[str, str]) -> EnergyModel:
    """The optional ``[energy]`` section: all four figures (> 0, each with a source) or none
    (then ``note`` must say why)."""
    if raw is None:
        return EnergyModel()
    if not isinstance(raw, Mapping):
        raise _fail(origin, "energy", f"must be a table [energy], got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(EnergyModel)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise _fail(origin, f"energy.{unknown[0]}", f"is not a known field; allowed in "
                                                    f"[energy]: {', '.join(fields)}")
    values = {n: _check_value(origin, f"energy.{n}", fields[n], v) for n, v in raw.items()}
    figures = [n for n in fields if n != "note"]
    given = [n for n in figures if values.get(n, 0.0) > 0]
    if given and len(given) != len(figures):
        missing = next(n for n in figures if n not in given)
        raise _fail(origin, f"energy.{missing}", f"is missing or 0 while {given[0]} is given: "
                                                 f"give every per-event figure or none")
    if not given and "note" not in values:
        raise _fail(origin, "energy.note", "is missing: an [energy] section without figures "
                                           "must say why (e.g. 'no published figure')")
    unsourced = [n for n in given if f"energy.{n}" not in sources]
    if unsourced:
        raise _fail(origin, f"sources.energy.{unsourced[0]}", "is missing: every energy figure "
                                                              "needs its source")
    return EnergyModel(**values)


def parse_fields(data: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Check a profile's TOML layout and return the keyword arguments of
    :class:`rewire.hw_profiles.profile.HardwareProfile`.

    Args:
        data: the parsed TOML (a table).
        origin: the file name the errors name.

    Raises:
        ProfileError: a field missing, unknown, of the wrong type or out of range, naming the
            file, the field, what was found and what is allowed.
    """
    if not isinstance(data, Mapping):
        raise ProfileError(f"{origin}: a profile must be a TOML table, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(origin, unknown[0], f"is not a known field; allowed: {', '.join(sorted(_TOP_KEYS))}")
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) \
            or version not in READABLE_VERSIONS:
        raise _fail(origin, "format_version", f"must be one of {list(READABLE_VERSIONS)} "
                                              f"(current {FORMAT_VERSION}), got {version!r}")
    _check_text(origin, "name", data.get("name"), 64)
    _check_text(origin, "description", data.get("description"), 1000)
    formats = data.get("formats")
    if not isinstance(formats, list) or any(f not in KNOWN_FORMATS for f in formats) \
            or len(set(formats)) != len(formats):
        raise _fail(origin, "formats", f"must be a list of distinct entries drawn from "
                                       f"{list(KNOWN_FORMATS)}, got {formats!r}")
    sections = {}
    for section, cls in _SECTIONS.items():
        if section not in data:
            raise _fail(origin, section, f"is missing: add a [{section}] table")
        sections[section] = _parse_section(origin, section, data[section], cls, version)
    _check_limits(origin, sections["limits"])
    _check_formats(origin, sections["weights"], sections["neuron"])
    sources = data.get("sources", {})
    if not isinstance(sources, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise _fail(origin, "sources", "must be a table of strings (field path = citation)")
    bad = sorted(k for k, v in sources.items() if v[:2] not in ("V:", "S:", "U:"))
    if bad:
        raise _fail(origin, f"sources.{bad[0]}", "must start with 'V:' (vendor code or docs), "
                                                 "'S:' (secondary sources) or 'U:' (unverified)")
    energy = _parse_energy(origin, data.get("energy"), sources)
    return dict(name=data["name"], description=data["description"], formats=tuple(formats),
                sources=dict(sources), format_version=version, energy=energy, **sections)
