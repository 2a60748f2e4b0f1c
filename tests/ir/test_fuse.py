"""rewire.ir.fuse: the composition rule of two windowed synapses (conv or sum pool, then a
conv, a pool or a flattened Linear) holds for every geometry it accepts, and every refusal
names the pair and is needed (the composition it refused would differ)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import event, given, strategies as st
from torch.nn import functional as F

from conftest import examples
from rewire.errors import LoweringError
from rewire.ir import fuse as fuse_mod
from rewire.ir import nodes as irn
from rewire.ir.fuse import fold_batchnorm, fuse


def _apply(chain, x):
    """The chain's linear map in float64 torch, node by node."""
    x = torch.from_numpy(x)
    for n in chain:
        if isinstance(n, irn.Flatten):
            x = x.flatten(1)
            continue
        bias = None if getattr(n, "bias", None) is None else torch.from_numpy(
            n.bias.astype(np.float64))
        if isinstance(n, irn.Dense):
            x = F.linear(x.flatten(1), torch.from_numpy(n.weight.astype(np.float64)), bias)
        elif isinstance(n, irn.SumPool2d):
            w = torch.from_numpy(n.kernel_weights(x.shape[1]).astype(np.float64))
            x = F.conv2d(x, w, stride=n.stride, padding=n.padding, groups=x.shape[1])
        else:
            x = F.conv2d(x, torch.from_numpy(n.weight.astype(np.float64)), bias,
                         stride=n.stride, padding=n.padding, groups=n.groups)
    return x.flatten(1).numpy()


@st.composite
def windowed(draw, c_in, rng, pool_ok=True):
    kind = draw(st.sampled_from(["conv", "pool"] if pool_ok else ["conv"]))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    p = (min(p[0], k[0] - 1), min(p[1], k[1] - 1))
    if kind == "pool":
        return irn.SumPool2d(k, s, p, draw(st.sampled_from([1.0, 0.25, 2.0]))), c_in
    groups = draw(st.sampled_from([g for g in (1, 2) if c_in % g == 0]))
    c_out = groups * draw(st.integers(1, 3))
    bias = rng.normal(size=c_out) if draw(st.booleans()) else None
    return irn.Conv2d(rng.normal(size=(c_out, c_in // groups, *k)), s, p, groups, bias), c_out


@examples(200)
@given(st.data(), st.integers(1, 2), st.integers(4, 10), st.integers(4, 10),
       st.integers(0, 2**16))
def test_two_windowed_synapses_compose_exactly_or_are_refused_by_name(data, c0, h, w, seed):
    rng = np.random.default_rng(seed)
    first, c1 = data.draw(windowed(c0, rng))
    try:
        mid = first.out_shape((c0, h, w))
    except ValueError:
        return
    if data.draw(st.integers(0, 3)) > 0:
        second, _ = data.draw(windowed(c1, rng))
        try:
            second.out_shape(mid)
        except ValueError:
            return
        chain = [first, second]
    else:
        dense = irn.Dense(rng.normal(size=(3, int(np.prod(mid)))),
                          rng.normal(size=3) if data.draw(st.booleans()) else None)
        chain = [first, irn.Flatten(), dense]
    x = rng.normal(size=(2, c0, h, w))
    try:
        out, names, notes = fuse([*chain, irn.IF()], ["a", "b"], (c0, h, w))
    except LoweringError as err:
        assert err.piece == "b"
        assert "'a'" in str(err) and "'b'" in str(err) and ";" in str(err)
        # the refusal is needed: the composition without the padding rule differs
        saved = fuse_mod._padding_exact
        fuse_mod._padding_exact = lambda a, b: None
        try:
            forced, _, _ = fuse([*chain, irn.IF()], ["a", "b"], (c0, h, w))
        finally:
            fuse_mod._padding_exact = saved
        assert not np.allclose(_apply(forced[:-1], x), _apply(chain, x), atol=1e-6)
        event("refused")
        return
    assert names == ["a+b"] and len(notes) == 1
    np.testing.assert_allclose(_apply(out[:-1], x), _apply(chain, x), rtol=1e-5, atol=1e-5)
    event(f"fused into {type(out[-2]).__name__}")


def test_sum_pool_then_padded_conv_is_the_strided_conv_with_the_kron_kernel():
    """The measured case: SumPool2d(2) -> Conv2d(3x3, stride 1, pad 1) = Conv2d(6x6, stride
    2, pad 2) with kernel kron(W, ones(2, 2)), weights exactly (float64 inside)."""
    wt = np.random.default_rng(0).normal(size=(5, 3, 3, 3)).astype(np.float32)
    out, names, _ = fuse([irn.SumPool2d(2), irn.Conv2d(wt, padding=1), irn.IF()],
                         ["pool", "conv"], (3, 8, 8))
    conv = out[0]
    assert (conv.kernel, conv.stride, conv.padding, conv.groups) == ((6, 6), (2, 2), (2, 2), 1)
    np.testing.assert_array_equal(conv.weight, np.kron(wt, np.ones((1, 1, 2, 2))))
    assert fuse_mod.fused_geometry((2, 2, 0), (3, 1, 1)) == (6, 2, 2)


def test_fold_batchnorm_scales_rows_and_keeps_the_zero_pattern():
    w = np.array([[1.0, 0.0, -2.0], [0.0, 3.0, 0.0]], dtype=np.float32)
    node = fold_batchnorm(irn.Dense(w, np.array([0.5, -1.0])), gamma=[2.0, 0.0],
                          beta=[0.1, 0.7], mean=[0.5, 1.0], var=[3.0, 1.0], eps=1.0)
    np.testing.assert_allclose(node.weight[0], w[0] * 2.0 / 2.0)
    assert np.array_equal(node.weight[0] != 0, w[0] != 0)
    assert not node.weight[1].any()  # gamma = 0: the row is all zeros, its bias is beta
    np.testing.assert_allclose(node.bias, [0.1, 0.7])
    with pytest.raises(ValueError, match="one per output"):
        fold_batchnorm(irn.Dense(w), [1.0], [0.0], [0.0], [1.0], 1e-5)
