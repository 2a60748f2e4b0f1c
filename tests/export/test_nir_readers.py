"""rewire's NIR file of each neuron kind run by the readers of other libraries (Norse 1.1
``norse.torch.from_nir``, snnTorch 1.0 ``snntorch.import_nir.import_from_nir``, rockpool 3.1
``rockpool.nn.modules.from_nir``; nir 1.0.8, nirtorch 2.6) against rewire's float IR
(``rewire.ir.dynamics``) on the same spikes. What a reader gets wrong is pinned as that
reader's bug, with the figures (docs/formats.md, "NIR readers").

Each net is Dense(10 -> 24) -> neuron -> Dense(24 -> 6) -> neuron (or a leaky readout), rate
input (30 % spikes), 40 steps, 16 samples: 3,840 output values, at dt = 1e-4 s (the step
snnTorch's importer hard-codes).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import warnings

import nir
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rewire.export import nir_graph
from rewire.ir import dynamics, nodes
from rewire.ir.network import Network

warnings.filterwarnings("ignore", category=DeprecationWarning, module="nirtorch")

T, B, DT = 40, 16, 1e-4
NEURONS = {"CubaLIF": nodes.CubaLIF(2000.0, 1000.0, dt=DT), "LIF": nodes.LIF(1000.0, dt=DT),
           "IF": nodes.IF(dt=DT)}
READOUTS = {"CubaLI": nodes.CubaLI(2000.0, 1000.0, dt=DT), "LI": nodes.LI(1000.0, dt=DT)}
SPIKING = list(NEURONS)


def network(kind: str, readout: str | None = None, seed: int = 0, bias: bool = False,
            dt: float = DT, **spike) -> Network:
    """The test net with ``kind`` neurons (at ``dt``, with ``spike`` fields), a ``readout``
    last layer if given, biases on both Dense nodes if ``bias``."""
    rng = np.random.default_rng(seed)
    neuron = dataclasses.replace(NEURONS[kind], dt=dt, **spike)
    if dt != DT and hasattr(neuron, "tau_mem_inv"):  # same decay per step at every dt
        neuron = dataclasses.replace(neuron, tau_mem_inv=neuron.tau_mem_inv * DT / dt)
        if hasattr(neuron, "tau_syn_inv"):
            neuron = dataclasses.replace(neuron, tau_syn_inv=neuron.tau_syn_inv * DT / dt)
    sd = 3.0 if kind == "LIF" else 0.8  # LIF: input straight into v, 1/10 of it per step
    shapes = ((24, 10), (6, 24))
    dense = [nodes.Dense(rng.normal(0.3 - 0.1 * k, sd, s),
                         bias=rng.normal(0, 0.3, s[0]).astype(np.float32) if bias else None)
             for k, s in enumerate(shapes)]
    last = dataclasses.replace(READOUTS[readout], dt=dt) if readout else neuron
    return Network(nodes=(dense[0], neuron, dense[1], last), input_shape=(10,), steps=T,
                   encoding="rate")


def spikes_in(seed: int = 1) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.as_tensor((rng.random((T, B, 10)) < 0.3).astype(np.float32))


def ours(ir: Network, x: torch.Tensor) -> np.ndarray:
    return dynamics.run(ir, x)[-1].numpy()


def norse_run(graph: nir.NIRGraph, x: torch.Tensor, **options) -> np.ndarray:
    import norse.torch as norse

    logging.disable(logging.WARNING)  # Norse logs r != 1 on CubaLIF nodes
    try:
        module = norse.from_nir(graph, dt=float(graph.metadata["dt"]), **options)
    finally:
        logging.disable(logging.NOTSET)
    state, out = None, []
    with torch.no_grad():
        for x_t in x:
            z, state = module(x_t, state)
            out.append(z.numpy())
    return np.stack(out)


def snntorch_run(graph: nir.NIRGraph, x: torch.Tensor) -> np.ndarray:
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):  # it prints its threshold scaling
        module = import_from_nir(copy.deepcopy(graph))
    with torch.no_grad():
        return np.stack([module(x_t)[0].numpy() for x_t in x])


def rockpool_run(graph: nir.NIRGraph, x: torch.Tensor):
    pytest.importorskip("rockpool")
    from rockpool.nn.modules import from_nir

    module = from_nir(copy.deepcopy(graph))
    with torch.no_grad():
        out = module(x.permute(1, 0, 2).contiguous())[0]
    return module, np.asarray(out.detach()).transpose(1, 0, 2)


def _case(kind, readout=None, seed=0, **kw):
    ir = network(kind, readout, seed, **kw)
    x = spikes_in(seed + 1)
    return ir, nir_graph.to_nir(ir), x, ours(ir, x)


# --------------------------------------------------------------------------------- Norse


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kind", SPIKING)
def test_norse_reads_each_spiking_kind_spike_exact(kind, bias):
    """Norse reads rewire's CubaLIF, LIF (r = 1) and IF (r = 1) files, biases included
    (``nir.Affine`` -> ``nn.Linear`` with bias), spike for spike on 2 nets x 3,840 values
    (measured: CubaLIF 1,425 + 1,193 output spikes, LIF 304 + 213, IF 2,171 + 1,823)."""
    total = 0
    for seed in range(2):
        _, graph, x, ref = _case(kind, seed=seed, bias=bias)
        assert isinstance(graph.nodes["fc1"], nir.Affine if bias else nir.Linear)
        np.testing.assert_array_equal(norse_run(graph, x), ref)
        total += int(ref.sum())
    assert total > 300


def test_norse_ignores_r_on_lif_so_the_old_form_gave_no_spikes():
    """Norse's bug, and why LIF is written with r = 1: the same dynamics written as before
    (r = tau/dt, voltages times tau/dt) give 0 output spikes in Norse where rewire's IR gives
    304 (``from_nir`` builds ``LIFBoxCell`` from tau, v_threshold, v_leak and drops r)."""
    ir, graph, x, ref = _case("LIF")
    unit = 1.0 / (ir.layers[0].neuron.tau_mem_inv * DT)
    for name in ("lif1", "lif2"):
        node = graph.nodes[name]
        graph.nodes[name] = nir.LIF(tau=node.tau, r=node.r * unit, v_leak=node.v_leak * unit,
                                    v_threshold=node.v_threshold * unit,
                                    v_reset=node.v_reset * unit)
    assert ref.sum() == 304
    assert norse_run(graph, x).sum() == 0


@pytest.mark.parametrize("kind, readout", [("CubaLIF", "CubaLI"), ("LIF", "LI")])
def test_norse_drops_a_leaky_readout(kind, readout):
    """Norse's bug: ``from_nir`` maps no ``LI``/``CubaLI`` node and drops it without a word;
    the module's output is then the last ``Linear``'s ``W2 z1`` (measured: equal to it
    exactly; 3,696/3,840 and 3,804/3,840 values differ from rewire's readout voltage)."""
    ir, graph, x, ref = _case(kind, readout)
    z1 = dynamics.run(ir, x, record_all=True)[0]
    w2 = torch.tensor(ir.layers[1].synapse.weight)
    got = norse_run(graph, x)
    np.testing.assert_array_equal(got, F.linear(z1, w2).numpy())
    assert (got != ref).sum() > 0.9 * ref.size


def test_norse_subtractive_reset_with_its_reset_method():
    """A CubaLIF with ``reset='subtract'`` (metadata ``rewire.reset``, which Norse does not
    read) equals Norse's ``from_nir(..., reset_method=reset_subtract)`` spike for spike
    (2,024 spikes); Norse's LIF and IF nodes take no reset method: they reset to v_reset,
    equal to the IR with reset='set' (LIF 304 spikes instead of 545, IF 2,171 instead of
    3,079)."""
    from norse.torch.functional.reset import reset_subtract

    _, graph, x, ref = _case("CubaLIF", reset="subtract")
    assert graph.nodes["lif1"].metadata == {"rewire.reset": "subtract"}
    np.testing.assert_array_equal(norse_run(graph, x, reset_method=reset_subtract), ref)
    assert ref.sum() == 2024
    for kind, (theirs, mine) in {"LIF": (304, 545), "IF": (2171, 3079)}.items():
        _, graph, x, ref = _case(kind, reset="subtract")
        got = norse_run(graph, x, reset_method=reset_subtract)
        assert (got.sum(), ref.sum()) == (theirs, mine)
        np.testing.assert_array_equal(got, _case(kind)[3])


# ------------------------------------------------------------------------------- snnTorch


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kind", ["CubaLIF", "LIF"])
def test_snntorch_reads_cubalif_and_lif_spike_exact_at_its_step(kind, bias):
    """snnTorch 1.0 hard-codes dt = 1e-4 s: there it reads CubaLIF (``R = tau_mem/dt`` as
    it asserts) and LIF (r = 1: threshold ``v_th tau/dt``) spike for spike, biases too."""
    for seed in range(2):
        _, graph, x, ref = _case(kind, seed=seed, bias=bias)
        np.testing.assert_array_equal(snntorch_run(graph, x), ref)
        assert ref.sum() > 100


def test_snntorch_lif_at_another_step_is_silent():
    """snnTorch's bug: at dt = 1e-3 s its LIF decay and threshold still assume 1e-4 s
    (beta = 1 - 1e-4/tau, threshold 10x too high): 0 output spikes where the IR gives 304
    (Norse, given the file's dt, gives the 304)."""
    ir = network("LIF", dt=1e-3)
    x = spikes_in(1)
    ref, graph = ours(ir, x), nir_graph.to_nir(ir)
    assert ref.sum() == 304
    np.testing.assert_array_equal(norse_run(graph, x), ref)
    assert snntorch_run(graph, x).sum() == 0


@pytest.mark.xfail(strict=True, raises=TypeError, reason="snnTorch 1.0 bug: its IF node is a "
                   "Leaky(beta=0.9, init_hidden=False) (a leak, and a (spk, mem) tuple the next "
                   "Linear cannot take: 'linear(): argument input must be Tensor, not tuple')")
def test_snntorch_reads_if():
    _, graph, x, ref = _case("IF")
    np.testing.assert_array_equal(snntorch_run(graph, x), ref)


@pytest.mark.parametrize("kind, readout", [("CubaLIF", "CubaLI"), ("LIF", "LI")])
def test_snntorch_cannot_read_a_leaky_readout(kind, readout):
    """snnTorch 1.0's node map has no LI or CubaLI: nirtorch refuses the graph."""
    _, graph, x, _ = _case(kind, readout)
    with pytest.raises(ValueError, match=f"Unknown node type .*{readout}"):
        snntorch_run(graph, x)


def test_snntorch_resets_to_zero_whatever_the_file_says():
    """snnTorch's importer builds every neuron with reset_mechanism='zero': a CubaLIF with
    reset='subtract' runs as reset='set' (1,425 output spikes instead of 2,024)."""
    _, graph, x, ref = _case("CubaLIF", reset="subtract")
    got = snntorch_run(graph, x)
    assert (got.sum(), ref.sum()) == (1425, 2024)
    np.testing.assert_array_equal(got, _case("CubaLIF")[3])


# ------------------------------------------------------------------------------- rockpool


def test_rockpool_reads_cubalif_as_its_own_lif():
    """rockpool 3.1 (its ``nir`` extra pins nir <= 1.0.4; it runs with nir 1.0.8 here) reads a
    CubaLIF as its LIFTorch: dt = tau_mem/(1 + R) (= dt/1.1 here), exact exponential decays,
    subtractive reset, up to 2**16 spikes per step: 1,267/3,840 values differ, 2,573 output
    spikes for the IR's 1,425."""
    _, graph, x, ref = _case("CubaLIF")
    module, got = rockpool_run(graph, x)
    assert module.lif1.dt == pytest.approx(DT / 1.1)
    assert ((got != ref).sum(), got.sum(), ref.sum()) == (1267, 2573, 1425)


@pytest.mark.xfail(strict=True, raises=AttributeError, reason="rockpool 3.1 bug: its LIF "
                   "import reads node.tau_mem, a field nir.LIF does not have (tau)")
def test_rockpool_reads_lif():
    _, graph, x, ref = _case("LIF")
    np.testing.assert_array_equal(rockpool_run(graph, x)[1], ref)


@pytest.mark.parametrize("kind, readout, node", [("IF", None, "IF"),
                                                 ("CubaLIF", "CubaLI", "CubaLI")])
def test_rockpool_cannot_read_if_or_cubali(kind, readout, node):
    """rockpool 3.1 maps no IF and no CubaLI node."""
    _, graph, x, _ = _case(kind, readout)
    with pytest.raises(NotImplementedError, match=f"Cannot convert .*{node}"):
        rockpool_run(graph, x)
