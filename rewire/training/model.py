r"""Feed-forward spiking networks built from Norse LIF cells, unrolled over time.

Each layer is a bias-free ``torch.nn.Linear`` followed by a Norse ``LIFCell`` (current-based
LIF, the Euler step of Norse 1.1's ``norse/torch/functional/lif.py``):

.. math::
    j_t = i_{t-1} + W s_t, \quad
    v_t = v_{t-1} + \Delta t\,\tau_\mathrm{mem}^{-1}(v_\mathrm{leak} - v_{t-1} + j_t), \quad
    i_t = j_t (1 - \Delta t\,\tau_\mathrm{syn}^{-1}),

a spike :math:`z_t = H(v_t - v_\mathrm{th})` resets :math:`v_t` to :math:`v_\mathrm{reset}`.
The network's output is the spike train of the last layer; the class is the output
neuron with the most spikes (:func:`spike_count_logits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from norse.torch import LIFCell, LIFParameters
from torch import nn

ENCODINGS = ("current", "rate")


def check_run_options(steps: int, encoding: str, input_gain: float) -> None:
    """Check the options every SNN model of rewire shares.

    Raises:
        ValueError: ``steps < 1``, an ``encoding`` not in :data:`ENCODINGS`, or
            ``input_gain <= 0`` (named in the message).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if not input_gain > 0:
        raise ValueError(f"input_gain must be > 0, got {input_gain}")


