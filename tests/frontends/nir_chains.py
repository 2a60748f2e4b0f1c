"""Small NIR graphs for the NIR frontend's tests (a chain ``Input -> nodes -> Output`` and
neuron nodes written with rewire's conventions)."""

from __future__ import annotations

import nir
import numpy as np
import torch


def _graph(*chain, metadata=None, edges=None):
    """A NIR chain ``Input -> nodes -> Output`` from ``(name, node)`` pairs."""
    first = chain[0][1]
    n_in = (first.weight.shape[1] if hasattr(first, "weight") and first.weight.ndim == 2
            else 4)
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}), **dict(chain),
             "output": nir.Output(output_type={"output": np.array([])})}
    names = ["input", *[n for n, _ in chain], "output"]
    return nir.NIRGraph(nodes=nodes, edges=edges or list(zip(names, names[1:])),
                        metadata=dict(metadata or {}), type_check=False)


def _cuba(n, tau_syn=5e-3, tau_mem=1e-2, dt=1e-3, v_th=1.0, **kw):
    """rewire's convention: r = tau_mem/dt, w_in = tau_syn/dt, voltages * tau_mem/dt."""
    full = lambda v: np.full(n, float(v))  # noqa: E731
    fields = dict(tau_syn=full(tau_syn), tau_mem=full(tau_mem), r=full(tau_mem / dt),
                  v_leak=full(0), v_threshold=full(v_th * tau_mem / dt), v_reset=full(0),
                  w_in=full(tau_syn / dt))
    fields.update(kw)
    return nir.CubaLIF(**fields)


def _lif(n, tau=1e-2, dt=1e-3, v_th=1.0, **kw):
    fields = dict(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n),
                  v_threshold=np.full(n, v_th * tau / dt), v_reset=np.zeros(n))
    fields.update(kw)
    return nir.LIF(**fields)


def _linear(n_out, n_in, seed=0):
    return nir.Linear(weight=np.random.default_rng(seed).normal(size=(n_out, n_in)))


def _conv_chain(conv=None, pool=None):
    conv = conv or nir.Conv2d(input_shape=(6, 6), weight=np.ones((2, 1, 3, 3)), stride=1,
                              padding=0, dilation=1, groups=1, bias=np.zeros(2))
    chain = [("conv", conv), ("lif1", _cuba((2, 4, 4)))]
    if pool is not None:
        chain += [("pool", pool), ("lif2", _cuba((2, 2, 2)))]
    g = _graph(*chain)
    g.nodes["input"] = nir.Input(input_type={"input": np.array([1, 6, 6])})
    return g


def _norse_model(cells, seed=0):
    import norse.torch as norse

    torch.manual_seed(seed)
    m = norse.SequentialState(torch.nn.Linear(12, 20, bias=False), cells[0],
                              torch.nn.Linear(20, 5, bias=False), cells[1])
    with torch.no_grad():
        m[0].weight.mul_(8)
        m[2].weight.mul_(8)
    return m


def _norse_cells():
    import norse.torch as norse

    return {"lif": (norse.LIFCell(), norse.LIFCell()),
            "box": (norse.LIFBoxCell(), norse.LIBoxCell()),
            "iaf": (norse.IAFCell(), norse.LIFCell(norse.LIFParameters(
                tau_mem_inv=torch.tensor(50.0), v_th=torch.tensor(0.5))))}
