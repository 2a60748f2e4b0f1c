"""The Xylo compiler (rewire/compiler/xylo.py): dispatch by the profile's neuron model, the
scale, the shared weight shifts and the thresholds (whole file: ~3 s)."""

from __future__ import annotations

import numpy as np
import pytest

from rewire.compiler.quantize import COMPILERS, compile_network
from rewire.compiler.xylo import compile_xylo, matrix_of, xylo_shifts
from rewire.errors import CompileError
from rewire.ir.chip_bitshift import CompiledBitshiftLIF
from rewire.ir.compiled_layers import CompiledRecurrentDense
from xylo_nets import XYLO, chain

pytestmark = pytest.mark.filterwarnings("ignore::rewire.errors.RewireWarning")


def test_compile_network_dispatches_xylo_by_neuron_model():
    assert COMPILERS["cuba_bitshift"] is compile_xylo
    net = compile_network(chain((16, 20, 8)), XYLO)
    assert [type(l.chip) for l in net.layers] == [CompiledBitshiftLIF] * 2
    assert [(l.i_decay, l.v_decay) for l in net.layers] == [(2, 3), (2, 3)]
    assert net.input_max_value == 15 and net.mapping.cores == 1


def test_weights_are_int8_shifted_one_shift_per_matrix():
    net = compile_network(chain((16, 30, 20, 8), recurrent=(0, 1)), XYLO,
                          calibration=np.random.default_rng(1).uniform(size=(64, 16)))
    shifts = xylo_shifts(net)
    assert set(shifts) == {"weights_in", "weights_rec", "weights_out"}
    n = len(net.layers)
    for k, layer in enumerate(net.layers):
        parts = [(matrix_of(k, n), layer.weight_int)]
        if isinstance(layer, CompiledRecurrentDense):
            parts.append((matrix_of(k, n, True), layer.weight_rec_int))
        for matrix, w in parts:
            s = shifts[matrix]
            assert 0 <= s <= 8
            assert not np.any(w % (1 << s))
            assert -128 <= (w >> s).min() and (w >> s).max() <= 127
        assert 1 <= layer.v_th_mant <= 32767
        assert layer.v_th_mant == round(layer.neuron.v_th * layer.scale)


def test_the_largest_weight_uses_the_int8_range():
    """A weight-limited layer puts its largest weight at 127 << shift."""
    net = compile_network(chain((16, 20, 8), scale=1.0), XYLO)
    shifts = xylo_shifts(net)
    first = net.layers[0]
    assert 64 <= int(np.abs(first.weight_int).max()) >> shifts["weights_in"] <= 127


def test_a_norse_lif_is_refused_with_the_nearest_dash():
    """Norse's defaults (decays 0.8 / 0.9) round to dash_syn 2, dash_mem 3 (0.75 / 0.875)."""
    from rewire.ir.nodes import CubaLIF
    norse = CubaLIF(tau_syn_inv=200.0, tau_mem_inv=100.0)
    net = chain((16, 20, 8), neurons=[norse, norse])
    with pytest.raises(CompileError, match=r"LIFBitshiftCell\(dash_syn=2, dash_mem=3\)"):
        compile_network(net, XYLO)


def test_fan_out_per_hidden_layer_counts_rec_and_out():
    from rewire.compiler.xylo_checks import fan_out
    w2 = np.zeros((6, 10), np.float32)
    w2[:, 0] = 0.5
    w2[:2, 1] = 0.5
    net = chain((16, 10, 6, 8), weights=[np.ones((10, 16), np.float32) * 0.1, w2,
                                         np.full((8, 6), 0.2, np.float32)], recurrent=(1,))
    compiled = compile_network(net, XYLO)
    rec = np.count_nonzero(compiled.layers[1].weight_rec_int, axis=0)
    assert fan_out(compiled) == {"fc1": 6, "fc2": int((rec + 8).max())}


def test_calibration_keeps_i_and_v_in_int16(monkeypatch):
    """Compiled with its inputs as calibration, the integer model never saturates I or V on
    them; the same net compiled without (one step's worst case only) does."""
    from rewire.compiler import simulate as sim
    rng = np.random.default_rng(3)
    net = chain((16, 30, 8), scale=0.5, steps=16)
    x = rng.uniform(size=(200, 16))
    seen = []
    plain = sim.NumpyOps.saturate
    # states are (B, n); the ordered accumulation also asks saturate for its range (0-d)
    monkeypatch.setattr(sim.NumpyOps, "saturate",
                        lambda self, v: (np.ndim(v) and seen.append(int(np.abs(v).max())))
                        or plain(self, v))
    for cal in (x, None):
        seen.clear()
        compiled = compile_network(net, XYLO, 15, calibration=cal)
        sim.simulate(compiled, sim.encode_input(compiled, x))
        if cal is not None:
            assert max(seen) <= 32767 and "state bits" in [l.scale_limited_by
                                                             for l in compiled.layers]
        else:
            assert max(seen) > 32767
