r"""What SynSense Xylo Audio 2 (SYNS61201) can hold, checked before and after the Xylo compiler
(:mod:`rewire.compiler.xylo`) runs. Every refusal is a :class:`~rewire.errors.CompileError`
(a :class:`~rewire.errors.MappingError` for counts) naming the piece, why, and a fix that
compiles.

The figures come from the profile (``hw_profiles/xylo.toml``, each with its source) and from
rockpool 3.1's mapper, ``rockpool/devices/xylo/syns61201/xylo_mapper.py``, whose design rules
this follows where they apply to a chain of dense layers:

=================================  ===========================================================
rockpool rule / figure             here
=================================  ===========================================================
``le_16_input_channels``           ``limits.max_inputs`` (16) input channels
``mapper(max_hidden_neurons)``     ``limits.neurons_per_core`` (1000) hidden neurons in all
``mapper(max_output_neurons)``,    ``limits.output_neurons`` (8) readout neurons
``le_8_output_channels``
``output_neurons_cannot_be_        a readout without recurrent weights
recurrent``
``at_least_two_neuron_layers_      at least two neuron layers (hidden + readout)
needed``
``weight_nodes_have_no_biases``    no bias (rockpool only warns and drops it; here refused)
``mapper(threshold_dtype=int16)``  thresholds ``1..max_threshold_mant`` (32767)
``xylo_samna.py`` ``astype(int8)`` weights ``int8 << weight_shift`` per matrix
(``config_from_specification``)    (:func:`rewire.compiler.xylo.xylo_shifts`)
=================================  ===========================================================

and, not in rockpool's mapper: the fan-out of a hidden neuron (its non-zero outgoing weights in
``weights_rec`` and ``weights_out``) at most ``limits.fan_out`` (64; rockpool's Xylo overview,
``docs/devices/xylo-overview.ipynb``; the chip stores the recurrent weights per fan-out entry,
``xa2_devkit_utils.py`` reads ``REFOCRAM``/``RFORAM``), ``dash`` at most
``2**decay_bits - 1``, at most 15 input events per channel and step (XyloSim clips there) and
31 spikes per step in hidden neurons, one in readout neurons (measured with ``xylosim`` 0.1.3).
"""

from __future__ import annotations

import math

import numpy as np

from rewire.errors import CompileError, MappingError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir import nodes as ir_nodes
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled_layers import layer_names
from rewire.ir.network import Network

__all__ = ["INPUT_EVENTS", "HIDDEN_SPIKES", "READOUT_SPIKES", "nearest_dash", "check_network",
           "outgoing", "fan_out", "check_fan_out"]

INPUT_EVENTS = 15   #: input events per channel and step XyloSim keeps (it clips above)
HIDDEN_SPIKES = 31  #: spikes per step a hidden neuron emits at most
READOUT_SPIKES = 1  #: spikes per step a readout neuron emits at most
_FIX_CELL = "train with rewire's LIFBitshiftCell(dash_syn={ds}, dash_mem={dm})"


def nearest_dash(dt: float, tau_inv: float) -> int:
    """``round(log2(1 / (dt tau_inv)))``: the bit shift whose decay ``1 - 2**-dash`` is nearest
    a time constant in log scale, as rockpool 3.1 rounds ``tau / dt``
    (``nn/modules/torch/lif_bitshift_torch.py``: ``round(log2(tau / dt))``); Norse's defaults
    (``dt = 1 ms``, ``tau_syn_inv = 200``, ``tau_mem_inv = 100``: decays 0.8 / 0.9) give
    ``dash_syn = 2``, ``dash_mem = 3`` (0.75 / 0.875). 0 for a rate of 1 or more per step."""
    rate = dt * tau_inv
    if not rate > 0 or not math.isfinite(rate):
        return 0
    return max(0, int(round(math.log2(1.0 / rate))))


