"""Properties of the fixed-point compiler: chip weights always fit the profile's format, the
scale ``S`` is chosen monotonically, rounding costs at most half a weight step, and decays
are the nearest representable ones."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume, given, strategies as st

from rewire import compile as compile_network
from rewire.compiler.quantize import ACTIVATION_MAX, quantize_layer
from rewire.errors import CompileError
from rewire.ir.chip_neurons import decay_constant
from rewire.hw_profiles.profile import load_profile
from rewire.ir.nodes import CubaLIF

from conftest import random_network

LOIHI2 = load_profile("loihi2")


def _variant(bits, exponent, threshold_bits=17, state_bits=24):
    """loihi2 with another weight format and neuron widths (every other figure kept). Only
    Loihi's own weight format keeps the netx target: netx files carry Loihi 2 weights."""
    formats = LOIHI2.formats if (bits, exponent) == (8, 1) else \
        tuple(f for f in LOIHI2.formats if f != "netx")
    return dataclasses.replace(
        LOIHI2, formats=formats,
        weights=dataclasses.replace(LOIHI2.weights, bits=bits, exponent=exponent),
        neuron=dataclasses.replace(LOIHI2.neuron, threshold_bits=threshold_bits,
                                   state_bits=state_bits))


profiles = st.builds(_variant, st.integers(2, 16), st.integers(0, 8), st.integers(8, 24),
                     st.integers(16, 32)) | st.builds(_variant, st.just(8), st.just(1))


def _weights(seed, shape, density, gain):
    rng = np.random.default_rng(seed)
    w = rng.normal(0, gain, shape) * (rng.random(shape) < density)
    w[0, 0] = gain  # at least one synapse
    return w


weights = st.builds(_weights, st.integers(0, 10_000),
                    st.tuples(st.integers(1, 12), st.integers(1, 12)), st.floats(0.1, 1.0),
                    st.floats(1e-3, 100.0))


@given(profile=profiles, seed=st.integers(0, 5000), gain=st.floats(0.05, 30),
       density=st.floats(0.2, 1.0), enc=st.sampled_from(["current", "rate"]))
def test_chip_weights_fit_any_profiles_format(profile, seed, gain, density, enc):
    """For any weight format (2..16 bits, exponent 0..8) and neuron widths, a compiled network
    either is refused with :class:`CompileError` or has every chip weight a multiple of
    ``2**exponent`` inside ``[min_int, max_int]``, zeros and signs kept, ``vThMant`` inside its
    unsigned ``threshold_bits``, and the worst-case synaptic input inside Lava's 16 bits."""
    model = random_network((7, 9, 3), encoding=enc, seed=seed, weight_gain=gain,
                           density=density)
    try:
        net = compile_network(model, profile, input_max_value=16)
    except CompileError as exc:
        assert "layer" in str(exc) or "neuron" in str(exc)
        return
    wf = profile.weights
    for k, layer in enumerate(net.layers):
        w = layer.weight_int
        assert w.dtype.kind == "i"
        assert wf.min_int <= w.min() and w.max() <= wf.max_int
        assert np.all(w % wf.step == 0)
        assert np.all(np.sign(w) * np.sign(layer.weight) >= 0)
        assert np.all(w[layer.weight == 0] == 0)
        assert 1 <= layer.v_th_mant <= profile.neuron.max_threshold_mant
        pmax = net.input_max_value if (k == 0 and enc == "current") else 1
        assert np.abs(w.astype(np.int64)).sum(1).max() * pmax <= ACTIVATION_MAX


NEURON = CubaLIF(2000.0, 1000.0, dt=1e-4)  # rewire's default LIF (NeuronConfig)


def _quantize(w, profile, payload=1):
    return quantize_layer("fc", w, NEURON, profile, input_scale=1.0, max_payload=payload)


@given(w=weights, bits=st.integers(2, 15), exponent=st.integers(0, 8))
def test_scale_never_falls_when_the_format_gets_wider(w, bits, exponent):
    """The scale ``S`` is monotone in the weight format: one more weight bit never gives a
    smaller ``S`` (every limit on ``S`` is unchanged or looser), so precision only grows."""
    try:
        narrow = _quantize(w, _variant(bits, exponent))
    except CompileError:  # vThMant rounds to 0 in too narrow a format
        return
    wide = _quantize(w, _variant(bits + 1, exponent))
    assert wide.scale >= narrow.scale * (1 - 1e-12)


@given(w=weights, c=st.floats(1.0, 1000.0), bits=st.integers(2, 16))
def test_scale_never_rises_when_weights_grow(w, c, bits):
    """``S`` is monotone in the weights: multiplying every weight by ``c >= 1`` never gives a
    larger ``S`` (each weight-dependent limit shrinks by ``c``, the threshold's does not
    change), and the chip weights of ``c * W`` are never smaller in magnitude than those of
    ``W`` by more than one step (the larger weights use the range at least as well)."""
    profile = _variant(bits, 1)
    try:
        b = _quantize(c * w, profile)
    except CompileError:  # vThMant rounds to 0: the weights span too wide a range
        return
    a = _quantize(w, profile)
    assert b.scale <= a.scale * (1 + 1e-12)
    assert np.abs(b.weight_int).max() >= np.abs(a.weight_int).max() - profile.weights.step


@given(w=weights, profile=profiles, payload=st.sampled_from([1, 16, 255]))
def test_rounding_error_is_at_most_half_a_step_and_order_is_kept(w, profile, payload):
    """Every chip weight is the float weight times ``gain * S`` rounded to the nearest
    multiple of the step (error at most ``step / 2``, nothing clipped), and quantization keeps
    the order of the weights (``w_a <= w_b`` implies ``w_int_a <= w_int_b``)."""
    try:
        layer = _quantize(w, profile, payload)
    except CompileError:
        return
    nrn = NEURON
    exact = w * nrn.dt * nrn.tau_mem_inv * layer.scale
    step = profile.weights.step
    assert np.all(np.abs(layer.weight_int - exact) <= step / 2 + 1e-9 * np.abs(exact).max())
    order = np.argsort(w.ravel(), kind="stable")
    assert np.all(np.diff(layer.weight_int.ravel()[order]) >= 0)


@given(rate=st.floats(1e-3, 1e5), dt=st.floats(1e-5, 1e-2), decay_bits=st.integers(1, 16))
def test_decay_is_the_nearest_representable_or_refused(rate, dt, decay_bits):
    """A decay ``dt / tau`` becomes the nearest integer in units of ``2**-decay_bits``, which
    must lie in ``1..2**decay_bits``; anything else (no leak, or more than all of it) is
    refused with :class:`CompileError` naming the fix."""
    profile = dataclasses.replace(LOIHI2, neuron=dataclasses.replace(LOIHI2.neuron,
                                                                     decay_bits=decay_bits))
    unit = 2 ** decay_bits
    exact = unit * dt * rate
    assume(abs(exact - round(exact)) != 0.5)  # exact ties: either neighbour is nearest
    try:
        d = decay_constant(rate, dt, profile, "layer fc1 iDecay")
    except CompileError as exc:
        assert not 0.5 < exact < unit + 0.5 and "layer fc1 iDecay" in str(exc)
        return
    assert 1 <= d <= unit
    assert abs(d - exact) <= 0.5

