"""The sections of a hardware profile, ``[limits]``, ``[weights]``, ``[neuron]`` and the optional
``[energy]``, as
frozen dataclasses whose field metadata (type, bounds, the format version that added the field,
the reason for each upper bound) drives validation (:mod:`rewire.hw_profiles.validate`). Every
field and unit is described in ``docs/profiles.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["NEURON_MODELS", "SYNAPSE_STORAGE", "Limits", "WeightFormat", "NeuronFormat",
           "EnergyModel", "MAX_CORES", "MAX_PER_CORE", "MAX_SYNAPSES", "MAX_EVENT_PJ"]

NEURON_MODELS = ("cuba", "cuba_bitshift", "iaf", "truenorth")
SYNAPSE_STORAGE = ("sparse", "dense", "dense_pow2")


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


MAX_EVENT_PJ = 1e6
WHY_EVENT = "1 uJ per event, 10**4 x the costliest published neuromorphic event"


def _energy_field(doc: str) -> Any:
    return field(default=0.0, metadata={"kind": float, "lo": 0.0, "hi": MAX_EVENT_PJ,
                                        "doc": doc, "since": 2, "why": WHY_EVENT})


@dataclass(frozen=True)
class EnergyModel:
    """Published energy per event of one chip, in picojoules (the optional ``[energy]``
    section). Either all four figures are given (> 0), each with its source in
    ``[sources]``, or none, and ``note`` says why ("no published figure ..."): rewire then
    reports no energy for the chip rather than a guess.

    Attributes:
        synaptic_op_pj: one synaptic operation (one synapse reached by one spike or event).
        neuron_update_active_pj: one update of a neuron whose state changes in the step.
        neuron_update_inactive_pj: one update of a neuron whose state does not change.
        spike_pj: one output spike sent (within a tile / core).
        note: what the figures are (e.g. a minimum, a process node) or why there are none.
    """

    synaptic_op_pj: float = _energy_field("energy of one synaptic operation, pJ")
    neuron_update_active_pj: float = _energy_field("energy of one active neuron update, pJ")
    neuron_update_inactive_pj: float = _energy_field("energy of one idle neuron update, pJ")
    spike_pj: float = _energy_field("energy of one spike sent, pJ")
    note: str = field(default="no [energy] section in this profile: no published figure "
                              "recorded", metadata={"kind": "text", "since": 2,
                                                    "doc": "what the figures are or why none"})

    @property
    def published(self) -> bool:
        """Whether the profile holds per-event figures (all four > 0)."""
        return self.synaptic_op_pj > 0
