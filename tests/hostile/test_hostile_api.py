"""Hostile arguments to the library API (issue 17, item 13): NIR graphs lowered by
``rewire.frontends.nir.lower`` with zero,
negative or NaN ``dt``, time constants, ``r``, weights and mismatched widths;
``compile_network`` with bad ``input_max_value`` / ``cores``; ``onnx_step.run`` with bad
``steps``. Each ends in the documented error naming the argument, never a
``ZeroDivisionError`` or a torch ``RuntimeError``."""

from __future__ import annotations

import copy
import math
import random
import traceback

import numpy as np
import pytest

from rewire import compile as compile_network
from rewire.errors import CompileError
from rewire.export import nir_graph, onnx_step
from rewire.frontends.nir import lower

from conftest import HYPOTHESIS_PROFILE, capped, random_network

SCALE = 1 if HYPOTHESIS_PROFILE == "ci" else 10
SEED = 20261205 if HYPOTHESIS_PROFILE == "ci" else random.randrange(2**32)
BAD = [0.0, -0.0, -1.0, -1e-3, math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-320]


@pytest.fixture(scope="module")
def graph(loihi2):
    net = compile_network(random_network((6, 5, 3), steps=4), loihi2, input_max_value=16)
    return nir_graph.to_nir(net)


def _hostile_graph(rng, base):
    g = copy.deepcopy(base)
    lifs = [n for n, node in g.nodes.items() if type(node).__name__ == "CubaLIF"]
    lins = [n for n, node in g.nodes.items() if hasattr(node, "weight")]
    kind = rng.randrange(7)
    dt = None
    if kind == 0:
        dt = rng.choice(BAD + ["x", None, [1e-3, 2e-3]])
        g.metadata["dt"] = dt
        dt = None
    elif kind == 1:
        node = g.nodes[rng.choice(lifs)]
        field = rng.choice(["tau_syn", "tau_mem", "r", "w_in", "v_threshold", "v_leak",
                            "v_reset"])
        arr = np.array(getattr(node, field), dtype=np.float64)
        if arr.size:  # an earlier mutation may have emptied it
            arr.reshape(-1)[rng.randrange(arr.size)] = rng.choice(BAD)
        setattr(node, field, arr)
    elif kind == 2:
        node = g.nodes[rng.choice(lins)]
        w = np.array(node.weight, dtype=np.float64)
        if w.size:
            w.reshape(-1)[rng.randrange(w.size)] = rng.choice([math.nan, math.inf, -math.inf])
        node.weight = w
    elif kind == 3:
        node = g.nodes[rng.choice(lins)]
        w = np.array(node.weight)
        node.weight = rng.choice([w[:, :-1], w[:-1], w.T, w[None], np.zeros((0, 3)),
                                  np.zeros((w.shape[0], w.shape[1] + 2))])
    elif kind == 4:
        g.metadata[rng.choice(["steps", "input_gain", "encoding"])] = rng.choice(
            [0, -1, 10**9, math.nan, "x", 1.5, True, None, "rate", 3])
    elif kind == 5:
        dt = rng.choice(BAD)
    else:
        for _ in range(2):
            g2, _ = _hostile_graph(rng, g)
            g = g2
    return g, dt


def test_fuzz_nir_lower(graph, capsys):
    rng = random.Random(SEED)
    count, refused, tracebacks = 0, 0, []
    for _ in range(250 * SCALE):
        g, dt = _hostile_graph(rng, graph)
        count += 1
        try:
            with capped():
                net = lower(g, dt=dt)
        except (ValueError, NotImplementedError) as exc:
            refused += 1
            assert str(exc).strip()
        except Exception:  # noqa: BLE001
            tracebacks.append(traceback.format_exc(limit=3))
        else:
            for layer in net.layers:
                n = layer.neuron
                assert all(math.isfinite(v) for v in (n.tau_syn_inv, n.tau_mem_inv, n.v_th, n.dt))
                assert n.dt > 0 and n.tau_syn_inv > 0 and n.tau_mem_inv > 0
    with capsys.disabled():
        print(f"\nfuzz nir lower (seed {SEED}): {count} graphs, {refused} refused, "
              f"{count - refused - len(tracebacks)} imported, {len(tracebacks)} tracebacks")
    assert not tracebacks, "\n".join(tracebacks[:4])


@pytest.mark.parametrize("dt", [0.0, -1e-3, math.nan, math.inf])
def test_nir_lower_bad_dt_names_dt(graph, dt):
    with pytest.raises(ValueError, match="dt must be a finite number > 0"):
        lower(graph, dt=dt)


@pytest.mark.parametrize("field", ["tau_syn", "tau_mem", "r"])
@pytest.mark.parametrize("value", [0.0, -1.0, math.nan])
def test_nir_lower_bad_lif_constant_names_node_and_field(graph, field, value):
    g = copy.deepcopy(graph)
    name = next(n for n, node in g.nodes.items() if type(node).__name__ == "CubaLIF")
    setattr(g.nodes[name], field, np.full_like(np.asarray(getattr(g.nodes[name], field),
                                                          dtype=np.float64), value))
    with pytest.raises(ValueError, match=rf"node '{name}' \(CubaLIF\).{field}"):
        lower(g)


def test_nir_lower_width_mismatch_names_the_node(graph):
    g = copy.deepcopy(graph)
    lins = [n for n, node in g.nodes.items() if hasattr(node, "weight")]
    g.nodes[lins[-1]].weight = np.zeros((3, 7))
    with pytest.raises(ValueError, match=rf"node '{lins[-1]}' .*takes 7 inputs"):
        lower(g)


@pytest.mark.parametrize("value", [0, -1, 2**25, 1.5, "16", True, math.nan])  # None = 255
def test_compile_network_bad_input_max_value(loihi2, value):
    with pytest.raises(CompileError, match="input_max_value must be an integer payload"):
        compile_network(random_network((6, 5, 3)), loihi2, input_max_value=value)


@pytest.mark.parametrize("value", [0, -1, 129, 2**40, 1.5, True])
def test_compile_network_bad_cores(loihi2, value):
    with pytest.raises(CompileError, match=r"cores must be an integer in \[1, 128\]"):
        compile_network(random_network((6, 5, 3)), loihi2, input_max_value=16, cores=value)


@pytest.fixture(scope="module")
def step_file(tmp_path_factory, loihi2):
    net = compile_network(random_network((6, 5, 3), steps=4), loihi2, input_max_value=16)
    return onnx_step.write(net, tmp_path_factory.mktemp("onnx") / "m.onnx")


@pytest.mark.parametrize("steps", [0, -1, 1.5, True, "3"])
def test_onnx_step_run_bad_steps(step_file, steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        onnx_step.run(step_file, np.zeros((1, 6), np.float32), steps=steps)


@pytest.mark.parametrize("x", [np.zeros(6), np.zeros((1, 1, 1, 6)), np.full((1, 6), np.nan)])
def test_onnx_step_run_bad_input(step_file, x):
    with pytest.raises(ValueError, match="x must be a finite"):
        onnx_step.run(step_file, x)


def test_onnx_step_run_steps_is_used(step_file):
    assert onnx_step.run(step_file, np.zeros((2, 6), np.float32), steps=7).shape == (7, 2, 3)
