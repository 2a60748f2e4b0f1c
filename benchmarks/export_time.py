"""Export time: compile + netx HDF5 + ONNX for random pruned nets of ~10 K, 100 K and 1 M synapses.

Each net is a :class:`rewire.training.model.SpikingMLP` ``(n, n, 10)`` with 10 % of its
weights kept (a GradR-pruned net's connectivity), ``n`` chosen so that about the target number
of synapses stays connected. For each it times, on the CPU:

* ``compile``: :func:`rewire.compiler.quantize.compile_network` (scale choice, rounding, netx
  weight grid, core mapping), without calibration data;
* ``netx``: :func:`rewire.export.netx.write` (int16 dense weights), and as the baseline the
  same file with int64 weights (what the writer did before, and what lava-dl's own exporter
  writes as float);
* ``onnx``: :func:`rewire.export.onnx_step.write` (per-step float graph);
* ``total``: compile + netx + ONNX. Goal: 1 M synapses in <= 5 s.

Run::

    .venv/bin/python benchmarks/export_time.py [--targets 10000 100000 1000000] [--repeat 1]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from rewire.compiler.quantize import compile_network
from rewire.export import netx, onnx_step
from rewire.hw_profiles.profile import load_profile
from rewire.training.model import SpikingMLP

DENSITY = 0.1


def random_net(target: int, seed: int = 0) -> SpikingMLP:
    """A ``(n, n, 10)`` SpikingMLP with ~``target`` connected synapses (10 % density)."""
    n = max(2, int(round((-10 + math.sqrt(100 + 4 * target / DENSITY)) / 2)))
    torch.manual_seed(seed)
    model = SpikingMLP((n, n, 10), steps=16)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(torch.rand(lin.weight.shape, generator=gen) < DENSITY)
    return model


def _netx_int64(net, path: Path) -> None:
    """Baseline: the same netx layout with int64 weights."""
    with h5py.File(path, "w") as f:
        for k, layer in enumerate(net.layers):
            f.create_dataset(f"layer/{k}/weight", data=layer.weight_int.astype(np.int64))


def bench(target: int, profile, repeat: int) -> dict:
    model = random_net(target)
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            t0 = time.perf_counter()
            net = compile_network(model, profile, input_max_value=255)
            t1 = time.perf_counter()
            netx.write(net, Path(tmp) / "m.net")
            t2 = time.perf_counter()
            onnx_step.write(net, Path(tmp) / "m.onnx")
            t3 = time.perf_counter()
            _netx_int64(net, Path(tmp) / "b.net")
            t4 = time.perf_counter()
            row = {"compile": t1 - t0, "netx": t2 - t1, "onnx": t3 - t2, "total": t3 - t0,
                   "netx_int64": t4 - t3}
            best = {k: min(v, best.get(k, v)) for k, v in row.items()}
        size = (Path(tmp) / "m.net").stat().st_size
    return {"synapses": net.synapses, "sizes": net.sizes, "netx_mb": size / 2**20, **best}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--repeat", type=int, default=1, help="runs per net (best time is shown)")
    args = p.parse_args(argv)
    profile = load_profile("loihi2")
    print(f"{'synapses':>10} {'sizes':>18} {'compile s':>10} {'netx s':>8} {'onnx s':>8} "
          f"{'total s':>8} {'netx MB':>8} | {'baseline netx int64 s':>22}")
    for target in args.targets:
        r = bench(target, profile, args.repeat)
        print(f"{r['synapses']:>10} {str(tuple(r['sizes'])):>18} {r['compile']:>10.3f} "
              f"{r['netx']:>8.3f} {r['onnx']:>8.3f} {r['total']:>8.3f} {r['netx_mb']:>8.1f} | "
              f"{r['netx_int64']:>22.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
