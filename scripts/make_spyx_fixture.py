"""Write tests/data/spyx_lif.nir: a spyx 1.0 network exported with spyx's own ``to_nir``, with
a sidecar ``spyx_lif.json`` holding random input spikes and spyx's own output spikes.

spyx 1.0 needs Python >= 3.11 and JAX, which rewire's venv (Python 3.10) does not have, so this
script runs in a venv of its own::

    python3.11 -m venv /tmp/spyx-venv
    /tmp/spyx-venv/bin/pip install "spyx==1.0.0" "nir==1.0.8"
    /tmp/spyx-venv/bin/python scripts/make_spyx_fixture.py [--out tests/data]

The net is ``Linear(12, 20) -> LIF(beta 0.9) -> Linear(20, 5) -> LIF(beta 0.8)`` (bias-free,
weights from ``nnx.Rngs(0)`` times 3 so that it spikes), exported at ``dt = 1e-3`` s, run by
``spyx.nn.run`` on 8 random spike trains of 40 steps. spyx writes ``tau = dt / (1 - beta)`` and
``r = beta``; its LIF takes the spike from the pre-update ``V`` and resets by subtraction
(``V = beta V + x - s thr``), which rewire's tests compare against.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import nir
import numpy as np
import spyx
import spyx.nn as snn
from flax import nnx
from spyx.nir import to_nir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    args = parser.parse_args(argv)
    rngs = nnx.Rngs(0)
    model = snn.Sequential(nnx.Linear(12, 20, use_bias=False, rngs=rngs),
                           snn.LIF((20,), beta=0.9, rngs=rngs),
                           nnx.Linear(20, 5, use_bias=False, rngs=rngs),
                           snn.LIF((5,), beta=0.8, rngs=rngs))
    for layer in (model.layers[0], model.layers[2]):
        layer.kernel[...] = layer.kernel[...] * 3.0
    graph = to_nir(model, {"input": np.array([12])}, {"output": np.array([5])}, dt=1e-3)
    x = (np.random.default_rng(0).random((40, 8, 12)) < 0.3).astype(np.float32)
    out, _ = snn.run(model, jnp.asarray(x))
    side = {"framework": f"spyx {spyx.__version__}", "dt": 1e-3, "x": x.tolist(),
            "out": np.asarray(out).tolist()}
    args.out.mkdir(parents=True, exist_ok=True)
    for suffix, write in ((".nir", lambda p: nir.write(p, graph)),
                          (".json", lambda p: Path(p).write_text(json.dumps(side)))):
        fd, tmp = tempfile.mkstemp(dir=args.out, suffix=suffix + ".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, args.out / f"spyx_lif{suffix}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    print(f"spyx_lif: {int(np.asarray(out).sum())} output spikes")


if __name__ == "__main__":
    main()
