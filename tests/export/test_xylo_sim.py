"""rewire's Xylo integer model against XyloSim 0.1.3 (``xylosim.v2.XyloLayer``), state for
state: ``Isyn``, ``Vmem``, hidden spikes, ``Isyn_out``, ``Vmem_out``, output spikes, at every
step, on random small Xylo networks written as specifications (rewire.export.xylo_spec) and
run by rewire.export.xylo_run. Skipped with the reason where xylosim is not installed
(``pip install "rewire[xylo]"``, Python 3.10). About 10 s on one core.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import examples
from rewire.compiler import chip_rules, simulate
from rewire.export import xylo_run, xylo_spec

sys.path.insert(0, str(Path(__file__).parent))
from xylo_compiled_nets import layer, network, random_network  # noqa: E402

pytestmark = pytest.mark.skipif(xylo_run.xylosim_missing() is not None,
                                reason=str(xylo_run.xylosim_missing()))


def _compare(net, payload, tmp_path):
    path = xylo_spec.write(net, tmp_path / "model_xylo.npz")
    return xylo_run.compare(net, path, payload)


@st.composite
def xylo_cases(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_layers = draw(st.integers(2, 3))
    sizes = ([draw(st.integers(1, 16))] + [draw(st.integers(2, 10)) for _ in range(n_layers - 1)]
             + [draw(st.integers(1, 8))])
    shifts = [draw(st.integers(0, 8)) for _ in range(3)]  # 8: sums far beyond int16
    net = random_network(rng, sizes, shifts, density=draw(st.sampled_from([0.3, 0.9])),
                         recurrent=draw(st.booleans()))
    top = draw(st.sampled_from([15, 40]))  # 40: events above 15, which the chip clips
    payload = rng.integers(0, top + 1, (draw(st.integers(1, 8)), 3, sizes[0]))
    return net, payload


SPIKING = []


@settings(examples(60), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=xylo_cases())
def test_integer_model_equals_xylosim_in_every_state(case, tmp_path):
    """Property: every recorded state of every step and sample equal (saturating sums,
    clipped inputs, dash 0..15, multi-spike hidden neurons included)."""
    net, payload = case
    result = _compare(net, payload, tmp_path)
    assert result["first_mismatch"] is None, result["first_mismatch"]
    assert result["samples_equal"] == result["samples"] == payload.shape[1]
    assert result["states_compared"] == result["states_equal"] > 0
    SPIKING.append(result["output_spikes"] > 0)


def test_a_meaningful_share_of_the_property_examples_spikes():
    """The property above compared output spikes, not only silence (runs after it)."""
    if not SPIKING:
        pytest.skip("run with the property test")
    assert sum(SPIKING) >= 0.25 * len(SPIKING), (sum(SPIKING), len(SPIKING))


def _two_inputs_net(order, shift=8):
    """Input channels with weights ``order`` (times 2**shift) onto hidden neuron 0."""
    w1 = np.zeros((2, len(order)), np.int64)
    w1[0] = np.asarray(order) << shift
    w2 = np.array([[1, 1]])
    return network([layer("fc1", w1, 1, 1, 30000, 31), layer("fc2", w2, 1, 1, 30000, 1)])


@pytest.mark.parametrize("order, isyn", [((127, 127, -127), (32767 - 32512 + 1) // 2),
                                         ((-127, 127, 127), 32512 // 2)])
def test_xylosim_saturates_the_current_after_each_synapse_in_input_order(order, isyn, tmp_path):
    """XyloSim adds the synapses of one step to Isyn one input channel at a time, saturating
    at int16 after each: +32512 +32512 -32512 ends at 255 (32767 - 32512), -32512 +32512
    +32512 at 32512; a saturation of the sum would give 32512 for both. rewire models it."""
    net = _two_inputs_net(order)
    payload = np.ones((1, 1, 3), np.int64)
    got = xylo_run.run_specification(xylo_spec.specification(net), payload)
    assert got["Isyn"][0, 0, 0] == isyn  # then halved by dash_syn = 1 (dec rounds up)
    assert _compare(net, payload, tmp_path)["first_mismatch"] is None
    # the sum saturated once would not be XyloSim
    plain = dataclasses.replace(chip_rules.CHIP_RULES["cuba_bitshift"], ordered=False)
    rules = dict(chip_rules.CHIP_RULES, cuba_bitshift=plain)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chip_rules, "CHIP_RULES", rules)
        ref = xylo_run.reference_states(net, payload)
    assert (ref["Isyn"][0, 0, 0] == isyn) == (order == (-127, 127, 127))


def test_xylosim_saturates_the_change_of_vmem_before_adding_it(tmp_path):
    """Vmem = sat16(Vmem + sat16(Isyn - dec(Vmem))). Step 0 drives Isyn and Vmem to -32767
    (dash_syn 15); step 1 three events of +32512 turn Isyn to +32766; with dash_mem 3 the
    change 32766 + 4096 saturates to 32767, so Vmem = 0 (the sum saturated once would give
    4095)."""
    w = np.array([[-128, 127], [0, 0]]) << 8  # neuron 0: channel 0 down, channel 1 up
    net = network([layer("fc1", w, 15, 3, 30000, 31),
                   layer("fc2", np.array([[1, 1]]), 1, 1, 30000, 1)])
    payload = np.array([[[1, 0]], [[0, 3]]])
    got = xylo_run.run_specification(xylo_spec.specification(net), payload)
    assert got["Isyn"][:, 0, 0].tolist() == [-32767, 32766]
    assert got["Vmem"][:, 0, 0].tolist() == [-32767, 0]
    assert _compare(net, payload, tmp_path)["first_mismatch"] is None


def test_the_output_lags_one_step_per_layer_after_the_first(tmp_path):
    """Hidden neurons answer the input in the same step; the readout, and a second hidden
    layer, one step late: a 3-layer chain's first output spike comes two steps after the
    input, and dropping chip_delay_steps aligns the delayed run with simulate()."""
    net = network([layer("fc1", np.full((2, 1), 127), 1, 1, 50, 31),
                   layer("fc2", np.full((2, 2), 127), 1, 1, 50, 31),
                   layer("fc3", np.full((1, 2), 127), 1, 1, 50, 1)])
    payload = np.zeros((4, 1, 1), np.int64)
    payload[0] = 1
    padded = simulate.pad_for_chip(net, payload)
    got = xylo_run.run_specification(xylo_spec.specification(net), padded)
    first = lambda x: int(np.flatnonzero(x)[0])  # noqa: E731
    assert first(got["Spikes"][:, 0, 0]) == 0 and first(got["Spikes"][:, 0, 2]) == 1
    assert first(got["Spikes_out"][:, 0, 0]) == 2
    assert simulate.chip_delay_steps(net) == 2
    delayed = simulate.simulate(net, padded, chip_delay=True)[-1]
    assert np.array_equal(delayed[2:], simulate.simulate(net, payload)[-1])
    assert _compare(net, payload, tmp_path)["first_mismatch"] is None


def test_xylo_check_fails_on_silence_and_passes_on_spikes(tmp_path):
    rng = np.random.default_rng(3)
    net = network([layer("fc1", rng.integers(0, 128, (6, 4)), 2, 2, 50, 31),
                   layer("fc2", rng.integers(0, 128, (3, 6)), 2, 2, 50, 1)])
    path = xylo_spec.write(net, tmp_path / "model_xylo.npz")
    busy = rng.integers(0, 16, (5, 4, 4))
    labels = simulate.class_scores(net, simulate.simulate(net, busy)[-1]).argmax(-1)
    check = xylo_run.xylo_check(net, path, busy, 3, labels)
    assert check["passed"] and check["samples"] == 3 and check["output_spikes"] > 0
    assert check["accuracy"] == 1.0  # XyloSim's classes are the integer model's
    silent = xylo_run.xylo_check(net, path, np.zeros_like(busy), 3)
    assert not silent["passed"] and silent["output_spikes"] == 0
    assert xylo_run.xylo_check(net, path, busy, 0) == {"skipped": "xylo_samples 0"}


def test_input_events_are_clipped_at_15_as_the_chip_does():
    """The integer model takes event counts above 15 as 15 (XyloSim clips them the same way:
    the property above feeds up to 40); encode_input clips x above 1 the same way; negative
    counts do not exist on Xylo and are refused."""
    net = _net_for_inputs()
    wild = np.array([[[0, 3, 15, 16, 40, 1000]]] * 3)
    assert np.array_equal(simulate.simulate(net, wild, record_all=True)[0],
                          simulate.simulate(net, np.minimum(wild, 15), record_all=True)[0])
    x = np.array([[0.0, 0.5, 1.0, 1.2, 3.0, 1.0]])
    assert simulate.encode_input(net, x)[0, 0].tolist() == [0, 8, 15, 15, 15, 15]
    with pytest.raises(ValueError, match="counts >= 0"):
        simulate.simulate(net, -wild)


def _net_for_inputs():
    rng = np.random.default_rng(5)
    return network([layer("fc1", rng.integers(1, 128, (3, 6)), 2, 2, 200, 31),
                    layer("fc2", rng.integers(1, 128, (2, 3)), 2, 2, 200, 1)])


def test_recorded_states_and_delays_of_the_integer_model():
    """simulate_states records what simulate outputs; chip_delay on Xylo delays every layer
    but the first (L - 1 steps), and aligned it equals the undelayed model."""
    net = random_network(np.random.default_rng(2), [4, 6, 5, 3], [3, 3, 3], density=0.9)
    payload = np.random.default_rng(3).integers(0, 16, (6, 4, 4))
    plain = simulate.simulate(net, payload, record_all=True)
    rec = simulate.simulate_states(net, payload, chip_delay=False)
    assert all(np.array_equal(r.out, p) for r, p in zip(rec, plain))
    assert rec[0].u.shape == rec[0].v.shape == (6, 4, 6)
    assert simulate.chip_delay_steps(net) == 2
    delayed = simulate.simulate_states(net, simulate.pad_for_chip(net, payload))
    for k, (d, r) in enumerate(zip(delayed, rec)):  # layer k lags k steps
        assert np.array_equal(d.u[k:k + 6], r.u) and np.array_equal(d.v[k:k + 6], r.v)
    with pytest.raises(ValueError, match="one delay model"):
        simulate.simulate(net, payload, lava_delay=True, chip_delay=True)


def test_the_runner_keeps_xylosims_arguments_alive():
    """XyloLayer does not hold its synapse lists: freed, the next evolve crashes the process.
    XyloRun holds them (a collection between building and running changes nothing); one
    hidden neuron and a readout without synapses run too."""
    import gc

    net = network([layer("fc1", np.array([[90, 40, 7]]), 1, 1, 50, 31),
                   layer("fc2", np.array([[0]]), 1, 1, 50, 1)])
    run = xylo_run.XyloRun(xylo_spec.specification(net))
    gc.collect()
    got = run.run(np.full((4, 3), 5))
    assert got["Spikes"].sum() > 0 and got["Spikes_out"].sum() == 0
    payload = np.full((4, 2, 3), 5)
    assert xylo_run.compare(net, xylo_spec.specification(net), payload)["first_mismatch"] is None
