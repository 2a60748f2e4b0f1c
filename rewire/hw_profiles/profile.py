"""Hardware profiles: the budgets and number formats of one neuromorphic chip.

A profile is a TOML file (every field and unit in ``docs/profiles.md``)::

    format_version = 2
    name = "loihi2"
    description = "..."
    formats = ["netx", "onnx", "nir"]

    [limits]            # resource budgets of one chip
    cores = 128
    neurons_per_core = 8192
    synapses_per_core = 937500
    synapse_memory_bits = 0     # per-core synapse memory in bits; 0 = only the count applies
    synapse_storage = "sparse"  # sparse | dense | dense_pow2
    fan_in = 0                  # synapses into one neuron; 0 = no limit
    fan_out = 0                 # synapses out of one neuron; 0 = no limit
    axons_in_per_core = 0       # distinct sources feeding one core; 0 = no limit
    axons_out_per_core = 0      # (neuron, destination core) routes out of one core
    dest_cores_per_neuron = 0   # destination cores one neuron may reach
    layers_per_core = 1         # layers sharing one core; 0 = any number
    split_layers = true         # may a layer span several cores
    max_inputs = 0              # input channels of the chip; 0 = no limit
    output_neurons = 0          # dedicated output neurons outside the cores
    core_neurons = []           # per-core neurons when the cores differ (else [])
    core_synapses = []          # per-core synapses when the cores differ (else [])
    max_delay = 62              # time steps

    [weights]           # w = mantissa * 2**exponent, mantissa signed, `bits` wide
    bits = 8
    exponent = 1
    values_per_neuron = 0       # distinct weights one neuron may use; 0 = one per synapse

    [neuron]            # fixed-point neuron (Lava proc/lif/models.py)
    model = "cuba"
    state_bits = 24
    decay_bits = 12
    threshold_bits = 17
    threshold_shift = 6
    activation_shift = 6

    [sources]           # where every figure comes from: "V: …", "S: …" or "U: …"
    "limits.cores" = "S: Intel Loihi 2 brief"

The sections are in :mod:`rewire.hw_profiles.sections`, the checks in
:mod:`rewire.hw_profiles.validate`. Every field is checked on load; a bad one raises
:class:`ProfileError` naming the
file, the field, what was found and what is allowed, before any training starts.
Version-1 files (without the fields marked "since 2" in ``docs/profiles.md``) still load:
the missing fields take their "no limit" defaults.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rewire.errors import ProfileError
from rewire.hw_profiles.sections import (MAX_CORES, MAX_PER_CORE, MAX_SYNAPSES, NEURON_MODELS,
                                         SYNAPSE_STORAGE, EnergyModel, Limits, NeuronFormat,
                                         WeightFormat)
from rewire.hw_profiles.validate import (FORMAT_VERSION, KNOWN_FORMATS, READABLE_VERSIONS,
                                         parse_fields)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["HardwareProfile", "Limits", "WeightFormat", "NeuronFormat", "ProfileError",
           "EnergyModel", "load_profile", "list_profiles", "FORMAT_VERSION", "READABLE_VERSIONS",
           "KNOWN_FORMATS", "NEURON_MODELS", "SYNAPSE_STORAGE", "PROFILE_DIR", "MAX_CORES",
           "MAX_PER_CORE", "MAX_SYNAPSES"]

PROFILE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class HardwareProfile:
    """One chip's budgets and number formats, loaded from a TOML file.

    Use :func:`load_profile` to read one; ``to_dict``/``from_dict`` round-trip.

    Attributes:
        name: short name, e.g. ``"loihi2"``.
        description: one line for humans.
        formats: export formats that apply to this chip (subset of netx, onnx, nir, xylo).
        limits: :class:`Limits`.
        weights: :class:`WeightFormat`.
        neuron: :class:`NeuronFormat`.
        sources: field path -> citation, prefixed ``V:`` (vendor code or docs),
            ``S:`` (secondary sources) or ``U:`` (unverified).
        format_version: profile file format version (1 or 2).
        energy: :class:`EnergyModel`, published per-event energies (optional ``[energy]``).
    """

    name: str
    description: str
    formats: tuple[str, ...]
    limits: Limits
    weights: WeightFormat
    neuron: NeuronFormat
    sources: Mapping[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    energy: EnergyModel = field(default_factory=EnergyModel)

    def core_neurons(self, core: int) -> int:
        """Neurons core number ``core`` (0-based) holds."""
        lim = self.limits
        return lim.core_neurons[core] if lim.core_neurons else lim.neurons_per_core

    def core_synapses(self, core: int) -> int:
        """Synapse words core number ``core`` holds: its count limit, further capped by
        ``synapse_memory_bits // weights.bits`` when the memory is given in bits."""
        lim = self.limits
        count = lim.core_synapses[core] if lim.core_synapses else lim.synapses_per_core
        if lim.synapse_memory_bits:
            count = min(count, lim.synapse_memory_bits // self.weights.bits)
        return count

    def neuron_capacity(self, cores: int | None = None) -> int:
        """Neurons of the ``cores`` largest cores (default all), plus the output neurons."""
        n = self.limits.cores if cores is None else cores
        if not self.limits.core_neurons and n >= 0:  # uniform cores: no list to sort
            return min(n, self.limits.cores) * self.limits.neurons_per_core \
                + self.limits.output_neurons
        caps = sorted((self.core_neurons(c) for c in range(self.limits.cores)), reverse=True)
        return sum(caps[:n]) + self.limits.output_neurons

    def synapse_capacity(self, cores: int | None = None) -> int:
        """Synapse words of the ``cores`` largest cores (default all)."""
        n = self.limits.cores if cores is None else cores
        if not self.limits.core_synapses and n >= 0:  # uniform cores: no list to sort
            return min(n, self.limits.cores) * self.core_synapses(0)
        caps = sorted((self.core_synapses(c) for c in range(self.limits.cores)), reverse=True)
        return sum(caps[:n])

    @property
    def max_synapses(self) -> int:
        """Synapses of the whole chip (sum of :meth:`core_synapses`)."""
        return self.synapse_capacity()

    @property
    def max_neurons(self) -> int:
        """Neurons of the whole chip (cores plus dedicated output neurons)."""
        return self.neuron_capacity()

    def summary(self) -> str:
        """One line of key figures, as ``--list-profiles`` prints it.

        Example:
            >>> print(load_profile("truenorth").summary())  # doctest: +NORMALIZE_WHITESPACE
            truenorth    4096 cores x 256 neurons, 65536 synapses/core; 9-bit weights;
            truenorth neurons; formats onnx
        """
        lim = self.limits
        upto = "up to " if lim.core_neurons or lim.core_synapses else ""
        return (f"{self.name:12s} {lim.cores} cores x {upto}{lim.neurons_per_core} neurons, "
                f"{upto}{self._largest_core_synapses()} synapses/core; "
                f"{self.weights.bits}-bit weights; {self.neuron.model} neurons; "
                f"formats {', '.join(self.formats)}")

    def _largest_core_synapses(self) -> int:
        if not self.limits.core_synapses:
            return self.core_synapses(0)
        return max(self.core_synapses(c) for c in range(self.limits.cores))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form, the same layout as the TOML file."""
        limits = dataclasses.asdict(self.limits)
        limits["core_neurons"] = list(self.limits.core_neurons)
        limits["core_synapses"] = list(self.limits.core_synapses)
        return {
            "format_version": self.format_version,
            "name": self.name,
            "description": self.description,
            "formats": list(self.formats),
            "limits": limits,
            "weights": dataclasses.asdict(self.weights),
            "neuron": dataclasses.asdict(self.neuron),
            "energy": dataclasses.asdict(self.energy),
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
        return cls(**parse_fields(data, origin))


# ----------------------------------------------------------------------------- loading

def list_profiles() -> list[str]:
    """Names of the profiles shipped inside the package, sorted.

    Example:
        >>> list_profiles()
        ['loihi', 'loihi2', 'speck', 'truenorth', 'xylo']
    """
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> HardwareProfile:
    """Load a shipped profile by name (``"loihi2"``) or a user's TOML file by path.

    A bare name (no folder separator, no ``.toml`` suffix) always means a shipped profile,
    whatever lies in the current folder (a folder ``loihi2/`` does not hide it); anything
    else is a path.

    Args:
        name_or_path: a name from :func:`list_profiles`, or a path to a ``.toml`` file.

    Returns:
        The validated :class:`HardwareProfile`.

    Raises:
        ProfileError: empty, unknown name, missing or unreadable file, bad TOML, or a bad
            field.

    Example:
        >>> load_profile("loihi2").limits.cores
        128
    """
    text = str(name_or_path) if isinstance(name_or_path, Path) else name_or_path
    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        raise ProfileError(f"profile {str(text)[:80]!r}: give a shipped name from "
                           f"{list_profiles()} or the path of a .toml file")
    path = Path(text)
    bare = not isinstance(name_or_path, Path) and "/" not in text and os.sep not in text \
        and not text.endswith(".toml")
    try:
        if bare and text in list_profiles():
            path = PROFILE_DIR / f"{text}.toml"
        elif bare:
            raise ProfileError(f"unknown profile {text!r}: use one of {list_profiles()} "
                               f"or the path of a .toml file (e.g. ./{text}.toml)")
        if not path.is_file():
            raise ProfileError(f"{path}: profile file not found (give a shipped name from "
                               f"{list_profiles()} or an existing .toml path)")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:  # a name too long, a permission, an I/O error
        raise ProfileError(f"{text[:200]!r}: cannot read the profile file "
                           f"({exc.strerror or exc})") from None
    return HardwareProfile(**parse_fields(data, str(path)))
