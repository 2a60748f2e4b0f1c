r"""The budget controller: steers GradR's prior :math:`\alpha` (Chen et al., IJCAI 2021,
arXiv 2105.04916, Eq. 11) and every neuron's fan-in/fan-out so that the connectivity follows
a cubic schedule (Zhu & Gupta 2017, arXiv 1710.01878, Eq. 1) down to the budget.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rewire.training.counting import (_fan_out_matrices, cap_neurons, connected_synapses,
                                      keep_strongest, max_fan_in, max_fan_out, readout_floor)
from rewire.training.gradr import hidden_params, neuron_groups

__all__ = ["BudgetController", "SHORT_RUN_MAX_LR", "SHORT_RUN_STEPS"]

#: Ramp length (optimizer steps) under which :func:`rewire.training.train.train` runs the
#: controller's short-run schedule (``short_below``): the prior moves :math:`\theta` by at most
#: ``lr * alpha_max`` per step (2e-3 at the defaults), so a ramp of fewer steps cannot take a
#: typical initial :math:`\theta` (0.06 for 64 inputs) to zero by steering alone and the
#: controller, pinned at ``alpha_max``, cuts the weakest layer (the readout) until it is
#: silent. Measured on the digits (64-256-10, 10 %): benchmarks/results/short_runs.md.
SHORT_RUN_STEPS = 400
#: Largest learning rate at which :func:`rewire.training.train.train` picks the short-run
#: schedule by itself: it was measured at Adam's lr 1e-3 (``TrainConfig``'s default), and at
#: larger rates it lost to the steered schedule (a LIFRecurrentCell model on spike trains, lr
#: 2e-2, 8 epochs: 56.7 % against 91.4 %; the conv job's defaults, lr 1e-2, 12 epochs: 60.8 %
#: against 82 %). ``TrainConfig(controller={"short_below": ...})`` sets it explicitly.
SHORT_RUN_MAX_LR = 1e-3


class BudgetController:
    r"""Steers GradR's :math:`\alpha` so that connectivity reaches the budget by a deadline.

    Target schedule (cubic, Zhu & Gupta 2017, Eq. 1), with :math:`c_0` the connectivity at the
    first call, :math:`c^* = ` ``margin`` :math:`\times` budget connectivity and
    :math:`t_\mathrm{end} = ` ``ramp`` :math:`\times` ``total_steps``:

    .. math::  c(t) = c^* + (c_0 - c^*)\,(1 - \min(1, t / t_\mathrm{end}))^3

    After each optimizer step a PI controller on the log error :math:`e_t = \ln(c_t / c(t))`
    sets :math:`\alpha_t = \alpha_I \exp(K_p e_t)` with the integral part
    :math:`\alpha_I \leftarrow \alpha_I \exp(K_i e_t)`, clipped to ``[alpha_min, alpha_max]``:
    too many connections raise the pull, too few relax it, so pruned synapses can regrow. (The
    prior sets the *rate* at which :math:`\theta` falls, so a pure integral controller would
    oscillate; the proportional term damps it.) The controller writes ``alpha`` into every param group
    of the optimizer whose ``alpha`` is non-zero.

    Per-neuron limits are steered on the same timeline, not cut at the end: with a fan-in
    limit :math:`F` (``budget.max_fan_in``) each neuron may keep at most

    .. math::  f(t) = F + (f_0 - F)\,(1 - \min(1, t / t_\mathrm{end}))^3

    connected inputs, :math:`f_0` the largest fan-in at the first call (the same cubic
    schedule, per row); after each step the weakest :math:`\theta` of a neuron over
    :math:`f(t)` are disconnected (:func:`cap_neurons`; they keep their sign and may regrow,
    competing for the neuron's :math:`f(t)` places). Fan-out (``budget.max_fan_out``, per
    column) is steered the same way. By the end of the ramp every neuron is within its limit,
    so the final projection removes no synapse for fan-in or fan-out, and the network has the
    rest of the run to recover from the pruning.

    Args:
        optimizer: a :class:`rewire.training.gradr.GradR`.
        model: the model whose GradR layers are counted.
        budget: the :class:`rewire.training.budget.SynapseBudget` to reach.
        total_steps: optimizer steps in the whole run.
        ramp: fraction of the run by which the budget is reached (default 0.8; the rest
            trains at the final connectivity).
        margin: aim at ``margin`` times the budget (default 1: the budget itself; the
            projection trims the few synapses a run may end over it).
        kp: proportional gain :math:`K_p` (default 2).
        ki: integral gain over the whole run; per step :math:`K_i` = ``ki / total_steps``
            (default 12), so short and long runs are steered alike. The defaults are tuned
            on the digits main job (60 epochs): seeds 0, 1, 2 gave 95.56 / 96.39 / 95.83 %
            at 9.83–9.86 % connectivity (10 % budget, projection removed 0), where the
            earlier ``ramp=0.7, margin=0.95, off_below=False`` gave 95.00 / 95.28 / 95.56 %
            at 7.25–7.55 %. Short MNIST runs hold the budget better with stronger gains
            (``kp=4, ki=40``, used by ``benchmarks/connectivity.py``).
        alpha_min, alpha_max: bounds on :math:`\alpha`.
        off_below: (default on) while the connectivity is under the schedule, use
            ``alpha_min`` (the prior is all but off) instead of the PI value; the integral
            part still relaxes. Pruning
            is fast and regrowth slow (a pruned :math:`\theta` keeps falling towards
            :math:`\mu < 0`), so a plain PI controller that overshoots the target stays under
            the budget for the rest of the run (2 % on MNIST: 1.79 % at the end); with
            ``off_below`` the run lands on the target and, once there, fine-tunes without the
            prior's shrinkage.
        freeze: after the ramp, switch the prior off (:math:`\alpha = 0`) and freeze the
            connectivity pattern: the synapses connected at the end of the ramp keep training
            (and may drop out and come back), every other synapse is held at
            :math:`\theta \le 0`, so the connectivity can only stay at or under the target.
            This is the fine-tuning phase that gradual magnitude pruning also has (Zhu & Gupta
            2017); without it the prior keeps shrinking every weight to the end.

        floor: synapses every output neuron keeps (:func:`readout_floor`, at most the budget's
            share ``max_synapses // outputs`` and the fan-in limit; 0 = none). In the
            steered schedule it acts only when an output neuron falls under ``floor`` inputs
            (the 60-epoch main job never does, so its files are unchanged).
        short_below: a run whose ramp (``ramp * total_steps``) is shorter than this many
            steps takes the *short-run schedule* (default 0: never; ``train`` passes
            :data:`SHORT_RUN_STEPS`): no prior (:math:`\alpha = 0`); dense learning for the
            first ``dense`` of the run (at least ``min(min_dense, total_steps // 3)`` steps);
            then the connectivity follows the cubic schedule to the budget by ``short_ramp``
            of the run, each step cutting every matrix to its share of the scheduled count
            (:func:`keep_strongest`, gradual magnitude pruning on :math:`\theta`, Zhu & Gupta
            2017, Eq. 1) with the readout floor kept first; then the pattern is frozen
            (as ``freeze``) and the rest of the run fine-tunes it.
        dense, short_ramp, min_dense: the short-run schedule's fractions of the run and its
            minimum of dense steps (defaults 0.1, 0.7, 0: the cut is spread over 60 % of the
            run and the last 30 % fine-tunes the final pattern). Measured on the digits
            (64-256-10, 10 %, benchmarks/results/short_runs.md): 3 epochs, seeds 0-4, 89.4 %
            mean and 88.1 % worst, against 85.6 % / 82.8 % (seeds 0-2) with the earlier
            0.4, 0.7, 30 (dense for 40 % of the run left 20 steps of a 3-epoch run for the
            whole cut); a longer
            dense phase (0.2, 0.33) or an earlier or later end of the ramp (0.6, 0.8) scored
            lower at 3 epochs.
        rescale: (short-run schedule) each cut scales a neuron's kept :math:`\theta` so its
            summed input weight is what it was before the cut (:func:`keep_strongest`), and the
            learning rate follows the mean connected :math:`\theta`; without the rescaling a
            neuron left with a tenth of its inputs falls silent (digits, 3 epochs: 23 %
            against 69 %; with the learning rate following, 86 %; both with the earlier
            dense 0.4).

    Raises:
        ValueError: ``total_steps < 1``, ``ramp`` or ``margin`` outside (0, 1], ``floor``
            or ``short_below`` negative, or not ``0 <= dense < short_ramp <= 1``.
    """

    def __init__(self, optimizer, model: nn.Module, budget, total_steps: int,
                 ramp: float = 0.8, margin: float = 1.0, kp: float = 2.0, ki: float = 12.0,
                 alpha_min: float = 1e-3, alpha_max: float = 2.0,
                 off_below: bool = True, freeze: bool = False, floor: int = 4,
                 short_below: int = 0, dense: float = 0.1, short_ramp: float = 0.7,
                 min_dense: int = 0, rescale: bool = True) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if not (0 < ramp <= 1 and 0 < margin <= 1):
            raise ValueError(f"ramp and margin must be in (0, 1], got {ramp}, {margin}")
        if floor < 0 or short_below < 0 or min_dense < 0:
            raise ValueError(f"floor, short_below and min_dense must be >= 0, got {floor}, "
                             f"{short_below}, {min_dense}")
        if not 0 <= dense < short_ramp <= 1:
            raise ValueError(f"need 0 <= dense < short_ramp <= 1, got {dense}, {short_ramp}")
        self.optimizer, self.model, self.budget = optimizer, model, budget
        self.total_steps, self.ramp, self.kp, self.ki = total_steps, ramp, kp, ki / total_steps
        self.alpha_min, self.alpha_max = alpha_min, alpha_max
        self.off_below, self.freeze = bool(off_below), bool(freeze)
        self.groups = [g for g in optimizer.param_groups if g["alpha"] > 0]
        self.frozen: list[torch.Tensor] | None = None
        self.target = margin * budget.connectivity
        self.start: float | None = None
        self.t = 0
        self.alpha_integral = self.alpha
        self.fan_in_groups = neuron_groups(model) if budget.max_fan_in else []
        self.fan_out_mats = (_fan_out_matrices(model, budget.fan_out_skip_last)
                             if budget.max_fan_out else [])
        if any(m.dim() != 2 for m in self.fan_out_mats):
            raise ValueError("fan-out steering (budget.max_fan_out) supports dense layers "
                             "only: a convolution is fed by chip neurons")
        self.fan_start: tuple[int, int] | None = None
        self.capped = 0  # synapses the per-neuron schedules disconnected
        n_out = neuron_groups(model)[-1][0].shape[0]
        self.floor = min(floor, budget.max_synapses // n_out, budget.max_fan_in or floor)
        self.revived = 0  # floor synapses reconnected
        self.short = ramp * total_steps < short_below
        self.rescale = bool(rescale)
        self.scale_start: tuple[float, list[float]] | None = None
        self.dense_steps = max(round(dense * total_steps), min(min_dense, total_steps // 3))
        self.ramp_end = max(self.dense_steps + 1, round(short_ramp * total_steps))

    def schedule(self, t: int) -> float:
        """Target connectivity after ``t`` optimizer steps."""
        start = self.start if self.start is not None else 1.0
        frac = self._frac(t)
        return self.target + (max(start, self.target) - self.target) * (1.0 - frac) ** 3

    def _frac(self, t: int) -> float:
        """How far along its ramp the schedule is after ``t`` steps, in [0, 1]."""
        if self.short:
            return min(1.0, max(0, t - self.dense_steps)
                       / max(1, self.ramp_end - self.dense_steps))
        return min(1.0, t / max(1.0, self.ramp * self.total_steps))

    @property
    def alpha(self) -> float:
        """Current :math:`\\alpha` (of the first group with a prior)."""
        return self.groups[0]["alpha"]

    def fan_schedule(self, t: int, limit: int, start: int) -> int:
        """Largest fan-in (or fan-out) allowed after ``t`` steps for a final ``limit``."""
        frac = self._frac(t)
        return limit + math.floor((max(start, limit) - limit) * (1.0 - frac) ** 3)

    @torch.no_grad()
    def _cap_fans(self) -> None:
        """Disconnect the weakest inputs (outputs) of every neuron over its schedule."""
        if not (self.fan_in_groups or self.fan_out_mats):
            return
        if self.fan_start is None:
            self.fan_start = (max_fan_in(self.model),
                              max_fan_out(self.model, self.budget.fan_out_skip_last))
        if self.fan_in_groups:
            k = self.fan_schedule(self.t, self.budget.max_fan_in, self.fan_start[0])
            self.capped += sum(cap_neurons(g, k, 0) for g in self.fan_in_groups)
        if self.fan_out_mats:
            k = self.fan_schedule(self.t, self.budget.max_fan_out, self.fan_start[1])
            self.capped += sum(cap_neurons([m], k, 1) for m in self.fan_out_mats)

    def step(self) -> float:
        """Update :math:`\\alpha` (and cap every neuron's fan-in and fan-out to its schedule)
        after one optimizer step; return the new :math:`\\alpha`."""
        if self.short:
            return self._short_step()
        alpha = self._steer()
        self._keep_floor()
        return alpha

    @torch.no_grad()
    def _keep_floor(self) -> None:
        """Where an output neuron has fewer than ``floor`` inputs, :func:`readout_floor`
        (the floor joins a frozen pattern); nothing otherwise."""
        readout = neuron_groups(self.model)[-1][0]
        if not self.floor or int((readout > 0).flatten(1).sum(1).min()) >= self.floor:
            return
        mask, revived = readout_floor(self.model, self.floor)
        self.revived += revived
        if self.frozen is not None:
            offset = 0
            for allowed in self.frozen:
                allowed |= mask[offset:offset + allowed.numel()].view(allowed.shape)
                offset += allowed.numel()

    def _steer(self) -> float:
        """The steered schedule's step (see the class docs)."""
        if self.freeze and self.t >= self.ramp * self.total_steps:
            alpha = self._hold_frozen()
            self._cap_fans()
            return alpha
        self._cap_fans()
        conn = connected_synapses(self.model) / self.budget.total_synapses
        if self.start is None:
            self.start = conn
        self.t += 1
        error = math.log(max(conn, 1e-9) / self.schedule(self.t))
        self.alpha_integral = self._clip(self.alpha_integral * math.exp(self.ki * error))
        alpha = self._clip(self.alpha_integral * math.exp(self.kp * error))
        if self.off_below and error < 0:
            alpha = self.alpha_min
        for group in self.groups:
            group["alpha"] = alpha
        return alpha

    @torch.no_grad()
    def _hold_frozen(self) -> float:
        r"""After the ramp with ``freeze``: prior off, only the synapses connected at the end of
        the ramp may be connected (the others are held at :math:`\theta \le 0`)."""
        self.t += 1
        thetas = hidden_params(self.model)
        if self.frozen is None:
            self.frozen = [t > 0 for t in thetas]
            for group in self.groups:
                group["alpha"] = 0.0
        for theta, allowed in zip(thetas, self.frozen):
            theta.masked_fill_(~allowed & (theta > 0), 0.0)
        return 0.0

    @torch.no_grad()
    def _short_step(self) -> float:
        """The short-run schedule's step (``short_below``, see the class docs)."""
        if self.start is None:
            self.start = connected_synapses(self.model) / self.budget.total_synapses
            for group in self.groups:
                group["alpha"] = 0.0
        if self.t >= self.ramp_end:
            self._hold_frozen()
            self._keep_floor()
            return 0.0
        self.t += 1
        if self.t <= self.dense_steps:
            return 0.0
        self._cap_fans()
        protect, revived = readout_floor(self.model, self.floor)
        self.revived += revived
        count = math.floor(self.schedule(self.t) * self.budget.total_synapses)
        if self.t >= self.ramp_end:
            count = min(count, self.budget.max_synapses)
        self.capped += keep_strongest(self.model, count, protect, self.rescale)
        if self.rescale:
            self._follow_scale()
        if self.t >= self.ramp_end:  # the pattern the rest of the run fine-tunes
            self.frozen = [theta > 0 for theta in hidden_params(self.model)]
        return 0.0

    @torch.no_grad()
    def _follow_scale(self) -> None:
        """Scale the learning rate of the pruned groups with the mean connected
        :math:`\\theta` (relative to its value when the cuts began): Adam's step is absolute,
        so as the cuts concentrate a neuron's input weight on fewer, larger synapses the same
        ``lr`` would be a smaller relative step (3 epochs on the digits: 74 % at ``lr`` held,
        see docs/training.md)."""
        thetas = [t[t > 0] for t in hidden_params(self.model)]
        mean = float(torch.cat(thetas).mean()) if sum(t.numel() for t in thetas) else 0.0
        if self.scale_start is None:
            self.scale_start = (mean, [g["lr"] for g in self.groups])
        if mean > 0 and self.scale_start[0] > 0:
            for group, lr in zip(self.groups, self.scale_start[1]):
                group["lr"] = lr * mean / self.scale_start[0]

    def _clip(self, alpha: float) -> float:
        return min(self.alpha_max, max(self.alpha_min, alpha))
