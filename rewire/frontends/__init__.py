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


def lower(source, example_input=None, **options) -> Network:
    """Lower ``source`` to an IR :class:`~rewire.ir.network.Network`.

    Args:
        source: an IR network (returned as is), a ``torch.nn.Module``, a ``nir.NIRGraph``, or
            the path of a ``.nir`` file.
        example_input: an input the module's forward takes (torch modules only; see
            :func:`rewire.frontends.norse.lower`).
        options: passed to the frontend (:func:`rewire.frontends.norse.lower`,
            :func:`rewire.frontends.nir.lower`).

    Raises:
        TypeError: a source of no known kind.
        rewire.errors.LoweringError: what the frontend cannot lower, named.
    """
    if isinstance(source, Network):
        return source
    import torch

    if isinstance(source, torch.nn.Module):
        from rewire.frontends import norse

        return norse.lower(source, example_input, **options)
    import nir

    if example_input is not None:
        raise TypeError("example_input is for torch modules only")
    if isinstance(source, (nir.NIRGraph, str, Path)):
        from rewire.frontends import nir as nir_frontend

        return nir_frontend.lower(source, **options)
    raise TypeError(f"cannot lower a {type(source).__name__}: give an nn.Module, a "
                    f"nir.NIRGraph, a .nir path or a rewire.ir.Network")
