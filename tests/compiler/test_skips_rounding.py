"""One rounding rule for every weight (:mod:`rewire.compiler.rounding`): the quantizer's
columns (dense skips among them) and a conv layer's skips, rounded afterwards at the layer's
scale, land on the same grid for the same float weight and factor."""

import numpy as np

from rewire.compiler.quantize import compile_network
from rewire.compiler.rounding import round_weights, weight_magnitude
from rewire.ir.network import Network, Skip
from rewire.ir.nodes import LIF, Conv2d, Dense, Flatten


def test_the_rule_rounds_half_to_even_on_the_step_and_clips_symmetrically(loihi2):
    """Loihi 2: step 2, magnitude 254 (not 256: Lava's sign mode clips -256 alone)."""
    wfmt = loihi2.weights
    assert (wfmt.step, weight_magnitude(wfmt)) == (2, 254)
    q = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 126.6, 300.0, -300.0])
    out = round_weights(q, 1.0, wfmt)
    assert out is q  # in place
    np.testing.assert_array_equal(q, [0, 4, 4, 0, -4, 254, 254, -254])


def test_conv_and_dense_skips_round_by_the_same_rule(loihi2):
    """A conv block and a dense block, each with a skip of awkward weights (LIF: gain
    ``dt/tau_mem`` 0.1, so ``w g S / step`` is rarely an integer): every skip's
    ``weight_int`` is :func:`round_weights` of its float weight at its layer's ``g S / step``,
    and so is every dense layer's own weight."""
    rng = np.random.default_rng(4)
    lif = LIF(tau_mem_inv=100.0)
    conv = Network((Conv2d(rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32),
                           padding=(1, 1)), lif,
                    Conv2d(rng.normal(0, 0.5, (2, 2, 3, 3)).astype(np.float32),
                           padding=(1, 1)), lif, Flatten(),
                    Dense(rng.normal(0, 0.5, (3, 32)).astype(np.float32)), lif),
                   input_shape=(1, 4, 4), steps=4, encoding="rate",
                   skips=(Skip(1, 2, rng.normal(0, 0.3, (32, 32)).astype(np.float32)),))
    dense = Network((Dense(rng.normal(0, 0.5, (6, 5)).astype(np.float32)), lif,
                     Dense(rng.normal(0, 0.5, (6, 6)).astype(np.float32)), lif,
                     Dense(rng.normal(0, 0.5, (3, 6)).astype(np.float32)), lif),
                    input_shape=(5,), steps=4, encoding="rate",
                    skips=(Skip(1, 3, rng.normal(0, 0.3, (3, 6)).astype(np.float32)),))
    checked = 0
    for net in (conv, dense):
        for layer in compile_network(net, loihi2).layers:
            k = 0.1 * layer.scale / loihi2.weights.step  # g S / step, g = dt / tau_mem
            if layer.TYPE == "dense":
                np.testing.assert_array_equal(
                    layer.weight_int, round_weights(np.array(layer.weight, np.float64), k,
                                                    loihi2.weights))
            for skip in layer.skips:
                want = round_weights(np.array(skip.weight, np.float64), k, loihi2.weights)
                assert np.count_nonzero(want) > 0
                np.testing.assert_array_equal(skip.weight_int, want)
                checked += 1
    assert checked == 2
