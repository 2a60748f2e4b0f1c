"""Frontends: lower a network written in some framework to the IR (:mod:`rewire.ir`).

* :mod:`rewire.frontends.norse`: a Norse / torch ``nn.Module`` (containers by their children,
  any other module by one recorded run of its forward);
* :mod:`rewire.frontends.nir`: a NIR graph (``nir.NIRGraph`` or a ``.nir`` file) written by
  rewire, snnTorch, Norse, rockpool, ...

and the way back, :mod:`rewire.frontends.torch_module` (an IR network as a runnable torch
module). :mod:`rewire.frontends.pooling` holds the torch building block the Norse frontend
lowers as it is (``SumPool2d``); the frontends import nothing from the compiler, the writers,
training or the job.

:func:`lower` picks the frontend by the argument's type.
"""

from __future__ import annotations

from pathlib import Path

from rewire.ir.network import Network

__all__ = ["lower"]


def lower(model, /, example_input=None, **options) -> Network:
    """Lower ``model`` to an IR :class:`~rewire.ir.network.Network`.

    ``model`` is positional-only, so every option of the frontends, ``source=`` (the NIR
    frontend's framework) included, passes through by keyword, here and through
    ``rewire.compile``.

    Args:
        model: an IR network (returned as is), a ``torch.nn.Module``, a ``nir.NIRGraph``, or
            the path of a ``.nir`` file.
        example_input: an input the module's forward takes (torch modules only; see
            :func:`rewire.frontends.norse.lower`).
        options: the frontend's keyword options: for a torch module ``steps``, ``encoding``,
            ``input_gain``, ``input_shape`` (:func:`rewire.frontends.norse.lower`); for a NIR
            graph or file ``dt``, ``steps``, ``encoding``, ``input_gain``, ``source``
            (:func:`rewire.frontends.nir.lower`). An IR network takes none (it carries its
            own run options).

    Returns:
        The IR network.

    Raises:
        TypeError: a model of no known kind, or an option its frontend does not take (named,
            with the options it takes).
        ValueError: options given with an IR network (they would be ignored).
        rewire.errors.LoweringError: what the frontend cannot lower, named.
    """
    if isinstance(model, Network):
        given = sorted(options) + (["example_input"] if example_input is not None else [])
        if given:
            raise ValueError(f"{', '.join(given)}: an IR Network carries its own run options "
                             f"and is not lowered again; build it with them (or pass the "
                             f"source model)")
        return model
    import torch

    if isinstance(model, torch.nn.Module):
        from rewire.frontends import norse

        _check_options(norse.lower, options, "a torch module")
        return norse.lower(model, example_input, **options)
    import nir

    if isinstance(model, (nir.NIRGraph, str, Path)):
        if example_input is not None:
            raise TypeError("example_input is for torch modules only; a NIR graph takes dt, "
                            "steps, encoding, input_gain and source")
        from rewire.frontends import nir as nir_frontend

        _check_options(nir_frontend.lower, options, "a NIR graph")
        return nir_frontend.lower(model, **options)
    raise TypeError(f"cannot lower a {type(model).__name__}: give an nn.Module, a "
                    f"nir.NIRGraph, a .nir path or a rewire.ir.Network")


def _check_options(frontend, options: dict, what: str) -> None:
    """Refuse an option ``frontend`` has no keyword for, naming it and those it has.

    Raises:
        TypeError: the first unknown option.
    """
    import inspect

    known = [p.name for p in inspect.signature(frontend).parameters.values()
             if p.kind is inspect.Parameter.KEYWORD_ONLY]
    for name in options:
        if name not in known:
            raise TypeError(f"{name}: not an option for {what}; its frontend "
                            f"({frontend.__module__}.lower) takes {', '.join(known)}")
