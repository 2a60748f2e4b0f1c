r"""Training methods as strategy objects: GradR (steered or the paper's fixed prior), Deep R and
gradual magnitude pruning, each with one interface, so that the loop of
:func:`rewire.training.train.train` has no branch on the method.

Every method owns its optimizer and answers the same questions:

* ``optimizer``: what the loop calls ``zero_grad``/``step`` on;
* :meth:`~Method.step`: called after each optimizer step (the budget controller, the pruning
  schedule);
* :meth:`~Method.connected`: connected synapses now (count);
* :meth:`~Method.alpha`: the prior penalty now (0 where the method has none);
* :meth:`~Method.finish`: called once after the last epoch, leaving the model
  GradR-parametrized (:func:`rewire.training.gradr.apply_gradr`);
* ``projects``: whether :func:`rewire.training.budget.project_to_budget` runs at the end.

Sources: GradR, Chen et al., IJCAI 2021 (arXiv 2105.04916), Eqs. 5, 7, 11; Deep R, Bellec et
al., ICLR 2018 (arXiv 1711.05136), Algorithm 1; gradual magnitude pruning, Zhu & Gupta 2017
(arXiv 1710.01878), Eq. 1.
"""

from __future__ import annotations

import torch
from torch import nn

from rewire.training.baselines import DeepR, MagnitudePruner, init_deep_r
from rewire.training.controller import SHORT_RUN_MAX_LR, SHORT_RUN_STEPS, BudgetController
from rewire.training.counting import connected_synapses
from rewire.training.gradr import GradR, GradRSGD, apply_gradr, hidden_params, prunable_layers

__all__ = ["Method", "GradRMethod", "FixedGradRMethod", "DeepRMethod", "MagnitudeMethod",
           "METHOD_TYPES", "make_method"]


class Method:
    """The interface every training method implements (see the module docstring).

    Attributes:
        name: the :data:`METHOD_TYPES` key.
        model: the model being trained (changed in place).
        optimizer: the ``torch.optim.Optimizer`` of the run.
        projects: whether the run ends with the projection onto the budget.
        needs_fresh_model: the method refuses a model already passed through ``apply_gradr``.
    """

    name = ""
    projects = True
    needs_fresh_model = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.optimizer: torch.optim.Optimizer | None = None

    def step(self) -> None:
        """After one optimizer step (nothing by default)."""

    def connected(self) -> int:
        """Connected synapses (``theta > 0``, or non-zero weights while pruning by magnitude)."""
        return connected_synapses(self.model)

    def alpha(self) -> float:
        """The prior penalty of the first parameter group (0 where there is none)."""
        return self.optimizer.param_groups[0].get("alpha", 0.0)

    def finish(self) -> None:
        """After the last epoch (nothing by default: the model is already parametrized)."""


def _gradr_optimizer(model: nn.Module, thetas: list[nn.Parameter], config,
                     alpha: float) -> torch.optim.Optimizer:
    """GradR (Adam or SGD) on ``thetas``; every other parameter (biases, norms) in a group
    with ``alpha = 0`` (never pruned)."""
    ids = {id(t) for t in thetas}
    groups = [{"params": thetas}]
    others = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    if others:
        groups.append({"params": others, "alpha": 0.0})
    if config.optimizer == "sgd":
        return GradRSGD(groups, lr=config.lr, alpha=alpha, sparsity=config.sparsity,
                        momentum=config.momentum)
    return GradR(groups, lr=config.lr, alpha=alpha, sparsity=config.sparsity)