def _cell_fix(neuron) -> str:
    """The ``LIFBitshiftCell`` nearest ``neuron``'s time constants."""
    dt = getattr(neuron, "dt", 1e-3)
    syn = getattr(neuron, "tau_syn_inv", None)
    mem = getattr(neuron, "tau_mem_inv", None)
    ds = nearest_dash(dt, syn) if syn is not None else 1  # Xylo always has a current
    dm = nearest_dash(dt, mem) if mem is not None else 15  # IF: the slowest leak
    return _FIX_CELL.format(ds=ds, dm=dm)


def check_network(network: Network, profile: HardwareProfile,
                  input_max_value: int) -> None:
    """Refuse, before any work, what Xylo cannot run (module docstring), naming the layer.

    Args:
        network: the IR network.
        profile: a ``cuba_bitshift`` profile (Xylo).
        input_max_value: ``current`` encoding's payload for ``x = 1`` (events per step).

    Raises:
        CompileError: a neuron that is not ``BitshiftLIF`` (with the nearest ``dash``
            values), a layer that is not dense, a bias, a skip connection, a recurrent
            readout, hidden ``max_spikes != 31`` or readout ``max_spikes != 1``, a ``dash``
            above ``2**decay_bits - 1``, ``input_max_value`` above 15.
        MappingError: fewer than two neuron layers, more than ``limits.max_inputs`` inputs,
            ``limits.neurons_per_core`` hidden or ``limits.output_neurons`` readout neurons.
    """
    layers, lim = network.layers, profile.limits
    names = layer_names(layers)
    for name, layer in zip(names, layers):
        _check_layer(name, layer, profile)
    if network.skips:
        skip = network.skips[0]
        raise CompileError(f"skip connection into layer {names[skip.target - 1]}: rewire's "
                           f"Xylo compiler maps a chain of dense layers only; remove the skip "
                           f"or train a chain")
    if len(layers) < 2:
        raise MappingError(f"layer {names[0]}: Xylo needs at least two neuron layers, hidden "
                           f"and readout (rockpool xylo_mapper.py "
                           f"at_least_two_neuron_layers_needed), got {len(layers)}: add a hidden "
                           f"layer (16 -> N -> {layers[-1].synapse.weight.shape[0]})",
                           "layers", names[0], len(layers), 2)
    n_in = layers[0].synapse.weight.shape[1]
    if lim.max_inputs and n_in > lim.max_inputs:
        raise MappingError(f"layer {names[0]}: {n_in} inputs but {profile.name!r} has "
                           f"{lim.max_inputs} input channels (limits.max_inputs; over by "
                           f"{n_in - lim.max_inputs}): reduce the inputs to {lim.max_inputs} "
                           f"(pool or select features)", "limits.max_inputs", names[0], n_in,
                           lim.max_inputs)
    hidden = sum(l.synapse.weight.shape[0] for l in layers[:-1])
    if hidden > lim.neurons_per_core:
        raise MappingError(f"layer {names[-2]}: {hidden} hidden neurons but {profile.name!r} "
                           f"has {lim.neurons_per_core} (limits.neurons_per_core; over by "
                           f"{hidden - lim.neurons_per_core}): use at most "
                           f"{lim.neurons_per_core} hidden neurons in all",
                           "limits.neurons_per_core", names[-2], hidden, lim.neurons_per_core)
    n_out = layers[-1].synapse.weight.shape[0]
    if lim.output_neurons and n_out > lim.output_neurons:
        raise MappingError(f"layer {names[-1]}: {n_out} readout neurons but {profile.name!r} "
                           f"has {lim.output_neurons} (limits.output_neurons; over by "
                           f"{n_out - lim.output_neurons}): use at most {lim.output_neurons} "
                           f"classes", "limits.output_neurons", names[-1], n_out,
                           lim.output_neurons)
    if isinstance(layers[-1].synapse, ir_nodes.RecurrentDense):
        raise CompileError(f"layer {names[-1]}: Xylo's readout neurons cannot be recurrent "
                           f"(rockpool xylo_mapper.py output_neurons_cannot_be_recurrent): "
                           f"make the last layer a plain Dense layer")
    for k, (name, layer) in enumerate(zip(names, layers)):
        want = READOUT_SPIKES if k == len(layers) - 1 else HIDDEN_SPIKES
        role = "readout" if k == len(layers) - 1 else "hidden"
        if layer.neuron.max_spikes != want:
            raise CompileError(f"layer {name}: max_spikes = {layer.neuron.max_spikes}, but "
                               f"Xylo's {role} neurons always allow {want} spike(s) per step; "
                               f"train with LIFBitshiftCell(..., max_spikes={want})")
    if network.encoding == "current" and input_max_value > INPUT_EVENTS:
        raise CompileError(f"input_max_value = {input_max_value}: Xylo clips its input at "
                           f"{INPUT_EVENTS} events per channel and step (XyloSim 0.1.3); give "
                           f"input_max_value <= {INPUT_EVENTS} (the payload of x = 1)")


