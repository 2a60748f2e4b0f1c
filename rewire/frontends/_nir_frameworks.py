"""NIR frontend, part 4: the spike and reset rule of the framework that wrote a graph.

NIR 1.0 (nir 1.0.8 ``nir/ir/neuron.py``) records no reset, no spike count per step and no
voltage floor, so the same file means different networks to different frameworks. Each
framework's rule as its own code states it, as the IR's spike fields
(:data:`rewire.ir.neurons.SPIKE_FIELDS`, float semantics in :func:`rewire.ir.dynamics._spike`):

* ``"nir"`` / ``"norse"``: Norse 1.1 (``norse/torch/functional/lif.py``) and Lava's CUBA: one
  spike at ``v > v_th``, ``v <- v_reset`` in the step that spikes (the IR's defaults);
* ``"snntorch"``: snnTorch 1.0's defaults (``snntorch/_neurons/leaky.py``, ``synaptic.py``:
  ``reset_mechanism="subtract"``, ``reset_delay=True``): the previous step's spike subtracts
  the threshold after this step's integration, before its threshold test. A model trained
  with ``reset_mechanism="zero"`` and ``reset_delay=False`` has Norse's rule: pass
  ``framework="norse"``;
* ``"rockpool"``: rockpool 3.1 ``LIFTorch`` (``rockpool/nn/modules/torch/lif_torch.py``,
  ``StepPWL``): ``n = [v >= th] min(floor(v / th), 2**16)`` spikes, ``v -= n th``;
* ``"sinabs"``: sinabs 3 ``IAF``/``LIF`` (``sinabs/activation/spike_generation.py``
  ``MultiSpike``, ``reset_mechanism.py`` ``MembraneSubtract``): ``n = trunc(v / th)`` spikes
  for ``v > 0`` (any number), ``v -= n th``; an ``IF`` node gets the floor ``v_min = -th``
  that sinabs' own reader gives it (``sinabs/nir.py``: ``IAFSqueeze(min_v_mem=-v_threshold)``);
* ``"spyx"``: refused: spyx (``spyx/nn.py``) takes a step's spike from the voltage of the step
  before, i.e. every layer's output one step late, which the IR has no field for.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rewire.errors import LoweringError
from rewire.frontends._nir_graph import _all_neurons, _arr, _kind

#: The frameworks ``rewire.frontends.nir.lower(framework=...)`` knows the spike rule of.
FRAMEWORKS = ("nir", "norse", "snntorch", "rockpool", "sinabs", "spyx")
#: sinabs' MultiSpike has no limit; the IR's counts stop at the largest int32.
UNLIMITED = 2**31 - 1
ROCKPOOL_MAX_SPIKES = 2**16  # LIFTorch's max_spikes_per_dt default

_SUBTRACT_MANY = {"reset": "subtract", "spike_at_threshold": True}

#: The note naming each framework's rule (Norse's rule, the IR's default, is named by the
#: source notes of rewire.frontends._nir_source).
_NOTES = {
    "snntorch": "spike rule: snnTorch's defaults (reset_mechanism='subtract', "
                "reset_delay=True: the spike of a step subtracts the threshold in the next "
                "step, after its integration, before its threshold test), which NIR does not "
                "record; a model trained with reset_mechanism='zero' and reset_delay=False "
                "has Norse's rule: pass framework='norse'",
    "rockpool": f"spike rule: rockpool LIFTorch's (n = floor(v / v_th) spikes at v >= v_th, at "
                f"most {ROCKPOOL_MAX_SPIKES} per step, v -= n v_th), which NIR does not record",
    "sinabs": "spike rule: sinabs IAF/LIF's (MultiSpike: n = floor(v / v_th) spikes at "
              "v >= v_th, MembraneSubtract: v -= n v_th; an IF layer floored at -v_th as sinabs' "
              "own NIR reader sets min_v_mem), which NIR does not record",
}


def _spike_fields(framework: str, neuron) -> dict:
    """The IR spike fields of ``framework``'s rule for the lowered ``neuron``."""
    if framework == "snntorch":
        return {"reset": "subtract", "reset_delay": True}
    if framework == "rockpool":
        return {**_SUBTRACT_MANY, "max_spikes": ROCKPOOL_MAX_SPIKES}
    if framework == "sinabs":
        floor = {"v_min": -neuron.v_th} if neuron.kind == "IF" else {}
        return {**_SUBTRACT_MANY, "max_spikes": UNLIMITED, **floor}
    return {}


def sinabs_pattern(nodes: dict) -> bool:
    """Every neuron an ``IF`` with ``r = 1`` (what sinabs 3's ``IAF`` export writes; Norse's
    ``IAFCell`` writes the same, and reads the same threshold)."""
    neurons = list(_all_neurons(nodes))
    return bool(neurons) and all(_kind(node) == "IF" and np.all(_arr(node.r) == 1)
                                 for _, node in neurons)


def pick_framework(framework: str | None, source: str | None, meta: dict,
                   nodes: dict) -> tuple[str, list[str]]:
    """``(framework, notes)``: the spike rule to lower with.

    ``framework`` if given; else ``metadata["framework"]`` when it names one of
    :data:`FRAMEWORKS`; else the framework the source was detected or declared as
    (``rewire.frontends._nir_source``; a graph of ``IF`` nodes with ``r = 1`` only, from no
    known source, as sinabs); else ``"nir"`` (today's rule).

    Raises:
        ValueError: ``framework`` not in :data:`FRAMEWORKS`.
    """
    notes = []
    if framework is not None:
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework must be one of {FRAMEWORKS} or None, got "
                             f"{framework!r}")
        return framework, notes
    declared = meta.get("framework")
    if isinstance(declared, (bytes, np.bytes_)):
        declared = declared.decode("utf-8", "replace")
    if declared in FRAMEWORKS:
        notes.append(f"framework {declared} from the file's metadata['framework']")
        return declared, notes
    if source in ("snntorch", "rockpool", "spyx", "norse"):
        return source, notes
    if source is None and sinabs_pattern(nodes):
        notes.append("framework sinabs detected (every neuron an IF with r = 1, as sinabs' "
                     "IAF writes it; Norse's IAFCell writes the same): pass framework='norse' "
                     "for a Norse file")
        return "sinabs", notes
    return "nir", notes


def apply_framework(framework: str, ir: list, names: list) -> list:
    """The lowered IR nodes with every spiking neuron given ``framework``'s spike fields.

    Raises:
        rewire.errors.LoweringError: ``framework="spyx"`` (named; module docstring).
    """
    out = []
    for node in ir:
        if getattr(node, "spiking", False) and hasattr(node, "reset"):
            if framework == "spyx":
                raise LoweringError(
                    f"{node.kind} neurons written by spyx: spyx takes each step's spike from "
                    f"the voltage of the step before (spyx/nn.py: spikes = spike(V - "
                    f"threshold) before V is updated), so every layer's output comes one step "
                    f"late, and its CuBaLIF subtracts the threshold before the decay: the IR "
                    f"has no field for either; pass framework='nir' to lower with the IR's "
                    f"rule (other spike trains), or train with snnTorch or Norse",
                    piece=names[0] if names else "spyx")
            node = dataclasses.replace(node, **_spike_fields(framework, node))
        out.append(node)
    return out


def framework_note(framework: str) -> str | None:
    """The note naming ``framework``'s spike rule."""
    return _NOTES.get(framework)
