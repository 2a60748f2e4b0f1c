r"""Core mapping: place every neuron and its fan-in synapses on the chip's cores.

Each neuron of each layer is placed on exactly one core. A core ``c`` obeys, for the
profile's :class:`~rewire.hw_profiles.profile.Limits` (0 = no limit):

* **neurons**: neurons on ``c`` <= ``core_neurons(c)``;
* **synapses**: synapse words charged to ``c`` <= ``core_synapses(c)``. A core stores the fan-in
  synapses of its neurons, charged by ``limits.synapse_storage``: ``sparse`` charges one word
  per connected synapse; ``dense`` charges a crossbar, (distinct input axons the layer's part
  uses) x (its neurons); ``dense_pow2`` charges DYNAP-CNN kernel memory,
  :math:`C_\mathrm{in} \cdot 2^{\lceil \log_2 k \rceil}` for ``k`` neurons of a dense layer
  (sinabs ``dynapcnn_layer.py``, a 1x1 convolution);
* **fan-in**: distinct source neurons (input axons) feeding ``c`` <= ``axons_in_per_core``;
* **fan-out**: output routes of ``c``, one per (neuron, destination core) pair, <=
  ``axons_out_per_core``; per neuron, destination cores <= ``dest_cores_per_neuron`` and
  outgoing synapses <= ``fan_out``; per neuron, connected inputs <= ``fan_in``;
* **sharing**: at most ``layers_per_core`` layers per core (0 = any), and a layer stays on one
  core when ``split_layers`` is false.

Packing minimises cores with first-fit decreasing (FFD, Johnson 1974): the neurons of a layer
are taken in order of decreasing fan-in and each goes to the first open core (in opening
order) that still has room for it under every limit; only when none has room is a new core
opened. FFD uses at most :math:`\tfrac{11}{9}\mathrm{OPT} + \tfrac{6}{9}` cores (Dósa 2007), and
exactly the optimum :math:`\lceil \sum s / C \rceil` when the binding sizes divide each other
(Coffman, Garey & Johnson 1987), e.g. neuron counts alone or power-of-two fan-ins. When layers
may not be split and each core holds one layer (DYNAP-CNN), layers are matched to the
heterogeneous cores by an assignment (Hungarian method, ``scipy.optimize.linear_sum_assignment``),
which finds a placement whenever one exists. Dedicated output neurons (Xylo's readout,
``limits.output_neurons``) take the last layer outside the cores.

Any overflow raises :class:`MappingError` (a ``CompileError``) naming the limit, the layer, by
how much it is exceeded and the option that fixes it, before any file is written.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from rewire.compiler.packing import CoreBin, LayerConnectivity, Packer
from rewire.compiler.placement import (assign_whole_layers, check_neuron_limits, output_routes,
                                      too_many_cores)
from rewire.errors import MappingError
from rewire.hw_profiles.profile import HardwareProfile
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledLayer
from rewire.ir.cores import OUTPUT_CORE, CoreMapping, CoreUsage

__all__ = ["LayerConnectivity", "CoreUsage", "CoreMapping", "map_layers", "map_cores",
           "check_network", "layer_connectivity", "load_compiled"]

# ----------------------------------------------------------------------------- entry points

def map_layers(layers: Sequence[LayerConnectivity], profile: HardwareProfile,
               cores: int | None = None, structural: bool = False) -> CoreMapping:
    """Place every neuron of ``layers`` on the cores of ``profile`` (module docstring).

    Args:
        layers: :class:`LayerConnectivity` per layer, input side first.
        profile: target chip.
        cores: cores allotted (default ``limits.cores``); the first ``cores`` cores are used.
        structural: check only what pruning cannot fix (neuron counts, input channels, output
            neurons, one-layer-per-core and prune-independent ``dense_pow2`` memory); used
            before training, when the synapses are not known yet.

    Returns:
        The :class:`CoreMapping`.

    Raises:
        MappingError: a limit is exceeded; the message names the limit, the layer, by how
            much, and the option that fixes it.

    Example:
        >>> from rewire.hw_profiles.profile import load_profile
        >>> m = map_layers([LayerConnectivity.from_mask("fc1", np.ones((300, 4)))],
        ...                load_profile("truenorth"))
        >>> m.cores, [u.neurons for u in m.usage]
        (2, [256, 44])
    """
    lim = profile.limits
    allotted = lim.cores if cores is None else int(cores)
    if not 1 <= allotted <= lim.cores:
        raise MappingError(f"--cores must be in [1, {lim.cores}] for profile {profile.name!r}, "
                           f"got {allotted}", "limits.cores", "", allotted, lim.cores)
    if not layers:
        raise ValueError("map_layers: no layers to map")
    check_neuron_limits(profile, layers, structural)
    on_cores = list(layers[:-1]) if lim.output_neurons else list(layers)
    packer = Packer(profile, layers, allotted, structural)
    if on_cores and not lim.split_layers and lim.layers_per_core == 1:
        placement = assign_whole_layers(packer, on_cores)
    else:
        placement = []
        for li, layer in enumerate(on_cores):
            before = len(packer.open)
            where = (packer.place_split if lim.split_layers else packer.place_whole)(li, layer)
            placement.append(where)
            if len(packer.open) > allotted:
                raise too_many_cores(profile, li, layer, packer, before, allotted, structural)
    usage_cores = list(packer.open)
    if lim.output_neurons:
        out = CoreBin(OUTPUT_CORE, lim.output_neurons, 0)
        packer.open.append(out)
        packer.add(out, len(layers) - 1, layers[-1], np.arange(layers[-1].neurons))
        placement.append(np.full(layers[-1].neurons, len(packer.open) - 1, np.int64))
        usage_cores = list(packer.open)
    routes = (np.zeros(len(usage_cores), np.int64) if structural
              else output_routes(profile, layers, placement, usage_cores))
    usage = []
    for ci, core in enumerate(usage_cores):
        fan_in = sum(packer._axons(q, layers[j]) for j, q in core.parts.items())
        if lim.axons_out_per_core and routes[ci] > lim.axons_out_per_core and not structural:
            names = [layers[j].name for j in core.parts]
            raise MappingError(
                f"layer {names[0]}: core {core.core} needs {int(routes[ci])} output routes but "
                f"{profile.name!r} allows {lim.axons_out_per_core} (limits.axons_out_per_core; "
                f"over by {int(routes[ci]) - lim.axons_out_per_core}): train with a lower "
                f"--connectivity so that fewer neurons reach several cores",
                "limits.axons_out_per_core", names[0], int(routes[ci]), lim.axons_out_per_core)
        capacity = {"neurons": core.cap_neurons, "synapses": core.cap_synapses,
                    "input_axons": lim.axons_in_per_core,
                    "output_routes": lim.axons_out_per_core, "fan_in": lim.fan_in}
        worst = max([int(layers[j].fan_in[placement[j] == ci].max(initial=0))
                     for j in core.parts], default=0)
        usage.append(CoreUsage(core=core.core,
                               layers={layers[j].name: q[0] for j, q in core.parts.items()},
                               neurons=core.neurons, synapses=core.words,
                               connected=core.connected, input_axons=int(fan_in),
                               output_routes=int(routes[ci]), max_fan_in=worst,
                               capacity=capacity))
    algorithm = ("assignment of whole layers to cores (Hungarian method)"
                 if not lim.split_layers and lim.layers_per_core == 1
                 else "first-fit decreasing by fan-in")
    return CoreMapping(usage=tuple(usage), placement=tuple(placement),
                       layer_names=tuple(l.name for l in layers),
                       neurons_per_layer=tuple(l.neurons for l in layers),
                       synapses_per_layer=tuple(int(l.fan_in.sum()) for l in layers),
                       allotted=allotted, profile=profile.name, algorithm=algorithm)


def layer_connectivity(layer: CompiledLayer) -> LayerConnectivity:
    """The connectivity of a compiled layer (``weight_int != 0``).

    A convolution (:class:`~rewire.ir.compiled_layers.CompiledConv`) has no per-neuron input sets here: each neuron
    gets the connected entries of its output channel's kernel as fan-in and all inputs as
    axons (an upper bound). A recurrent dense layer's recurrent synapses count like its input
    ones (its own neurons' spikes are further input axons: the mask is ``[W | W_rec]``), and
    skip connections follow as further columns (``skips`` says where each begins).
    """
    w = np.asarray(layer.weight_int)
    if isinstance(layer, CompiledConv):
        per_channel = np.count_nonzero(w.reshape(len(w), -1), axis=1)
        n_out, n_in = layer.shape
        fan_in = np.repeat(per_channel, n_out // len(w)).astype(np.int64)
        return LayerConnectivity(layer.name, fan_in, n_in, None,
                                 tuple((s.source, None) for s in layer.skips))
    conn = LayerConnectivity.from_mask(layer.name, np.asarray(layer.fan_in_matrix))
    if not layer.skips:
        return conn
    first = conn.mask.shape[1] - sum(s.weight_int.shape[1] for s in layer.skips)
    starts = np.cumsum([first] + [s.weight_int.shape[1] for s in layer.skips[:-1]])
    return dataclasses.replace(conn, skips=tuple((s.source, int(c))
                                                 for s, c in zip(layer.skips, starts)))


def map_cores(layers: Sequence[CompiledLayer], profile: HardwareProfile,
              cores: int | None = None) -> CoreMapping:
    """:func:`map_layers` for compiled layers (their chip weights give the connectivity).

    Raises:
        MappingError: see :func:`map_layers`.
    """
    return map_layers([layer_connectivity(l) for l in layers], profile, cores)


def check_network(profile: HardwareProfile, sizes: Sequence[int],
                  cores: int | None = None) -> CoreMapping:
    """Before training: does a fully connected network of ``sizes`` fit at all?

    Checks what pruning cannot fix (``structural=True`` in :func:`map_layers`).

    Raises:
        MappingError: e.g. 64 inputs on Xylo's 16 input channels.
    """
    layers = [LayerConnectivity.dense(f"fc{k + 1}", n_out, n_in)
              for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return map_layers(layers, profile, cores, structural=True)


def load_compiled(data: dict) -> CompiledNetwork:
    """:meth:`CompiledNetwork.from_dict`, mapping the cores again when ``data`` holds no
    mapping (version-2 dicts written by rewire before the mapping was saved).

    Raises:
        ValueError: see :meth:`CompiledNetwork.from_dict`.
        MappingError: the layers no longer fit the profile's cores.
    """
    if isinstance(data, dict) and data.get("format") == "rewire-compiled" \
            and data.get("version") == 2 and "mapping" not in data:
        layers = [CompiledLayer.from_dict(l) for l in data["layers"]]
        profile = HardwareProfile.from_dict(data["profile"])
        return CompiledNetwork.from_dict(data, map_cores(layers, profile, data.get("cores")))
    return CompiledNetwork.from_dict(data)