def _check_layer(name: str, layer, profile: HardwareProfile) -> None:
    syn, neuron = layer.synapse, layer.neuron
    if not isinstance(syn, (ir_nodes.Dense, ir_nodes.RecurrentDense)):
        raise CompileError(f"layer {name}: a {type(syn).__name__} layer, but Xylo holds dense "
                           f"weight matrices only (weights_in, weights_rec, weights_out); "
                           f"replace it by a Dense layer (16 inputs, e.g. pooled features)")
    if syn.bias is not None:
        raise CompileError(f"layer {name}: a bias, but Xylo's weights have none (rockpool "
                           f"xylo_mapper.py weight_nodes_have_no_biases drops it); train with "
                           f"bias=False")
    if not isinstance(neuron, ir_nodes.BitshiftLIF):
        raise CompileError(f"layer {name}: a {neuron.kind} neuron, but Xylo's neurons decay by "
                           f"bit shifts (1 - 2**-dash); {_cell_fix(neuron)}, the nearest decays "
                           f"(rockpool rounds log2(tau / dt) the same way)")
    CompiledBitshiftLIF.decays(neuron, profile, name)  # v_th > 0, dash within decay_bits


def outgoing(layers) -> list[np.ndarray]:
    """Per hidden layer of the compiled chain ``layers``, its neurons' integer outgoing
    weights ``(n_targets, n_layer)``: the next layer's weights, with the layer's own recurrent
    weights stacked under them (what Xylo stores in ``weights_rec`` and ``weights_out``)."""
    out = []
    for k in range(len(layers) - 1):
        parts = [layers[k + 1].weight_int]
        if layers[k].recurrent:
            parts.append(layers[k].weight_rec_int)
        out.append(np.vstack(parts))
    return out


def fan_out(net) -> dict[str, int]:
    """``{hidden layer name: the largest fan-out of its neurons}`` of a compiled Xylo network
    (non-zero outgoing weights in ``weights_rec`` and ``weights_out``; ``limits.fan_out`` is
    64), for the report's per-layer line."""
    return {layer.name: int(np.count_nonzero(w, axis=0).max(initial=0))
            for layer, w in zip(net.layers, outgoing(net.layers))}


def check_fan_out(layers, profile: HardwareProfile) -> None:
    """Refuse a hidden neuron whose non-zero outgoing weights (:func:`outgoing`) exceed
    ``limits.fan_out``.

    Args:
        layers: the compiled layers of the chain, in order.
        profile: the Xylo profile.

    Raises:
        MappingError: the first neuron over the limit (layer, index, count, fix).
    """
    limit = profile.limits.fan_out
    if not limit:
        return
    for layer, w in zip(layers, outgoing(layers)):
        fan = np.count_nonzero(w, axis=0)
        if fan.size and fan.max() > limit:
            j, name = int(fan.argmax()), layer.name
            raise MappingError(f"layer {name}: neuron {j} has {int(fan[j])} outgoing synapses "
                               f"but {profile.name!r} allows {limit} per hidden neuron "
                               f"(limits.fan_out; over by {int(fan[j]) - limit}): train under "
                               f"the xylo profile (rewire.train steers fan-out) or prune to "
                               f"<= {limit} outgoing weights", "limits.fan_out", name,
                               int(fan[j]), limit)