class GradRMethod(Method):
    """GradR (Chen et al. 2021) steered to the budget (``"gradr"``): Adam/SGD on
    :math:`\\theta` with the Laplace prior, the
    :class:`~rewire.training.controller.BudgetController` adapting :math:`\\alpha` and the fan
    limits, and the projection at the end. A model already passed through :func:`apply_gradr`
    keeps its :math:`\\theta`.
    """

    name = "gradr"
    steered = True

    def __init__(self, model: nn.Module, budget, config, total_steps: int,
                 generator: torch.Generator) -> None:
        super().__init__(model)
        self.projects = self.steered
        parametrized = any(True for _ in prunable_layers(model))
        thetas = hidden_params(model) if parametrized else apply_gradr(model)
        self.optimizer = _gradr_optimizer(model, thetas, config, config.alpha)
        short = SHORT_RUN_STEPS if config.lr <= SHORT_RUN_MAX_LR else 0  # where it was measured
        options = {"short_below": short, **config.controller}
        self.controller = BudgetController(self.optimizer, model, budget, total_steps,
                                           **options) if self.steered else None

    def step(self) -> None:
        if self.controller is not None:
            self.controller.step()

    def alpha(self) -> float:
        return self.controller.alpha if self.controller is not None else super().alpha()


class FixedGradRMethod(GradRMethod):
    """The paper's GradR (``"gradr-fixed"``): a fixed :math:`\\alpha`, no controller and no
    projection, so the budget may be missed."""

    name = "gradr-fixed"
    steered = False


class DeepRMethod(Method):
    """Deep R (Bellec et al., ICLR 2018): exactly the budget's synapses active at every step
    (:class:`~rewire.training.baselines.DeepR`, L1 penalty ``config.deep_r_alpha``, noise
    temperature ``config.deep_r_temperature``)."""

    name = "deep-r"
    needs_fresh_model = True

    def __init__(self, model: nn.Module, budget, config, total_steps: int,
                 generator: torch.Generator) -> None:
        super().__init__(model)
        thetas = init_deep_r(model, budget.max_synapses / budget.total_synapses, generator)
        self.optimizer = DeepR(thetas, lr=config.lr, alpha=config.deep_r_alpha,
                               temperature=config.deep_r_temperature, generator=generator)


class MagnitudeMethod(Method):
    """Gradual magnitude pruning (Zhu & Gupta 2017) to the budget's synapses with Adam
    (:class:`~rewire.training.baselines.MagnitudePruner`); at the end the pruned weights become
    GradR's disconnected synapses (:math:`\\theta = |w|`)."""

    name = "magnitude"
    needs_fresh_model = True

    def __init__(self, model: nn.Module, budget, config, total_steps: int,
                 generator: torch.Generator) -> None:
        super().__init__(model)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.pruner = MagnitudePruner(model, budget.max_synapses / budget.total_synapses,
                                      total_steps)

    def step(self) -> None:
        self.pruner.step()

    def connected(self) -> int:
        return self.pruner.connected()

    def finish(self) -> None:
        apply_gradr(self.model)  # theta = |w|: the pruned (zero) weights are the disconnected


#: ``TrainConfig.method`` -> the :class:`Method` class, built as
#: ``cls(model, budget, config, total_steps, generator)``.
METHOD_TYPES: dict[str, type[Method]] = {
    "gradr": GradRMethod,
    "gradr-fixed": FixedGradRMethod,
    "deep-r": DeepRMethod,
    "magnitude": MagnitudeMethod,
}


def make_method(name: str, model: nn.Module, budget, config, total_steps: int,
                generator: torch.Generator) -> Method:
    """The :class:`Method` ``name`` for one run.

    Args:
        name: a :data:`METHOD_TYPES` key.
        model: the model (fresh, or GradR-parametrized for the GradR methods).
        budget: the :class:`rewire.training.budget.SynapseBudget` to end inside.
        config: the :class:`rewire.training.train.TrainConfig`.
        total_steps: optimizer steps in the whole run.
        generator: seeds Deep R's initial connections and re-activations.

    Raises:
        ValueError: an unknown ``name``.
    """
    if name not in METHOD_TYPES:
        raise ValueError(f"method must be one of {tuple(METHOD_TYPES)}, got {name!r}")
    return METHOD_TYPES[name](model, budget, config, total_steps, generator)
