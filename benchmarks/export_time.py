"""Compile + export time and peak memory of one dense layer of 10**6 .. 10**8 synapses.

Each size runs in its own child process (so that its peak memory is its own): an IR network
of one ``n x n`` dense layer (``n = round(sqrt(synapses))``, float32 weights drawn from
N(0, 1/n), seed 0) and LIF neurons, current encoding, is compiled for the ``loihi2`` profile
(:func:`rewire.compiler.quantize.compile_network`: scale choice, rounding, netx weight grid,
core mapping) and written in every format the profile lists (:data:`rewire.export.WRITERS`:
netx, the three ONNX files, NIR), each writer's check and write timed on its own. Memory is
the child's peak resident set (``ru_maxrss``) and its growth over the peak after the network
was built (the weights themselves: 4 bytes per synapse).

The same script runs on older checkouts whose ``WRITERS`` hold plain ``(file name, module,
function)`` tuples (``PYTHONPATH=<old checkout> python benchmarks/export_time.py``).

Run::

    .venv/bin/python benchmarks/export_time.py [--synapses 1e6 1e7 6.4e7 1e8]
        [--out benchmarks/results/export_time.md] [--label new]
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(synapses: int) -> dict:
    """Build, compile and export one network; return the timings (s), sizes and memory."""
    import numpy as np

    from rewire import export
    from rewire.compiler.quantize import compile_network
    from rewire.hw_profiles.profile import load_profile
    from rewire.ir import nodes
    from rewire.ir.network import Network

    n = int(round(math.sqrt(synapses)))
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((n, n), dtype=np.float32) / np.float32(math.sqrt(n))
    net = Network(nodes=(nodes.Dense(weight), nodes.LIF(100.0, v_th=1.0)), input_shape=(n,),
                  steps=16, encoding="current", input_gain=4.0)
    del weight
    profile = load_profile("loihi2")
    row = {"synapses": n * n, "n": n, "rss_setup_mb": _rss_mb()}
    t0 = time.perf_counter()
    compiled = compile_network(net, profile)
    row["compile"] = time.perf_counter() - t0
    row["rss_compile_mb"] = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in profile.formats:
            for fw in export.WRITERS[fmt]:
                if hasattr(fw, "key"):
                    key, name, func, check = fw.key, fw.name, fw.func, fw.check
                    module = importlib.import_module(fw.module)
                else:  # older checkouts: (file name, module, function)
                    name, module, func, check = fw[0], importlib.import_module(fw[1]), fw[2], ""
                    key = module.__name__.rsplit(".", 1)[1].replace("nir_graph", "nir")
                t0 = time.perf_counter()
                if check:
                    getattr(module, check)(compiled)
                getattr(module, func)(compiled, Path(tmp) / name)
                row[key] = time.perf_counter() - t0
                row[key + "_mb"] = (Path(tmp) / name).stat().st_size / 2**20
                (Path(tmp) / name).unlink()
    row["rss_peak_mb"] = _rss_mb()
    return row


def table(rows: list[dict], label: str) -> str:
    """The markdown table of ``rows`` (one per size)."""
    keys = [k for k in ("netx", "onnx_step", "onnx_unrolled", "onnx_int", "nir")
            if any(k in r for r in rows)]
    head = (["code", "synapses", "compile s"] + [f"{k} s" for k in keys]
            + ["total s", "peak RSS MB", "growth MB", "weights MB"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {label} | {r['synapses']:.3g} | {r['error']} |")
            continue
        total = r["compile"] + sum(r.get(k, 0.0) for k in keys)
        cells = ([label, f"{r['synapses']:.3g}", f"{r['compile']:.2f}"]
                 + [f"{r[k]:.2f}" if k in r else "-" for k in keys]
                 + [f"{total:.2f}", f"{r['rss_peak_mb']:.0f}",
                    f"{r['rss_peak_mb'] - r['rss_setup_mb']:.0f}",
                    f"{4 * r['synapses'] / 2**20:.0f}"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synapses", type=float, nargs="+", default=[1e6, 1e7, 6.4e7, 1e8])
    p.add_argument("--out", type=Path, help="append the table to this markdown file")
    p.add_argument("--label", default="this code", help="first column of the table")
    p.add_argument("--timeout", type=float, default=900, help="seconds per size")
    p.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(int(args.child))))
        return 0
    rows = []
    for s in args.synapses:
        try:
            done = subprocess.run([sys.executable, __file__, "--child", str(s)], text=True,
                                  capture_output=True, timeout=args.timeout)
            lines = done.stdout.strip().splitlines()
            rows.append(json.loads(lines[-1]) if done.returncode == 0 and lines else
                        {"synapses": s, "error": (done.stderr.strip().splitlines() or ["?"])[-1]})
        except subprocess.TimeoutExpired:
            rows.append({"synapses": s, "error": f"over {args.timeout:.0f} s"})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = table(rows, args.label)
    print(text)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
