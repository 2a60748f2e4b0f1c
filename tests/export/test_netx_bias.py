"""Biases in a netx file: always-on input lines and relay neurons (rewire.compiler.bias_lines),
written without Lava, and run by Lava's Loihi 2 simulator spike for spike equal to the
integer model of the biased network."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from rewire.compiler import simulate as sim
from rewire.compiler.bias_lines import max_relay_threshold, relay_counts, with_lines
from rewire.compiler.quantize import compile_network
from rewire.errors import ExportError
from rewire.export import netx
from rewire.ir import nodes
from rewire.ir.network import Network

from conftest import requires_lava


def _biased(neuron, seed=0, scale=3.0, bias=True, encoding="current") -> Network:
    """8 -> 12 (recurrent) -> 10 -> 4, a bias on every layer (``bias=True``)."""
    rng = np.random.default_rng(seed)

    def w(*s):
        return rng.normal(0, scale, s).astype(np.float32)

    def b(n):
        return rng.normal(0.2 * scale, 0.3 * scale, n).astype(np.float32) if bias else None

    return Network((nodes.Dense(w(12, 8), bias=b(12)), neuron,
                    nodes.RecurrentDense(w(10, 12), w(10, 10) / 3, bias=b(10)), neuron,
                    nodes.Dense(w(4, 10), bias=b(4)), neuron),
                   input_shape=(8,), steps=12, encoding=encoding)


def test_netx_layout_with_biases(loihi2, tmp_path):
    net = compile_network(_biased(nodes.CubaLIF(200.0, 100.0)), loihi2, 16)
    lines, relays = relay_counts(net)
    path = netx.write(net, tmp_path / "b.net")
    with h5py.File(path) as f:
        assert f.attrs["rewire_bias_lines"] == lines >= 1
        w0, w1 = f["layer/0/weight"][()], f["layer/1/weight"][()]
        assert w0.shape == (12 + relays[0], 8 + lines)
        np.testing.assert_array_equal(w0[:12, 8], net.layers[0].bias_int)  # bias: line 0
        np.testing.assert_array_equal(w1[:10, 12], net.layers[1].bias_int)  # from relay 0
        assert (w1[10:, 12:] == 254).all() and not w1[10:, :12].any()
        assert f["layer/1/weight_rec"].shape == (10 + relays[1],) * 2
        assert f["layer/2/weight"].shape == (4, 10 + relays[1])
        assert f["layer/0"].attrs["rewire_relays"] == relays[0]
        assert f.attrs["rewire_bias_relay_neurons"] == sum(relays)  # dense: one per relay
    plain = netx.write(compile_network(_biased(nodes.LIF(100.0), bias=False), loihi2, 16),
                       tmp_path / "p.net")
    with h5py.File(plain) as f:
        assert "rewire_bias_lines" not in f.attrs


def test_relay_threshold_capped_at_compile_refused_at_export(loihi2):
    """Small weights would give a threshold whose relays' 24-bit current wraps: the compiler
    caps S there (the relays then fire every step, the lined network equals the biased one);
    a network over the cap (compiled otherwise) is refused by name."""
    net = compile_network(_biased(nodes.CubaLIF(200.0, 100.0), scale=0.02), loihi2, 16)
    top = max_relay_threshold(net.layers[0].i_decay, loihi2)
    assert [l.scale_limited_by for l in net.layers[:2]] == ["relay current"] * 2
    assert net.layers[0].v_th_mant == top
    lined, lines = with_lines(net)
    payload = sim.encode_input(net, np.random.default_rng(0).random((4, 8)))
    ones = np.ones(payload.shape[:2] + (lines,), np.int64)
    relays = sim.simulate(lined, np.concatenate([payload, ones], -1), record_all=True)
    assert relays[0][:, :, 12:].all() and relays[1][:, :, 10:].all()  # every step
    hot = dataclasses.replace(net.layers[0], chip=dataclasses.replace(net.layers[0].chip,
                                                                      v_th_mant=top + 2))
    with pytest.raises(ExportError, match=r"layer fc1.*relay.*LIFBoxCell"):
        netx.check_network(dataclasses.replace(net, layers=(hot, *net.layers[1:])))


@pytest.mark.lava
@requires_lava
@pytest.mark.parametrize("neuron, encoding", [(nodes.CubaLIF(200.0, 100.0), "current"),
                                              (nodes.IF(v_th=1.0), "rate")],
                         ids=["CubaLIF-current", "IF-rate"])
def test_lava_runs_biases_spike_exact(loihi2, tmp_path, neuron, encoding):
    """10 samples each, a bias on every layer (a recurrent one included): Lava equals the
    integer model of the biased network spike for spike."""
    from rewire.export.lava_run import run_netx

    cuba = isinstance(neuron, nodes.CubaLIF)
    net = compile_network(_biased(neuron, seed=1, scale=3.0 if cuba else 0.6,
                                  encoding=encoding), loihi2, 16)
    path = netx.write(net, tmp_path / "b.net")
    rng = np.random.default_rng(2)
    x = rng.random((10, 8)) if cuba else (rng.random((12, 10, 8)) < 0.3)
    payload = sim.encode_input(net, x)
    ref = sim.simulate(net, payload)[-1]
    assert ref.sum() > 0, "test network should spike"
    for b in range(payload.shape[1]):
        np.testing.assert_array_equal(run_netx(path, payload[:, b], aligned=True), ref[:, b])


@pytest.mark.slow
@pytest.mark.lava
@requires_lava
def test_lava_runs_a_trained_norse_batchnorm_conv_net_spike_exact(tmp_path):
    """Issue 22 case (2) end to end (about 30 s): the Norse conv net with ``BatchNorm2d`` as
    users write it (tests/export/field_models.py), trained briefly (1 epoch on 256 digits,
    BatchNorm weight 3 and readout x30 at init so that the readout spikes after so short a
    training, lr 1e-2), lowered with both BatchNorms folded
    into conv biases, compiled for loihi2 and run in Lava: equal to the integer model spike
    for spike on 10 test samples, with output spikes."""
    import sys
    import warnings
    from pathlib import Path

    import torch

    import rewire
    from rewire.compiler.bias_lines import chip_cost
    from rewire.export.lava_run import run_netx

    sys.path.insert(0, str(Path(__file__).parent))
    import field_models as fm

    image = (1, 8, 8)
    torch.manual_seed(0)
    model = fm.norse_bn_conv()
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(3.0)
        model[7].weight.mul_(30.0)
    xtr, ytr, xte, _ = fm.digits(256)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(0, len(xtr), 64):
        counts = fm.run(model, fm.encode(xtr[i:i + 64], image)).sum(0)
        loss = torch.nn.functional.cross_entropy(counts, ytr[i:i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = rewire.compile(model, "loihi2", input_max_value=16,
                             calibration=xtr[:64].reshape(64, *image).numpy(),
                             steps=fm.STEPS, encoding="current", input_gain=fm.GAIN,
                             input_shape=image)
    assert net.layers[0].bias_int is not None and net.layers[1].bias_int is not None
    cost = chip_cost(net)
    assert cost["relays"] == {"conv1": 64, "conv2": 16}  # one relay channel each
    path = netx.write(net, tmp_path / "bn.net")
    payload = sim.encode_input(net, xte[:10].reshape(10, *image).numpy())
    ref = sim.simulate(net, payload)[-1]
    assert ref.sum() > 0, "the readout should spike"
    np.testing.assert_array_equal(run_netx(path, payload, aligned=True), ref)
