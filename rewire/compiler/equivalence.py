"""Equivalence report: where quantization changes behaviour, layer by layer and step by step.

For one input set, the float model (the compiled network's float IR run by
:mod:`rewire.ir.dynamics`, which equals the source Norse model spike for spike) and the
integer chip model
(:func:`rewire.compiler.simulate.simulate`, which Lava's netx run equals spike for spike) are run
side by side and every layer's spike trains compared:

* **spike agreement**: fraction of (step, sample, neuron) entries where both models agree
  (spike or silence), overall and per step;
* **first divergence**: the earliest step at which any sample's spikes differ in that layer
  (``None`` if never), and the fraction of samples that diverge at all;
* **accuracy** of each model (spike-count argmax, or the largest voltage over time for a
  leaky-integrator readout, ties to the lowest index, as everywhere in rewire) and the
  fraction of samples on which they predict the same class.

A leaky-integrator readout has no spikes to compare: its row counts the (step, sample)
entries where both models' largest voltage is on the same neuron.

Both models are undelayed (the integer model without Lava's per-layer delay), so step ``t`` of
every layer answers input step ``t`` in both. No other SNN tool reports this before deployment.

Example:
    >>> import numpy as np, torch
    >>> import rewire
    >>> from rewire.training.model import SpikingMLP
    >>> _ = torch.manual_seed(0)
    >>> model = SpikingMLP((6, 8, 3), steps=5)
    >>> net = rewire.compile(model, "loihi2", 16)
    >>> rep = compare(net, np.random.default_rng(0).random((4, 6)), labels=[0, 1, 2, 0])
    >>> [l.name for l in rep.layers], rep.samples, rep.steps
    (['fc1', 'fc2'], 4, 5)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from rewire.compiler import simulate
from rewire.ir import dynamics
from rewire.ir.compiled import CompiledNetwork, float_network
from rewire.ir.input_layout import flatten_samples


@dataclass(frozen=True)
class LayerEquivalence:
    """How one layer's spikes compare between the float and the integer model.

    Attributes:
        name: layer name (``fc1``, ...).
        neurons: neurons of the layer.
        spike_agreement: fraction of (step, sample, neuron) entries that agree, in [0, 1].
        step_agreement: the same per time step, ``T`` values.
        float_spikes, integer_spikes: total spikes of each model over the input set.
        first_divergence: earliest step (0-based) at which any sample differs; ``None`` if the
            two models agree at every step.
        diverged_samples: fraction of samples whose spikes differ at some step in this layer.
        float_active, integer_active: neurons that spiked at least once over the input set in
            each model (a readout layer's: neurons that were the largest at some step).
        spiking: whether the layer emits spikes (``False`` for a voltage readout).
    """

    name: str
    neurons: int
    spike_agreement: float
    step_agreement: tuple[float, ...]
    float_spikes: int
    integer_spikes: int
    first_divergence: int | None
    diverged_samples: float
    float_active: int = 0
    integer_active: int = 0
    spiking: bool = True


@dataclass(frozen=True)
class EquivalenceReport:
    """Float Norse vs integer chip model on one input set (see the module docstring).

    Attributes:
        samples, steps: size of the input set and time steps per sample.
        layers: one :class:`LayerEquivalence` per layer, input side first.
        float_accuracy, integer_accuracy: accuracies (fractions) when labels were given,
            else ``None``.
        prediction_agreement: fraction of samples for which both models predict the same class.
    """

    samples: int
    steps: int
    layers: tuple[LayerEquivalence, ...]
    float_accuracy: float | None
    integer_accuracy: float | None
    prediction_agreement: float

    def to_dict(self) -> dict:
        """JSON-ready dict (the ``equivalence`` entry of ``report.json``)."""
        return asdict(self)

    def format(self) -> str:
        """A small text table: one row per layer."""
        rows = [f"{'layer':<8}{'agree':>9}{'float sp':>10}{'int sp':>10}{'1st diff':>10}"
                f"{'diverged':>10}"]
        for l in self.layers:
            first = "-" if l.first_divergence is None else str(l.first_divergence)
            rows.append(f"{l.name:<8}{l.spike_agreement:>9.2%}{l.float_spikes:>10}"
                        f"{l.integer_spikes:>10}{first:>10}{l.diverged_samples:>10.1%}")
        acc = ""
        if self.float_accuracy is not None:
            acc = (f"accuracy float {self.float_accuracy:.2%}, integer "
                   f"{self.integer_accuracy:.2%}; ")
        rows.append(f"{acc}same prediction on {self.prediction_agreement:.2%} of "
                    f"{self.samples} samples")
        return "\n".join(rows)


def as_rows(out: np.ndarray, spiking: bool) -> np.ndarray:
    """``(T, B, ...)`` layer output -> ``(T, B, n)``: spikes as uint8; a readout's voltages
    as the one-hot of their argmax over neurons (what is compared for a readout)."""
    flat = out.reshape(out.shape[0], out.shape[1], -1)
    if spiking:
        return flat.astype(np.uint8)
    return (flat == flat.max(-1, keepdims=True)).astype(np.uint8)


def compare(net: CompiledNetwork, inputs: np.ndarray, labels=None, batch_size: int = 256,
            model=None) -> EquivalenceReport:
    """Compare the float IR of ``net`` and its integer image on ``inputs``.

    Args:
        net: the compiled network (:func:`rewire.compiler.quantize.compile_network`).
        inputs: float, in the model's input layout or flat (:mod:`rewire.ir.input_layout`):
            current encoding: ``x`` ``(B, *net.input_shape)`` or ``(B, n_in)`` in [0, 1]
            (the float model gets ``input_gain * x``, the integer model the payload
            ``round(x * input_max_value)``); rate encoding: the 0/1 spike trains
            ``(T, B, *net.input_shape)`` or ``(T, B, n_in)`` both models get.
        labels: optional ``(B,)`` classes, for the accuracies.
        batch_size: samples per batch (bounds memory).
        model: ignored: the float side is ``net``'s own float IR (which the frontends' tests
            check against the source model).

    Returns:
        The :class:`EquivalenceReport`.

    Raises:
        ValueError: ``inputs`` is in neither layout for the encoding (both named), or is
            empty (a comparison of nothing is refused).
    """
    fnet = float_network(net)
    rate = net.encoding == "rate"
    inputs = flatten_samples(np.asarray(inputs), net.sizes[0], net.input_shape,
                             2 if rate else 1, f"{net.encoding} encoding needs inputs")
    total = inputs.shape[1] if rate else inputs.shape[0]
    if total == 0:
        raise ValueError("compare: no input samples; a comparison of nothing proves nothing")
    steps = net.steps if not rate else inputs.shape[0]
    n_layers = len(net.layers)
    agree = [np.zeros(steps) for _ in range(n_layers)]
    f_spikes, i_spikes = [0] * n_layers, [0] * n_layers
    f_active = [np.zeros(l.shape[0], bool) for l in net.layers]
    i_active = [np.zeros(l.shape[0], bool) for l in net.layers]
    diverged = [0] * n_layers
    first: list[int | None] = [None] * n_layers
    f_pred, i_pred = [], []
    for start in range(0, total, batch_size):
        chunk = inputs[:, start:start + batch_size] if rate else inputs[start:start + batch_size]
        x = torch.as_tensor(np.asarray(chunk, dtype=np.float32))
        x = x.reshape(*x.shape[:-1], *fnet.input_shape)
        raw_f = [o.numpy() for o in dynamics.run(fnet, dynamics.encode(fnet, x), record_all=True)]
        raw_i = simulate.simulate(net, simulate.encode_input(net, chunk), record_all=True)
        f_pred.append(_scores(raw_f[-1], net).argmax(-1))
        i_pred.append(simulate.class_scores(net, raw_i[-1]).argmax(-1))
        fl = [as_rows(o, l.spiking) for o, l in zip(raw_f, net.layers)]
        it = [as_rows(o, l.spiking) for o, l in zip(raw_i, net.layers)]
        for k in range(n_layers):
            same = fl[k] == it[k]                                   # (T, b, n)
            agree[k] += same.reshape(steps, -1).sum(1)
            f_spikes[k] += int(fl[k].sum())
            i_spikes[k] += int(it[k].sum())
            f_active[k] |= fl[k].any(axis=(0, 1))
            i_active[k] |= it[k].any(axis=(0, 1))
            differ = ~same.all(axis=2)                               # (T, b)
            diverged[k] += int(differ.any(axis=0).sum())
            if differ.any():
                t = int(np.argmax(differ.any(axis=1)))
                first[k] = t if first[k] is None else min(first[k], t)
    f_pred, i_pred = np.concatenate(f_pred), np.concatenate(i_pred)
    layers = []
    for k, layer in enumerate(net.layers):
        per_step = agree[k] / max(total * layer.shape[0], 1)
        layers.append(LayerEquivalence(
            name=layer.name, neurons=layer.shape[0],
            spike_agreement=float(per_step.mean()) if steps else 1.0,
            step_agreement=tuple(float(a) for a in per_step),
            float_spikes=f_spikes[k], integer_spikes=i_spikes[k], first_divergence=first[k],
            diverged_samples=diverged[k] / max(total, 1),
            float_active=int(f_active[k].sum()), integer_active=int(i_active[k].sum()),
            spiking=bool(layer.spiking)))
    f_acc = i_acc = None
    if labels is not None:
        labels = np.asarray(labels)
        f_acc = float((f_pred == labels).mean())
        i_acc = float((i_pred == labels).mean())
    return EquivalenceReport(samples=int(total), steps=int(steps), layers=tuple(layers),
                             float_accuracy=f_acc, integer_accuracy=i_acc,
                             prediction_agreement=float((f_pred == i_pred).mean()))


def _scores(out: np.ndarray, net: CompiledNetwork) -> np.ndarray:
    """Float class scores ``(B, C)``: spike counts, or a readout's largest ``v`` over time."""
    flat = out.reshape(out.shape[0], out.shape[1], -1)
    return flat.sum(0) if net.readout == "spikes" else flat.max(0)
