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

Every field is checked on load; a bad one raises :class:`ProfileError` naming the
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

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KNOWN_FORMATS = ("netx", "onnx", "nir")
NEURON_MODELS = ("cuba", "cuba_bitshift", "iaf", "truenorth")
SYNAPSE_STORAGE = ("sparse", "dense", "dense_pow2")
PROFILE_DIR = Path(__file__).resolve().parent




def _int_field(lo: int, hi: int | None = None, doc: str = "", default: Any = dataclasses.MISSING,
               since: int = 1, why: str = "") -> Any:
    return field(default=default, metadata={"kind": int, "lo": lo, "hi": hi, "doc": doc,
                                            "since": since, "why": why})


def _new_int(doc: str, hi: int, why: str, default: int = 0, lo: int = 0) -> Any:
    return _int_field(lo, hi, doc=doc, default=default, since=2, why=why)


# Upper bounds of the counts, each with its reason (the error message quotes it). They sit
# far above every chip rewire knows, so a real chip never meets them; what they stop is a
# typo or a hostile file that would make a run allocate or loop without end (10**7 cores
# took 6.6 s and 170 MB per call, 2**31 never returned).
MAX_CORES = 1 << 20
WHY_CORES = ("SpiNNaker's 1,036,800 cores, the largest neuromorphic machine built, fit; "
             "rewire keeps state per core")
MAX_PER_CORE = 1 << 24
WHY_NEURONS = "256x Speck's 65,536 neurons, the largest core rewire knows"
MAX_SYNAPSES = 1 << 32
WHY_SYNAPSES = "4,581x Loihi 2's 937,500 synapses per core; counts stay exact in int64"
WHY_BITS = "2**40 bits = 128 GiB per core, 10**6 x Loihi's 128 KiB"
WHY_DELAY = "Loihi 2 allows 62 steps; no run rewire makes is longer than 65,536 steps"
WHY_LAYERS = "no network rewire builds has more than 65,536 layers"


@dataclass(frozen=True)
class Limits:
    """Resource budgets of one chip (all counts; 0 means "no limit" where allowed).

    Attributes:
        cores: neuro cores on the chip (>= 1).
        neurons_per_core: compartments one core holds (>= 1); the largest core's figure when
            ``core_neurons`` lists different cores.
        synapses_per_core: synapse words one core stores (>= 1); the largest core's figure when
            ``core_synapses`` lists different cores.
        fan_in: most synapses into one neuron; 0 = no limit.
        max_delay: longest synaptic delay in time steps (>= 0).
        synapse_memory_bits: per-core synapse memory in bits; a core then holds at most
            ``synapse_memory_bits // weights.bits`` synapses. 0 = only ``synapses_per_core``.
        synapse_storage: how a core's synapse memory is charged: ``"sparse"`` (one word per
            connected synapse), ``"dense"`` (``inputs x neurons`` words for each layer part on
            the core, pruned or not: a crossbar) or ``"dense_pow2"`` (``inputs x
            2**ceil(log2 neurons)`` words, DYNAP-CNN kernel memory of a 1x1 convolution).
        fan_out: most synapses out of one neuron; 0 = no limit.
        axons_in_per_core: distinct source neurons (input axons) feeding one core; 0 = none.
        axons_out_per_core: output routes of one core, one per (neuron, destination core)
            pair; 0 = no limit.
        dest_cores_per_neuron: destination cores one neuron's spikes may reach; 0 = none.
        layers_per_core: layers that may share one core; 0 = any number.
        split_layers: whether one layer may be spread over several cores.
        max_inputs: input channels the chip accepts; 0 = no limit.
        output_neurons: dedicated output (readout) neurons outside the cores, which the
            network's last layer must fit; 0 = the last layer sits on cores like the others.
        core_neurons: per-core neuron capacity, in core order, when cores differ; ``()`` =
            every core holds ``neurons_per_core``.
        core_synapses: per-core synapse capacity, in core order, when cores differ.
    """

    cores: int = _int_field(1, MAX_CORES, doc="neuro cores on the chip", why=WHY_CORES)
    neurons_per_core: int = _int_field(1, MAX_PER_CORE, doc="neurons (compartments) per core",
                                       why=WHY_NEURONS)
    synapses_per_core: int = _int_field(1, MAX_SYNAPSES, doc="synapses stored per core",
                                        why=WHY_SYNAPSES)
    fan_in: int = _int_field(0, MAX_SYNAPSES, doc="synapses into one neuron, 0 = no limit",
                             why=WHY_SYNAPSES)
    max_delay: int = _int_field(0, 1 << 16, doc="longest synaptic delay in time steps",
                                why=WHY_DELAY)
    synapse_memory_bits: int = _new_int("per-core synapse memory in bits, 0 = count only",
                                        1 << 40, WHY_BITS)
    synapse_storage: str = field(default="sparse", metadata={
        "kind": str, "choices": SYNAPSE_STORAGE, "since": 2,
        "doc": "how synapse memory is charged"})
    fan_out: int = _new_int("synapses out of one neuron, 0 = no limit", MAX_SYNAPSES,
                            WHY_SYNAPSES)
    axons_in_per_core: int = _new_int("distinct sources feeding one core, 0 = no limit",
                                      MAX_SYNAPSES, WHY_SYNAPSES)
    axons_out_per_core: int = _new_int("(neuron, destination core) routes per core, 0 = none",
                                       MAX_SYNAPSES, WHY_SYNAPSES)
    dest_cores_per_neuron: int = _new_int("destination cores per neuron, 0 = no limit",
                                          MAX_CORES, WHY_CORES)
    layers_per_core: int = _new_int("layers sharing one core, 0 = any", 1 << 16, WHY_LAYERS,
                                    default=1)
    split_layers: bool = field(default=True, metadata={
        "kind": bool, "since": 2, "doc": "may one layer span several cores"})
    max_inputs: int = _new_int("input channels of the chip, 0 = no limit", MAX_SYNAPSES,
                               WHY_SYNAPSES)
    output_neurons: int = _new_int("dedicated output neurons outside the cores, 0 = none",
                                   MAX_PER_CORE, WHY_NEURONS)
    core_neurons: tuple[int, ...] = field(default=(), metadata={
        "kind": list, "since": 2, "doc": "per-core neurons when the cores differ"})
    core_synapses: tuple[int, ...] = field(default=(), metadata={
        "kind": list, "since": 2, "doc": "per-core synapses when the cores differ"})


