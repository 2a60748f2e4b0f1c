"""Hardware profiles: the budgets and number formats of one neuromorphic chip.

A profile is a TOML file (format described in ``docs/profiles.md``)::

    format_version = 1
    name = "loihi2"
    description = "..."
    formats = ["netx", "onnx", "nir"]

    [limits]            # resource budgets of one chip
    cores = 128
    neurons_per_core = 8192
    synapses_per_core = 937500
    fan_in = 0          # synapses into one neuron; 0 = no limit
    max_delay = 62      # time steps

    [weights]           # w = mantissa * 2**exponent, mantissa signed, `bits` wide
    bits = 8
    exponent = 1

    [neuron]            # fixed-point CUBA neuron (REFERENCE §3)
    model = "cuba"
    state_bits = 24
    decay_bits = 12
    threshold_bits = 17
    threshold_shift = 6
    activation_shift = 6

    [sources]           # where every figure comes from: "V: …", "S: …" or "U: …"
    "limits.cores" = "S: Intel Loihi 2 brief"

Every field is checked on load; a bad one raises :class:`ProfileError` naming the
file, the field, what was found and what is allowed, before any training starts.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMAT_VERSION = 1
KNOWN_FORMATS = ("netx", "onnx", "nir")
NEURON_MODELS = ("cuba",)
PROFILE_DIR = Path(__file__).resolve().parent


class ProfileError(ValueError):
    """A hardware profile is missing, malformed or out of range.

    The message names the file and the field (``limits.cores``), says what was found
    and what is allowed.
    """


def _int_field(lo: int, hi: int | None = None, doc: str = "") -> Any:
    return field(metadata={"kind": int, "lo": lo, "hi": hi, "doc": doc})


@dataclass(frozen=True)
class Limits:
    """Resource budgets of one chip.

    Attributes:
        cores: neuro cores on the chip (count, >= 1).
        neurons_per_core: compartments one core holds (count, >= 1).
        synapses_per_core: synapses one core stores (count, >= 1).
        fan_in: most synapses into one neuron (count); 0 means no limit.
        max_delay: longest synaptic delay in time steps (>= 0).
    """

    cores: int = _int_field(1, doc="neuro cores on the chip")
    neurons_per_core: int = _int_field(1, doc="neurons (compartments) per core")
    synapses_per_core: int = _int_field(1, doc="synapses stored per core")
    fan_in: int = _int_field(0, doc="synapses into one neuron, 0 = no limit")
    max_delay: int = _int_field(0, doc="longest synaptic delay in time steps")


@dataclass(frozen=True)
class WeightFormat:
    """Fixed-point weights: ``w = m * 2**exponent`` with ``m`` a signed ``bits``-bit integer.

    Attributes:
        bits: width of the signed mantissa, sign included (2..16).
        exponent: fixed left shift of every mantissa (0..8). Loihi 2 through lava-dl:
            bits 8, exponent 1, i.e. even weights in [-256, 254].
    """

    bits: int = _int_field(2, 16, doc="signed mantissa bits, sign included")
    exponent: int = _int_field(0, 8, doc="left shift applied to every mantissa")

    @property
    def max_int(self) -> int:
        """Largest representable integer weight, e.g. 254 for bits 8, exponent 1."""
        return (2 ** (self.bits - 1) - 1) << self.exponent

    @property
    def min_int(self) -> int:
        """Smallest (most negative) representable integer weight, e.g. -256."""
        return -(2 ** (self.bits - 1)) << self.exponent

    @property
    def step(self) -> int:
        """Spacing of representable integer weights (``2**exponent``)."""
        return 1 << self.exponent


@dataclass(frozen=True)
class NeuronFormat:
    """Fixed-point current-based LIF (CUBA) neuron of the chip (REFERENCE §3).

    Attributes:
        model: neuron model name; only ``"cuba"`` is known.
        state_bits: width of the signed current ``u`` and voltage ``v`` (bits).
        decay_bits: width of ``iDecay``/``vDecay``; the decay unit is ``2**decay_bits``.
        threshold_bits: width of the unsigned ``vThMant``.
        threshold_shift: ``vTh = vThMant << threshold_shift``.
        activation_shift: synaptic input enters ``u`` as ``a << activation_shift``.
    """

    model: str = field(metadata={"kind": str, "choices": NEURON_MODELS})
    state_bits: int = _int_field(8, 32, doc="bits of u and v")
    decay_bits: int = _int_field(1, 16, doc="bits of iDecay and vDecay")
    threshold_bits: int = _int_field(1, 24, doc="bits of vThMant")
    threshold_shift: int = _int_field(0, 16, doc="vTh = vThMant << shift")
    activation_shift: int = _int_field(0, 16, doc="input enters u as a << shift")

    @property
    def decay_unit(self) -> int:
        """``2**decay_bits``: a decay of ``d`` keeps ``(unit - d) / unit`` per step."""
        return 1 << self.decay_bits

    @property
    def max_threshold_mant(self) -> int:
        """Largest ``vThMant`` (e.g. 131071 for 17 bits)."""
        return (1 << self.threshold_bits) - 1


@dataclass(frozen=True)
class HardwareProfile:
    """One chip's budgets and number formats, loaded from a TOML file.

    Use :func:`load_profile` to read one; ``to_dict``/``from_dict`` round-trip.

    Attributes:
        name: short name, e.g. ``"loihi2"``.
        description: one line for humans.
        formats: export formats that apply to this chip (subset of netx, onnx, nir).
        limits: :class:`Limits`.
        weights: :class:`WeightFormat`.
        neuron: :class:`NeuronFormat`.
        sources: field path -> citation, prefixed ``V:`` (vendor code or docs),
            ``S:`` (secondary sources) or ``U:`` (unverified).
        format_version: profile file format version (currently 1).
    """

    name: str
    description: str
    formats: tuple[str, ...]
    limits: Limits
    weights: WeightFormat
    neuron: NeuronFormat
    sources: Mapping[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def max_synapses(self) -> int:
        """Synapses of the whole chip: ``cores * synapses_per_core``."""
        return self.limits.cores * self.limits.synapses_per_core

    @property
    def max_neurons(self) -> int:
        """Neurons of the whole chip: ``cores * neurons_per_core``."""
        return self.limits.cores * self.limits.neurons_per_core

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, the same layout as the TOML file."""
        return {
            "format_version": self.format_version,
            "name": self.name,
            "description": self.description,
            "formats": list(self.formats),
            "limits": dataclasses.asdict(self.limits),
            "weights": dataclasses.asdict(self.weights),
            "neuron": dataclasses.asdict(self.neuron),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "<dict>") -> "HardwareProfile":
        """Validate ``data`` (the TOML layout) and build a profile.

        Args:
            data: parsed TOML.
            origin: file name used in error messages.

        Raises:
            ProfileError: a field is missing, unknown, of the wrong type or out of range.
        """
        return _parse(data, origin)


