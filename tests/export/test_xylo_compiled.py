"""From an IR network through ``rewire.compile(net, "xylo")`` and the Xylo writer into
XyloSim: the compiled network's integer model equals XyloSim in every recorded state on every
sample (plain and recurrent hidden layers, 2 and 3 layers). Skipped with the reason where
xylosim is not installed. About 2 s.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import rewire
from rewire.compiler import simulate
from rewire.errors import RewireWarning
from rewire.export import write, xylo_run

sys.path.insert(0, str(Path(__file__).parents[1] / "compiler"))
from xylo_nets import chain  # noqa: E402

pytestmark = pytest.mark.skipif(xylo_run.xylosim_missing() is not None,
                                reason=str(xylo_run.xylosim_missing()))


@pytest.mark.parametrize("sizes, recurrent", [((16, 12, 8), ()), ((16, 10, 8, 6), (1,)),
                                              ((12, 20, 8), (0,))])
def test_a_compiled_network_runs_in_xylosim_state_for_state(sizes, recurrent, tmp_path):
    x = np.random.default_rng(0).random((30, sizes[0]))
    with warnings.catch_warnings():  # class agreement of an untrained net: not the point here
        warnings.simplefilter("ignore", RewireWarning)
        net = rewire.compile(chain(sizes, seed=1, scale=0.5, steps=10, recurrent=recurrent),
                             "xylo", calibration=x[:20])
    files = write(net, tmp_path, formats=["xylo"])
    payload = simulate.encode_input(net, x)
    labels = simulate.class_scores(net, simulate.simulate(net, payload)[-1]).argmax(-1)
    check = xylo_run.xylo_check(net, files["xylo"], payload, 30, labels)
    assert check["passed"], check
    assert check["samples_equal"] == 30 and check["states_equal"] == check["states_compared"]
    assert check["output_spikes"] > 0 and check["accuracy"] == 1.0