@dataclass(frozen=True)
class WeightFormat:
    """Fixed-point weights: ``w = m * 2**exponent`` with ``m`` a signed ``bits``-bit integer.

    Attributes:
        bits: width of the signed mantissa, sign included (2..16).
        exponent: fixed left shift of every mantissa (0..8). Loihi 2 through lava-dl:
            bits 8, exponent 1, i.e. even weights in [-256, 254].
        values_per_neuron: distinct weight values one neuron may use (TrueNorth: 4 axon
            types); 0 = every synapse has its own weight.
    """

    bits: int = _int_field(2, 16, doc="signed mantissa bits, sign included")
    exponent: int = _int_field(0, 8, doc="left shift applied to every mantissa")
    values_per_neuron: int = _new_int("distinct weights per neuron, 0 = one per synapse",
                                      1 << 16, "a 16-bit mantissa has 65,536 values")

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
    """Fixed-point neuron of the chip (``cuba``: Lava's fixed-point CUBA LIF, ``lava/proc/lif/models.py``).

    Attributes:
        model: ``"cuba"`` (Loihi current-based LIF, the model :mod:`rewire.compiler` compiles),
            ``"cuba_bitshift"`` (Xylo: LIF with synaptic current, decays by bit shifts),
            ``"iaf"`` (DYNAP-CNN/Speck: integrate-and-fire without leak) or ``"truenorth"``
            (TrueNorth LIF with linear leak).
        state_bits: width of the signed current ``u`` and voltage ``v`` (bits).
        decay_bits: width of ``iDecay``/``vDecay``; the decay unit is ``2**decay_bits``
            (0 = the neuron has no decay, ``iaf``).
        threshold_bits: width of the unsigned ``vThMant``.
        threshold_shift: ``vTh = vThMant << threshold_shift``.
        activation_shift: synaptic input enters ``u`` as ``a << activation_shift``.
    """

    model: str = field(metadata={"kind": str, "choices": NEURON_MODELS})
    state_bits: int = _int_field(8, 32, doc="bits of u and v")
    decay_bits: int = _int_field(0, 16, doc="bits of iDecay and vDecay, 0 = no decay")
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
        format_version: profile file format version (1 or 2).
    """

    name: str
    description: str
    formats: tuple[str, ...]
    limits: Limits
    weights: WeightFormat
    neuron: NeuronFormat
    sources: Mapping[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

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


def _check_value(origin: str, key: str, f: dataclasses.Field, value: Any) -> Any:
    kind = f.metadata["kind"]
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


def _parse(data: Mapping[str, Any], origin: str) -> HardwareProfile:
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
    return HardwareProfile(name=data["name"], description=data["description"],
                           formats=tuple(formats), sources=dict(sources),
                           format_version=version, **sections)


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
        raise ProfileError(f"--profile {str(text)[:80]!r}: give a shipped name from "
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
    return _parse(data, str(path))