# ----------------------------------------------------------------------------- parsing

_TOP_KEYS = {"format_version", "name", "description", "formats", "limits", "weights",
             "neuron", "sources"}
_SECTIONS = {"limits": Limits, "weights": WeightFormat, "neuron": NeuronFormat}


def _fail(origin: str, key: str, msg: str) -> ProfileError:
    return ProfileError(f"{origin}: field '{key}' {msg}")


def _parse_section(origin: str, section: str, raw: Any, cls: type) -> Any:
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
            raise _fail(origin, key, f"is missing ({f.metadata.get('doc', name)}); add it "
                                     f"to [{section}]")
        value = raw[name]
        kind = f.metadata["kind"]
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise _fail(origin, key, f"must be an integer, got {value!r}")
            lo, hi = f.metadata["lo"], f.metadata["hi"]
            if value < lo or (hi is not None and value > hi):
                allowed = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise _fail(origin, key, f"must be {allowed}, got {value}")
        else:
            choices = f.metadata["choices"]
            if not isinstance(value, str) or value.lower() not in choices:
                raise _fail(origin, key, f"must be one of {list(choices)}, got {value!r}")
            value = value.lower()
        values[name] = value
    return cls(**values)


def _parse(data: Mapping[str, Any], origin: str) -> HardwareProfile:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{origin}: a profile must be a TOML table, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _fail(origin, unknown[0], f"is not a known field; allowed: {', '.join(sorted(_TOP_KEYS))}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(origin, "format_version", f"must be {FORMAT_VERSION}, got {version!r}")
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise _fail(origin, key, f"must be a non-empty string, got {data.get(key)!r}")
    formats = data.get("formats")
    if not isinstance(formats, list) or any(f not in KNOWN_FORMATS for f in formats):
        raise _fail(origin, "formats", f"must be a list drawn from {list(KNOWN_FORMATS)}, "
                                       f"got {formats!r}")
    sections = {}
    for section, cls in _SECTIONS.items():
        if section not in data:
            raise _fail(origin, section, f"is missing: add a [{section}] table")
        sections[section] = _parse_section(origin, section, data[section], cls)
    sources = data.get("sources", {})
    if not isinstance(sources, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sources.items()):
        raise _fail(origin, "sources", "must be a table of strings (field path = citation)")
    return HardwareProfile(name=data["name"], description=data["description"],
                           formats=tuple(formats), sources=dict(sources),
                           format_version=version, **sections)


# ----------------------------------------------------------------------------- loading

def list_profiles() -> list[str]:
    """Names of the profiles shipped inside the package, sorted (e.g. ``["loihi2"]``)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a shipped profile by name (``"loihi2"``) or a user's TOML file by path.

    Args:
        name_or_path: a name from :func:`list_profiles`, or a path to a ``.toml`` file.

    Returns:
        The validated :class:`HardwareProfile`.

    Raises:
        ProfileError: unknown name, missing or unreadable file, bad TOML, or a bad field.

    Example:
        >>> load_profile("loihi2").limits.cores
        128
    """
    text = str(name_or_path)
    path = Path(text)
    if text in list_profiles() and not path.exists():
        path = PROFILE_DIR / f"{text}.toml"
    elif path.suffix != ".toml" and not path.exists():
        raise ProfileError(f"unknown profile {text!r}: use one of {list_profiles()} "
                           f"or the path of a .toml file")
    if not path.is_file():
        raise ProfileError(f"{path}: profile file not found (give a shipped name from "
                           f"{list_profiles()} or an existing .toml path)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    return _parse(data, str(path))
