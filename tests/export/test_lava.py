"""netx HDF5: written without Lava, loaded and run by Lava's Loihi 2 simulator (fixed point),
spike for spike equal to the project's integer model."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from rewire.compiler import simulate as sim
from rewire import compile as compile_network
from rewire.export import netx

from conftest import random_network, requires_lava


def test_netx_layout_without_lava(small_net, tmp_path):
    _, net = small_net
    path = netx.write(net, tmp_path / "m.net")
    with h5py.File(path) as f:
        assert f.attrs["rewire_format_version"] == 2
        assert f.attrs["input_message_bits"] == 5  # payload 0..16
        assert len(f["layer"]) == 2
        g = f["layer/0"]
        assert g["type"][0] == b"dense" and g["neuron/type"][0] == b"CUBA"
        assert g["weight"].shape == (20, 12)
        assert int(g["neuron/vThMant"][()]) == net.layers[0].v_th_mant
    assert all(np.array_equal(w, l.weight_int) for w, l in zip(netx.read_weights(path),
                                                               net.layers))


CASES = [  # (sizes, encoding, density, seed, weight gain)
    ((12, 20, 5), "current", 1.0, 0, 8.0),
    ((16, 24, 12, 6), "current", 0.3, 1, 30.0),
    ((10, 30, 4), "rate", 0.5, 2, 12.0),
]


@pytest.mark.lava
@requires_lava
@pytest.mark.parametrize("sizes, enc, density, seed, gain", CASES)
def test_lava_equals_integer_model(loihi2, tmp_path, sizes, enc, density, seed, gain):
    from rewire.export.lava_run import run_netx

    model = random_network(sizes, steps=15, encoding=enc, seed=seed, density=density,
                           weight_gain=gain)
    net = compile_network(model, loihi2, 16)
    path = netx.write(net, tmp_path / "m.net")
    rng = np.random.default_rng(seed)
    if enc == "current":
        payload = sim.encode_input(net, rng.integers(0, 17, (1, sizes[0])) / 16)
    else:
        payload = (rng.random((15, 1, sizes[0])) < 0.4).astype(np.int64)
    padded = sim.pad_for_lava(net, payload)
    ref = sim.simulate(net, padded, lava_delay=True)[-1][:, 0]
    out = run_netx(path, padded[:, 0], sparse=(density < 1))
    assert ref.sum() > 0, "test network should spike"
    np.testing.assert_array_equal(out, ref)