def encode_steps(x: torch.Tensor, steps: int, encoding: str, input_gain: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Present ``x`` for ``steps`` time steps, ``(B, n) -> (T, B, n)`` float.

    ``"current"``: the constant current ``input_gain * x`` every step; ``"rate"``: Bernoulli
    spikes with probability ``clamp(x, 0, 1)`` drawn from ``generator``.
    """
    xs = x.unsqueeze(0).expand(steps, *x.shape)
    if encoding == "rate":
        return torch.bernoulli(xs.clamp(0, 1), generator=generator)
    return xs * input_gain


@dataclass(frozen=True)
class NeuronConfig:
    """LIF constants shared by every layer (SI units).

    The defaults are Norse 1.1's per-step dynamics (``dt/tau_syn = 0.2``, ``dt/tau_mem = 0.1``)
    on a 0.1 ms step instead of Norse's 1 ms: the network, its chip constants (iDecay, vDecay)
    and every export are the same step for step, and the NIR file also loads in snnTorch 1.0,
    whose importer hard-codes ``dt = 1e-4`` s.

    Attributes:
        tau_syn_inv: inverse synaptic time constant :math:`1/\\tau_\\mathrm{syn}` in 1/s.
        tau_mem_inv: inverse membrane time constant :math:`1/\\tau_\\mathrm{mem}` in 1/s.
        v_th: threshold (dimensionless, Norse units).
        v_leak: leak potential (must be 0 for the chip).
        v_reset: reset potential (must be 0 for the chip).
        dt: Euler time step in s.
    """

    tau_syn_inv: float = 2000.0
    tau_mem_inv: float = 1000.0
    v_th: float = 1.0
    v_leak: float = 0.0
    v_reset: float = 0.0
    dt: float = 1e-4

    def lif_parameters(self) -> LIFParameters:
        """The equivalent Norse :class:`LIFParameters` (SuperSpike surrogate, alpha 100)."""
        return LIFParameters(tau_syn_inv=torch.as_tensor(self.tau_syn_inv),
                             tau_mem_inv=torch.as_tensor(self.tau_mem_inv),
                             v_leak=torch.as_tensor(self.v_leak),
                             v_th=torch.as_tensor(self.v_th),
                             v_reset=torch.as_tensor(self.v_reset))


class SpikingMLP(nn.Module):
    """Fully connected SNN: ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` LIF layers.

    Args:
        sizes: neurons per layer, input first, e.g. ``(64, 256, 10)``.
        steps: time steps ``T`` the input is presented for.
        encoding: ``"current"`` (the input vector is injected as a constant current every
            step) or ``"rate"`` (Bernoulli spikes with probability equal to the input value).
        neuron: :class:`NeuronConfig`.
        input_gain: the input current is ``input_gain * x`` (constant-current encoding only;
            rate encoding ignores it). Default 4.

    Shapes:
        input: ``(B, sizes[0])`` float in [0, 1].
        output: ``(T, B, sizes[-1])`` spikes (0/1 float).

    Raises:
        ValueError: fewer than two sizes, a non-positive size, ``steps < 1`` or an unknown
            encoding.

    Example:
        >>> net = SpikingMLP((4, 8, 3), steps=5)
        >>> net(torch.rand(2, 4)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(self, sizes: tuple[int, ...], steps: int = 16, encoding: str = "current",
                 neuron: NeuronConfig = NeuronConfig(), input_gain: float = 4.0) -> None:
        super().__init__()
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list >= 2 positive layer sizes, got {sizes}")
        check_run_options(steps, encoding, input_gain)
        self.sizes, self.steps, self.encoding, self.neuron = sizes, steps, encoding, neuron
        self.input_gain = float(input_gain)
        self.linears = nn.ModuleList(nn.Linear(a, b, bias=False)
                                     for a, b in zip(sizes[:-1], sizes[1:]))
        p = neuron.lif_parameters()
        self.cells = nn.ModuleList(LIFCell(p, dt=neuron.dt) for _ in sizes[1:])

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Input per time step, ``(T, B, n_in)``: ``input_gain * x`` repeated, or Bernoulli
        spikes with probability ``x``."""
        return encode_steps(x, self.steps, self.encoding, self.input_gain, generator)

    def step(self, x_t: torch.Tensor, states: list | None = None) -> tuple[torch.Tensor, list]:
        """Advance every layer by one time step.

        Args:
            x_t: input current or spikes at this step, ``(B, n_in)``.
            states: per-layer Norse ``LIFFeedForwardState`` (``None`` = rest).

        Returns:
            ``(z, states)``: output spikes ``(B, n_out)`` and the new states.
        """
        states = list(states) if states is not None else [None] * len(self.cells)
        z = x_t
        for k, (linear, cell) in enumerate(zip(self.linears, self.cells)):
            z, states[k] = cell(linear(z), states[k])
        return z, states

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode ``x`` ``(B, n_in)`` and run it; return output spikes ``(T, B, n_out)``.

        With constant-current encoding the first layer's synaptic input is the same at every
        step, so it is computed once (the same values as :meth:`run_encoded`, 1/T the cost).
        """
        if self.encoding != "current":
            return self.run_encoded(self.encode(x, generator))
        first = self.linears[0](x * self.input_gain)
        states, out = [None] * len(self.cells), []
        for _ in range(self.steps):
            z, states[0] = self.cells[0](first, states[0])
            for k in range(1, len(self.cells)):
                z, states[k] = self.cells[k](self.linears[k](z), states[k])
            out.append(z)
        return torch.stack(out)

    def run_encoded(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run already-encoded input ``(T, B, n_in)``; return output spikes ``(T, B, n_out)``."""
        return run_steps(self.step, inputs)


def run_steps(step, inputs: torch.Tensor) -> torch.Tensor:
    """Feed ``inputs`` ``(T, B, ...)`` one step at a time through ``step(x_t, states) ->
    (spikes, states)`` starting at rest; return the stacked output spikes ``(T, B, n_out)``."""
    states, out = None, []
    for x_t in inputs:
        z, states = step(x_t, states)
        out.append(z)
    return torch.stack(out)


def spike_count_logits(spikes: torch.Tensor) -> torch.Tensor:
    """Spike counts per output neuron, ``(T, B, C) -> (B, C)``; the argmax is the class."""
    return spikes.sum(0)


def predict(counts: torch.Tensor) -> torch.Tensor:
    """Class per sample from spike counts ``(B, C)``; ties go to the lowest index."""
    return counts.argmax(-1)
