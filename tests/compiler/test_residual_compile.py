"""Skip (residual) connections through the compiler and the writers: the integer model, the
integer and float ONNX files and the float IR agree spike for spike; netx refuses by name.

Exactness needs a grid on which quantization loses nothing: IF neurons (no decay to round),
``v_th = 1`` and weights ``k / 128`` with ``|k| <= 127``, the largest 127, so that every
layer's scale is ``S = 254 / (127 / 128) = 256`` and ``w_int = 2 k`` (Loihi 2's even grid).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from rewire.compiler.quantize import compile_network
from rewire.compiler.simulate import simulate
from rewire.errors import CompileError, ExportError
from rewire.export import netx, nir_graph, onnx_int, onnx_step, onnx_unrolled
from rewire.ir import dynamics
from rewire.ir.compiled import CompiledNetwork, float_network
from rewire.ir.network import Network, Skip
from rewire.ir.nodes import IF, Conv2d, CubaLIF, Dense, Flatten, SumPool2d

from conftest import examples


def _grid(rng, shape):
    """Weights ``k / 128``, ``|k| <= 127``, with one entry at 127 (pins the scale)."""
    k = rng.integers(-40, 60, size=shape)
    k.flat[rng.integers(k.size)] = 127
    return (k / 128).astype(np.float32)


def _exact_net(seed, sizes, skips, steps=12):
    rng = np.random.default_rng(seed)
    nodes = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        nodes += [Dense(_grid(rng, (n_out, n_in))), IF()]
    ir_skips = []
    for source, target in skips:
        n_src = sizes[source]
        w = _grid(rng, (sizes[target], n_src))
        w.flat[0] = 0.0  # the block's 127 may sit elsewhere: all the same grid
        ir_skips.append(Skip(source, target, w))
    return Network(tuple(nodes), input_shape=(sizes[0],), steps=steps, encoding="rate",
                   skips=tuple(ir_skips))


def _spikes(rng, steps, batch, n):
    return (rng.random((steps, batch, n)) < 0.4).astype(np.float32)


@examples(25)
@given(seed=st.integers(0, 2**16), depth=st.integers(2, 4), data=st.data())
def test_integer_model_equals_float_ir_with_residual_sums(loihi2, seed, depth, data):
    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(3, 12)) for _ in range(depth + 1)]
    pairs = [(s, t) for t in range(2, depth + 1) for s in range(0, t - 1)]
    chosen = data.draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=3))
    net = _exact_net(seed, sizes, chosen)
    compiled = compile_network(net, loihi2)
    assert all(s.weight_int.shape == s.weight.shape for l in compiled.layers for s in l.skips)
    assert all(l.scale == 256.0 for l in compiled.layers if l.skips)
    x = _spikes(rng, net.steps, 6, sizes[0])
    ref = dynamics.run(net, torch.tensor(x), record_all=True)
    got = simulate(compiled, x.astype(np.int64), record_all=True)
    for r, g in zip(ref, got):
        assert np.array_equal(r.numpy(), g)


def test_exports_equal_the_integer_model_and_netx_refuses(tmp_path, loihi2):
    net = _exact_net(3, [10, 16, 16, 6], [(1, 3), (0, 2)], steps=16)
    compiled = compile_network(net, loihi2)
    x = _spikes(np.random.default_rng(1), 16, 32, 10)
    ints = simulate(compiled, x.astype(np.int64))[-1]
    floats = dynamics.run(net, torch.tensor(x))[-1].numpy()
    assert ints.sum() > 0 and np.array_equal(ints, floats)
    onnx_int.write(compiled, tmp_path / "i.onnx")
    onnx_step.write(compiled, tmp_path / "s.onnx")
    onnx_unrolled.write(compiled, tmp_path / "u.onnx")
    assert np.array_equal(np.asarray(onnx_int.run(tmp_path / "i.onnx", x.astype(np.int64))),
                          ints)
    assert np.array_equal(np.asarray(onnx_step.run(tmp_path / "s.onnx", x)), floats)
    assert np.array_equal(np.asarray(onnx_unrolled.run(tmp_path / "u.onnx", x)), floats)
    with pytest.raises(ExportError, match="skip connection from .*chain of layers") as info:
        netx.check_network(compiled)
    assert info.value.format == "netx" and info.value.layer == "fc2"
    with pytest.raises(CompileError, match="Lava-delayed"):
        simulate(compiled, x.astype(np.int64), lava_delay=True)
    graph = nir_graph.to_nir(compiled)
    assert ("lif1", "skip3_1") in graph.edges and ("skip3_1", "lif3") in graph.edges
    again = CompiledNetwork.from_dict(compiled.to_dict())
    assert np.array_equal(again.layers[2].skips[0].weight_int,
                          compiled.layers[2].skips[0].weight_int)
    assert float_network(again).skips[0].target == 2
    # the chip holds the skip synapses: counted in the layer's fan-in and the total
    chain = compile_network(_exact_net(3, [10, 16, 16, 6], [], steps=16), loihi2)
    assert compiled.synapses > chain.synapses


def test_conv_residual_block_is_exact(tmp_path, loihi2):
    """conv -> IF -> conv (+ identity shortcut of the first map) -> IF -> flatten -> dense:
    weights k/64 with one 127/64 per matrix and the identity's 1.0 give every layer
    ``S = 128``; the integer model, both ONNX files and the float IR then agree exactly."""
    rng = np.random.default_rng(0)

    def grid(shape):
        k = rng.integers(-30, 26, size=shape)
        k.flat[0] = 127
        return (k / 64).astype(np.float32)

    net = Network((Conv2d(grid((4, 1, 3, 3)), padding=(1, 1)), IF(),
                   Conv2d(grid((4, 4, 3, 3)), padding=(1, 1)), IF(), Flatten(),
                   Dense(grid((5, 144))), IF()),
                  input_shape=(1, 6, 6), steps=12, encoding="rate",
                  skips=(Skip(1, 2, np.eye(144, dtype=np.float32)),))
    compiled = compile_network(net, loihi2)
    assert [l.scale for l in compiled.layers] == [128.0] * 3
    x = (rng.random((12, 16, 1, 6, 6)) < 0.4).astype(np.float32)
    flat = x.reshape(12, 16, -1)
    ref = dynamics.run(net, torch.tensor(x), record_all=True)
    got = simulate(compiled, flat.astype(np.int64), record_all=True)
    for r, g in zip(ref, got):
        assert g.sum() > 0 and np.array_equal(r.numpy().reshape(g.shape), g)
    onnx_int.write(compiled, tmp_path / "i.onnx")
    onnx_step.write(compiled, tmp_path / "s.onnx")
    assert np.array_equal(np.asarray(onnx_int.run(tmp_path / "i.onnx", flat.astype(np.int64))),
                          got[-1])
    assert np.array_equal(np.asarray(onnx_step.run(tmp_path / "s.onnx", flat)), got[-1])


def test_skip_into_a_sum_pool_is_refused_by_name(loihi2):
    net = Network((Conv2d(np.ones((2, 1, 3, 3), np.float32) / 8), IF(),
                   SumPool2d(2), IF(), Flatten(), Dense(np.ones((3, 8), np.float32)), IF()),
                  input_shape=(1, 6, 6), steps=4,
                  skips=(Skip(1, 2, np.zeros((8, 32), np.float32)),))
    with pytest.raises(CompileError, match="pool1 .*skip connection from layer1 .*sum pool"):
        compile_network(net, loihi2)


def test_skip_from_a_graded_input_is_refused_by_name(loihi2):
    net = Network((Dense(np.ones((4, 3), np.float32)), CubaLIF(200.0, 100.0),
                   Dense(np.ones((2, 4), np.float32)), CubaLIF(200.0, 100.0)),
                  input_shape=(3,), steps=4, encoding="current",
                  skips=(Skip(0, 2, np.ones((2, 3), np.float32)),))
    with pytest.raises(CompileError, match="from the input under current encoding"):
        compile_network(net, loihi2)
