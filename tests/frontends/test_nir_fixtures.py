"""NIR frontend: the trained fixtures of tests/data (made by scripts/make_nir_fixtures.py)
lower, compile and run as their framework does."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from rewire.frontends.nir import lower
from rewire.ir.dynamics import encode, run

from conftest import requires_lava

DATA = Path(__file__).parent.parent / "data"
warnings.filterwarnings("ignore", message=".*not writable.*")


# ---------------------------------------------------------------------------------------------
# trained fixtures (scripts/make_nir_fixtures.py): Done-when families (7), (8), (9)


# the fixtures' snnTorch models were trained with reset_mechanism='zero', reset_delay=False
# (scripts/make_nir_fixtures.py), which NIR does not record: Norse's rule
_FRAMEWORK = "norse"


@pytest.mark.parametrize("name, kinds", [
    ("snntorch_leaky", [("dense", "LIF"), ("dense", "LIF")]),
    ("snntorch_synaptic", [("dense", "CubaLIF"), ("dense", "LIF")]),
    ("snntorch_rleaky", [("dense_rec", "LIF"), ("dense", "LIF")]),
    ("norse_lif", [("dense", "CubaLIF"), ("dense", "CubaLIF")]),
])
def test_trained_fixture_lowers_and_gives_the_framework_s_spike_counts(name, kinds):
    """Each committed file lowers to the expected layers and the IR run gives, on the 20
    stored test images, exactly the output spike counts the framework itself computed."""
    side = json.loads((DATA / f"{name}.json").read_text())
    ir = lower(DATA / f"{name}.nir", dt=side["dt"], steps=side["steps"],
               encoding=side["encoding"], framework=_FRAMEWORK)
    assert [(l.synapse.op, l.neuron.kind) for l in ir.layers] == kinds
    assert ir.source == f"nir:{side['framework'].split()[0]}"
    assert ir.synapse_count == 64 * 64 + 64 * 10 + (64 * 64 if "rleaky" in name else 0)
    counts = run(ir, encode(ir, torch.tensor(side["x"])))[-1].sum(0)
    ref = torch.tensor(side["counts"])
    assert ref.sum() > 100 and side["test_accuracy"] > 0.9
    np.testing.assert_array_equal(counts.numpy(), ref.numpy())


def _digits_test_set():
    """The 297 test images and labels of scripts/make_nir_fixtures.py (its fixed split)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.data))
    x = (data.data / 16.0).astype(np.float32)[order][1500:]
    return x, data.target[order][1500:]


FIXTURES = ["snntorch_leaky", "snntorch_synaptic", "snntorch_rleaky", "norse_lif"]


def _compiled_fixture(name, loihi2, x):
    """The fixture compiled straight from its file by the public ``rewire.compile`` (which
    lowers it through rewire.frontends.lower, the lowering options passed on)."""
    import rewire

    side = json.loads((DATA / f"{name}.json").read_text())
    return side, rewire.compile(DATA / f"{name}.nir", "loihi2", input_max_value=16,
                                calibration=x, dt=side["dt"], steps=side["steps"],
                                encoding=side["encoding"], framework=_FRAMEWORK)


@pytest.mark.parametrize("name", FIXTURES)
def test_trained_fixture_compiles_for_loihi2(name, loihi2):
    """Lowered and compiled for Loihi 2, each fixture's float model scores on the 297 test
    images exactly the accuracy its framework measured (the lowering reproduces the framework
    on every image), and the integer model predicts the float model's class on >= 97 % of them
    (measured: snnTorch Leaky 98.99 %, Synaptic 98.99 %, RLeaky 97.64 %, Norse 100 %)."""
    from rewire.compiler.equivalence import compare

    x, y = _digits_test_set()
    side, net = _compiled_fixture(name, loihi2, x)
    rep = compare(net, x, labels=y)
    assert rep.float_accuracy == pytest.approx(side["test_accuracy"], abs=1e-6)
    assert rep.prediction_agreement >= 0.97
    assert rep.integer_accuracy > 0.9
    assert any(l.recurrent for l in net.layers) == ("rleaky" in name)


@requires_lava
@pytest.mark.lava
@pytest.mark.slow
@pytest.mark.parametrize("name", FIXTURES)
def test_trained_fixture_runs_in_lava_spike_for_spike(name, loihi2, tmp_path):
    """The fixture's netx file (dense and, for RLeaky, dense_rec layers) run in Lava
    (Loihi2SimCfg fixed point) gives the integer model's output spikes on 10 test images."""
    from rewire.compiler.simulate import encode_input, simulate
    from rewire.export import netx
    from rewire.export.lava_run import run_netx

    x, _ = _digits_test_set()
    _, net = _compiled_fixture(name, loihi2, x)
    path = netx.write(net, tmp_path / f"{name}.net")
    payload = encode_input(net, x[:10])
    ref = simulate(net, payload)[-1]
    assert ref.sum() > 10
    for b in range(10):
        np.testing.assert_array_equal(run_netx(path, payload[:, b], aligned=True), ref[:, b])
