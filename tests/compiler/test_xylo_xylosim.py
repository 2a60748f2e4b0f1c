"""The compiler's weights, shifts, dashes and thresholds run in XyloSim (``xylosim`` 0.1.3,
the optional ``xylo`` extra; skipped without it) as rewire's integer model on the chip's
timing says: every hidden ``Vmem`` and every readout spike equal, with weight shifts of 0 to
5. The writer's own check is tests/export/test_xylo*.py. ~1 s."""

from __future__ import annotations

import numpy as np
import pytest
from xylo_nets import XYLO, chain

from rewire.compiler.quantize import compile_network
from rewire.compiler.simulate import NumpyOps
from rewire.compiler.xylo import xylo_shifts

xylosim = pytest.importorskip("xylosim.v2", reason="xylosim is not installed (the xylo extra)")
pytestmark = pytest.mark.filterwarnings("ignore::rewire.errors.RewireWarning")


def xylo_layer(net):
    """A ``XyloLayer`` of a compiled 16-N-8 network (keyword arguments, as rockpool 3.1's
    ``XyloSim`` builds it; ``weights >> shift`` are the int8 values) and its arguments, which
    must outlive it (the layer keeps pointers into them: freed, ``evolve`` segfaults)."""
    shifts = xylo_shifts(net)
    hid, out = net.layers
    w_in = (hid.weight_int >> shifts["weights_in"]).T
    w_out = (out.weight_int >> shifts["weights_out"]).T
    n_h, n_o = hid.shape[0], out.shape[0]
    syn = xylosim.XyloSynapse
    kw = dict(
        synapses_in=[[syn(j, 0, int(w)) for j, w in enumerate(row) if w] for row in w_in],
        synapses_rec=[[] for _ in range(n_h)],
        synapses_out=[[syn(j, 0, int(w)) for j, w in enumerate(row) if w] for row in w_out],
        aliases=[[] for _ in range(n_h)], threshold=[hid.v_th_mant] * n_h,
        threshold_out=[out.v_th_mant] * n_o, has_bias=False, bias=[0] * n_h,
        bias_out=[0] * n_o, weight_shift_inp=shifts["weights_in"],
        weight_shift_rec=shifts["weights_rec"], weight_shift_out=shifts["weights_out"],
        dash_mem=[hid.v_decay] * n_h, dash_mem_out=[out.v_decay] * n_o,
        dash_syns=[[hid.i_decay, 0]] * n_h, dash_syns_out=[[out.i_decay]] * n_o, name="probe")
    return xylosim.XyloLayer(**kw), kw


def chip_timing(net, payload):
    """rewire's integer step with the readout one step late: hidden ``V`` and readout spikes."""
    ops = NumpyOps(XYLO.neuron)
    u = [np.zeros((1, l.shape[0]), np.int64) for l in net.layers]
    v, z = [x.copy() for x in u], [x.copy() for x in u]
    v_hidden, spikes = [], []
    for p in payload:
        prev = list(z)
        for k, layer in enumerate(net.layers):
            s = p[None] if k == 0 else prev[k - 1]
            a = s @ layer.weight_int.T.astype(np.int64)
            u[k], v[k], _, n = layer.chip.int_step(ops, u[k], v[k], a)
            z[k] = n.astype(np.int64)
        v_hidden.append(v[0][0].copy())
        spikes.append(z[1][0])
    return np.array(v_hidden), np.array(spikes)


@pytest.mark.parametrize("scale, calibrated", [(0.6, True), (0.6, False), (0.05, True),
                                               (0.05, False)])
def test_compiled_network_runs_in_xylosim_as_rewire_says(scale, calibrated):
    rng = np.random.default_rng(0)
    cal = rng.uniform(size=(128, 16)) if calibrated else None
    net = compile_network(chain((16, 20, 8), scale=scale, steps=12), XYLO, 15, calibration=cal)
    payload = rng.integers(0, 16, size=(12, 16))
    layer, _kw = xylo_layer(net)
    out = np.array(layer.evolve(payload.tolist()))
    v_hidden, spikes = chip_timing(net, payload)
    assert np.array_equal(np.array(layer.rec_v_mem).T, v_hidden)
    assert np.array_equal(out, spikes)
    assert np.abs(v_hidden).max() > 0


def test_the_probe_uses_weight_shifts():
    """The cases above include shifted matrices (so the shift is what XyloSim applies)."""
    rng = np.random.default_rng(0)
    shifts = [xylo_shifts(compile_network(chain((16, 20, 8), scale=s, steps=12), XYLO, 15,
                                          calibration=c))
              for s, c in ((0.6, None), (0.05, rng.uniform(size=(128, 16))))]
    assert max(max(s.values()) for s in shifts) >= 2
