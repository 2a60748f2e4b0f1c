"""The IR network: a chain of synapse and neuron nodes, with its input and time step.

:class:`Network` is what every frontend (:mod:`rewire.frontends`) produces and the only thing
the compiler (:mod:`rewire.compiler`) reads. It is a frozen dataclass checked on
construction (shapes chain, every synapse is followed by one neuron node, one ``dt`` for the
whole network, a non-spiking readout only at the end), with a versioned
:meth:`Network.to_dict` / :meth:`Network.from_dict`.

Example:
    >>> import numpy as np
    >>> from rewire.ir.nodes import Dense, CubaLIF, LI
    >>> net = Network(nodes=(Dense(np.ones((3, 4))), CubaLIF(200.0, 100.0),
    ...                      Dense(np.ones((2, 3))), LI(100.0)),
    ...               input_shape=(4,), steps=8)
    >>> [(l.name, l.synapse.op, l.neuron.kind, l.out_shape) for l in net.layers]
    [('layer1', 'dense', 'CubaLIF', (3,)), ('layer2', 'dense', 'LI', (2,))]
    >>> Network.from_dict(net.to_dict()).layers[1].neuron == net.layers[1].neuron
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rewire.ir._checked import ENCODINGS, MALFORMED, check_encoding, check_gain, check_steps
from rewire.ir._fields import _array_field, _weights
from rewire.ir.nodes import (NEURONS, SYNAPSES, Dense, Flatten, RecurrentDense, SumPool2d,
                             neuron_from_dict, synapse_from_dict, synapse_to_dict)

__all__ = ["IR_FORMAT", "IR_VERSION", "ENCODINGS", "Layer", "Network", "Skip"]

IR_FORMAT = "rewire-ir"
IR_VERSION = 1
# ENCODINGS (from rewire.ir._checked): ``current``: a sample ``x`` (in [0, 1]) is presented
# as the constant input ``input_gain * x`` at every step (graded spikes on the chip);
# ``rate``: the input is a binary spike train ``(T, B, ...)`` given per step.


@dataclass(frozen=True)
class Layer:
    """One synapse operator with the neurons it drives (a view of :class:`Network`).

    Attributes:
        name: unique layer name (the source's module path or NIR node name where known).
        synapse: a :data:`rewire.ir.nodes.SYNAPSES` node.
        neuron: a neuron node of :mod:`rewire.ir.nodes`.
        in_shape, out_shape: per-sample shapes (``(n,)`` or ``(C, H, W)``).
        flatten: whether a :class:`Flatten` precedes the synapse.
    """

    name: str
    synapse: object
    neuron: object
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    flatten: bool = False

    @property
    def neurons(self) -> int:
        """Neurons of the layer (``prod(out_shape)``)."""
        return int(np.prod(self.out_shape))


@dataclass(frozen=True, eq=False)
class Skip:
    r"""A skip (residual) connection: synapses from the output of an earlier layer, or from
    the network input, into a later layer's neurons, summed with that layer's own synaptic
    input in the same step (He et al., CVPR 2016, eq. 1, :math:`y = F(x) + W_s x`, with spikes
    for :math:`x`):

    .. math:: a_\mathrm{target} = W x + b + W_\mathrm{skip}\, \mathrm{out}_\mathrm{source}
        \;(+\, W_\mathrm{rec} z_{t-1})

    where ``out_source`` is the source layer's spikes of the *same* step (0 for the input:
    its value at this step). An identity shortcut ``x + f(x)`` is ``weight = eye(n)``.

    Attributes:
        source: 0 for the network input, ``k >= 1`` for the output of layer ``k`` (1-based:
            ``layer1`` is 1).
        target: the layer ``k >= 1`` whose neurons it feeds; ``target > source``.
        weight: float32 ``(n_target, n_source)``, both flattened in ``(C, H, W)`` order.

    Raises:
        ValueError: a non-integer or negative index, ``target <= source``, or non-finite
            weights (checked against the layers by :class:`Network`).
    """

    source: int
    target: int
    weight: np.ndarray

    def __post_init__(self):
        for name in ("source", "target"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise ValueError(f"Skip.{name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.target <= self.source:
            raise ValueError(f"Skip: target {self.target} must come after source "
                             f"{self.source} (a skip feeds a later layer)")
        object.__setattr__(self, "weight", _weights("Skip.weight", self.weight, 2))

    def to_dict(self) -> dict:
        """``{"source", "target", "weight"}`` (JSON-ready)."""
        return {"source": self.source, "target": self.target,
                "weight": _array_field(self.weight)}


@dataclass(frozen=True)
class Network:
    """An SNN as the compiler reads it.

    Attributes:
        nodes: synapse, neuron and :class:`~rewire.ir.nodes.Flatten` nodes in data-flow order.
        input_shape: per-sample input shape, ``(n,)`` or ``(C, H, W)``.
        steps: time steps ``T`` a sample is presented for.
        encoding: one of :data:`ENCODINGS`.
        input_gain: ``current`` encoding: the input current is ``input_gain * x``.
        names: one name per synapse node (default ``layer1, layer2, ...``), used in messages.
        source: where the network came from (``"norse"``, ``"nir"``, ...), for the report.
        notes: what the frontend wants the user to know (semantics that differ from the
            source framework, parameters folded, ...), carried into the report.
        skips: :class:`Skip` connections (residual blocks); the layers stay a chain, each
            layer summing its own synapses with the skips that target it.

    Raises:
        ValueError: a node that is not an IR node, a synapse not followed by a neuron node, a
            neuron without a synapse before it, a :class:`Flatten` elsewhere than before a
            dense stage, shapes that do not chain, neurons with different ``dt``, a
            non-spiking neuron before the last layer, or bad ``steps``/``encoding``/
            ``input_gain``. The message names the node.
    """

    nodes: tuple
    input_shape: tuple[int, ...]
    steps: int = 16
    encoding: str = "rate"
    input_gain: float = 1.0
    names: tuple[str, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = ()
    skips: tuple[Skip, ...] = ()
    layers: tuple[Layer, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "notes", tuple(self.notes))
        if int(self.steps) != self.steps or self.steps < 1:
            raise ValueError(f"Network.steps must be an integer >= 1, got {self.steps!r}")
        object.__setattr__(self, "steps", int(self.steps))
        if self.encoding not in ENCODINGS:
            raise ValueError(f"Network.encoding must be one of {ENCODINGS}, got "
                             f"{self.encoding!r}")
        if not (math.isfinite(self.input_gain) and self.input_gain > 0):
            raise ValueError(f"Network.input_gain must be finite and > 0, got {self.input_gain}")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(f"Network.input_shape must be non-empty and positive, got "
                             f"{self.input_shape}")
        object.__setattr__(self, "layers", self._build_layers())
        object.__setattr__(self, "skips", tuple(self.skips))
        self._check_skips()

    def _check_skips(self) -> None:
        """Every skip joins an existing source to a later layer with a weight of the right
        shape (named)."""
        for n, skip in enumerate(self.skips):
            if not isinstance(skip, Skip):
                raise ValueError(f"Network.skips[{n}] must be a rewire.ir.Skip, got "
                                 f"{type(skip).__name__}")
            if skip.target > len(self.layers):
                raise ValueError(f"Network.skips[{n}]: target layer {skip.target} does not "
                                 f"exist (the network has {len(self.layers)} layers)")
            target = self.layers[skip.target - 1]
            src_shape = self.input_shape if skip.source == 0 else \
                self.layers[skip.source - 1].out_shape
            want = (target.neurons, int(np.prod(src_shape)))
            if skip.weight.shape != want:
                src = "the input" if skip.source == 0 else self.layers[skip.source - 1].name
                raise ValueError(f"Network.skips[{n}]: the weight from {src} {src_shape} into "
                                 f"layer {target.name} {target.out_shape} must be {want}, got "
                                 f"{skip.weight.shape}")

    def skips_into(self, target: int) -> tuple[Skip, ...]:
        """The skips feeding layer ``target`` (1-based), in order."""
        return tuple(s for s in self.skips if s.target == target)

    def _build_layers(self) -> tuple[Layer, ...]:
        synapses = [n for n in self.nodes if isinstance(n, SYNAPSES)]
        if not synapses:
            raise ValueError("Network: no synapse node (Dense, RecurrentDense, Conv2d, SumPool2d)")
        names = self.names or tuple(f"layer{k + 1}" for k in range(len(synapses)))
        if len(names) != len(synapses) or len(set(names)) != len(names):
            raise ValueError(f"Network.names must give {len(synapses)} distinct names, one per "
                             f"synapse node, got {list(names)}")
        object.__setattr__(self, "names", names)
        layers, shape, k, i, dts = [], self.input_shape, 0, 0, set()
        nodes = self.nodes
        while i < len(nodes):
            node, flatten = nodes[i], False
            if isinstance(node, Flatten):
                if i + 1 >= len(nodes) or not isinstance(nodes[i + 1], (Dense, RecurrentDense)):
                    raise ValueError(f"Network: node {i} Flatten must be followed by a Dense "
                                     f"or RecurrentDense node")
                shape, flatten, i = node.out_shape(shape), True, i + 1
                node = nodes[i]
            if not isinstance(node, SYNAPSES):
                raise ValueError(f"Network: node {i} ({type(node).__name__}) must be a synapse "
                                 f"node (Dense, RecurrentDense, Conv2d, SumPool2d, after an "
                                 f"optional Flatten)")
            name = names[k]
            if i + 1 >= len(nodes) or type(nodes[i + 1]).__name__ not in NEURONS:
                raise ValueError(f"Network: layer {name} ({type(node).__name__}) must be followed by a "
                                 f"neuron node ({', '.join(NEURONS)})")
            neuron = nodes[i + 1]
            try:
                out = node.out_shape(shape)
            except ValueError as exc:
                raise ValueError(f"Network: layer {name}: {exc}") from None
            if layers and not layers[-1].neuron.spiking:
                raise ValueError(f"Network: layer {layers[-1].name} has non-spiking "
                                 f"{layers[-1].neuron.kind} neurons but feeds layer {name}; a "
                                 f"leaky integrator can only be the readout (last layer)")
            if isinstance(node, RecurrentDense) and not neuron.spiking:
                raise ValueError(f"Network: layer {name}: a recurrent layer needs spiking "
                                 f"neurons, got {neuron.kind}")
            dts.add(neuron.dt)
            layers.append(Layer(name, node, neuron, tuple(shape), tuple(out), flatten))
            shape, k, i = out, k + 1, i + 2
        if len(dts) > 1:
            raise ValueError(f"Network: every neuron needs the same dt (one time step per "
                             f"network), got {sorted(dts)} s")
        return tuple(layers)

    @property
    def dt(self) -> float:
        """The time step in s, shared by every neuron node."""
        return self.layers[0].neuron.dt

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample shape of the last layer's output."""
        return self.layers[-1].out_shape

    @property
    def readout(self) -> str:
        """``"spikes"`` (class = most output spikes) or ``"voltage"`` (a leaky-integrator
        readout: class = largest ``v`` over time)."""
        return "spikes" if self.layers[-1].neuron.spiking else "voltage"

    @property
    def synapse_count(self) -> int:
        """Weights of the synapse nodes that a chip stores (dense, recurrent, conv and skip
        weights; a sum pool's constant kernel counts its window), zeros included."""
        total = 0
        for layer in self.layers:
            s = layer.synapse
            if isinstance(s, SumPool2d):
                total += layer.out_shape[0] * int(np.prod(s.kernel))
            else:
                total += s.weight.size + (s.weight_rec.size if isinstance(s, RecurrentDense)
                                          else 0)
        return total + sum(skip.weight.size for skip in self.skips)

    def to_dict(self) -> dict:
        """JSON-ready dict with ``format`` and ``version`` (see :meth:`from_dict`)."""
        nodes = [n.to_dict() if type(n).__name__ in NEURONS else synapse_to_dict(n)
                 for n in self.nodes]
        return {"format": IR_FORMAT, "version": IR_VERSION, "nodes": nodes,
                "input_shape": list(self.input_shape), "steps": self.steps,
                "encoding": self.encoding, "input_gain": self.input_gain,
                "names": list(self.names), "source": self.source, "notes": list(self.notes),
                **({"skips": [s.to_dict() for s in self.skips]} if self.skips else {})}

    @classmethod
    def from_dict(cls, data: dict) -> "Network":
        """Rebuild a network from :meth:`to_dict`.

        Raises:
            ValueError: not a rewire IR dict, a version this rewire cannot read (it says which
                versions it reads), or invalid contents (named).
        """
        if not isinstance(data, dict) or data.get("format") != IR_FORMAT:
            raise ValueError(f"not a rewire IR network (format must be {IR_FORMAT!r})")
        version = data.get("version")
        if version != IR_VERSION:
            raise ValueError(f"rewire IR version {version!r} cannot be read by this rewire, "
                             f"which reads version {IR_VERSION}; re-export with this rewire")
        for key in ("nodes", "input_shape", "steps", "encoding", "input_gain"):
            if key not in data:
                raise ValueError(f"rewire IR network: missing field {key!r}")
        if not isinstance(data["nodes"], list) or \
                any(not isinstance(n, dict) for n in data["nodes"]):
            raise ValueError("rewire IR network: nodes must be a list of dicts")
        nodes = []
        for k, n in enumerate(data["nodes"]):
            try:
                nodes.append(neuron_from_dict(n) if "kind" in n else synapse_from_dict(n))
            except MALFORMED as exc:
                raise ValueError(f"rewire IR network: nodes[{k}]: "
                                 f"{exc if isinstance(exc, ValueError) else repr(exc)}") from None
        shape = data["input_shape"]
        if not isinstance(shape, list) or any(isinstance(s, bool) or not isinstance(s, int)
                                              for s in shape):
            raise ValueError(f"rewire IR network: input_shape must be a list of integers, got "
                             f"{shape!r}")
        try:
            steps = check_steps(data["steps"], "rewire IR network: steps")
            encoding = check_encoding(data["encoding"], "rewire IR network: encoding")
            gain = check_gain(data["input_gain"], "rewire IR network: input_gain")
        except TypeError as exc:
            raise ValueError(str(exc)) from None
        names, notes = data.get("names", []), data.get("notes", [])
        if any(not isinstance(v, list) or any(not isinstance(x, str) for x in v)
               for v in (names, notes)) or not isinstance(data.get("source", ""), str):
            raise ValueError("rewire IR network: names and notes must be lists of strings, "
                             "source a string")
        skips = data.get("skips", [])
        if not isinstance(skips, list) or any(not isinstance(d, dict) or
                                              set(d) != {"source", "target", "weight"}
                                              for d in skips):
            raise ValueError("rewire IR network: skips must be a list of {source, target, "
                             "weight} dicts")
        try:
            skips = tuple(Skip(**d) for d in skips)
        except MALFORMED as exc:
            raise ValueError(f"rewire IR network: skips: {exc}") from None
        return cls(nodes=tuple(nodes), input_shape=tuple(shape), steps=steps,
                   encoding=encoding, input_gain=gain, names=tuple(names),
                   source=data.get("source", ""), notes=tuple(notes), skips=skips)
