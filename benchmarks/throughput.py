"""Throughput: onnxruntime (per-step graph, unrolled Scan graph) vs Norse eager, in time steps
per second, for the MNIST fully connected SNN (784-800-10, Norse LIF), batch 1 and 256.

The network has random weights pruned to the main job's connectivity (10 %) and scaled so
that it spikes; input is real MNIST digits (the t10k file in ``/work/shared/datasets/mnist``
when present, else uniform noise), constant current x4. Both runtimes get the same number of
threads (``--threads``, default 1: the machine is shared). The integer chip model runs twice:
as exported (each layer's synaptic sum in float32 ``MatMul`` where that is exact,
:func:`rewire.export.onnx_int.accumulators`) and with its 784x800 layer forced onto the int64
``MatMul`` fallback; both must equal ``rewire.compiler.simulate.simulate`` spike for spike, the
float graphs Norse. One run prints one table::

    .venv/bin/python benchmarks/throughput.py [--steps 8] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import dataclasses

from rewire.compiler.quantize import compile_network
from rewire.compiler.simulate import encode_input, simulate
from rewire.export import onnx_graph, onnx_int, onnx_step, onnx_unrolled
from rewire.hw_profiles.profile import load_profile
from rewire.training.model import SpikingMLP

MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


def mnist_fc(steps: int, connectivity: float = 0.1, seed: int = 0) -> SpikingMLP:
    """784-800-10 SpikingMLP with random weights, ``connectivity`` of them kept."""
    torch.manual_seed(seed)
    model = SpikingMLP((784, 800, 10), steps=steps)
    with torch.no_grad():
        for lin, gain in zip(model.linears, (12.0, 12.0)):
            mask = torch.rand(lin.weight.shape) < connectivity
            lin.weight.mul_(mask * gain / connectivity ** 0.5)
    return model


def images(n: int) -> np.ndarray:
    """``n`` MNIST test images ``(n, 784)`` in [0, 1] (noise when the data set is absent)."""
    try:
        from rewire.training.data import load_split

        return load_split("mnist", str(MNIST)).x_test[:n].numpy()
    except Exception:  # the benchmark still runs without the data set
        return np.random.default_rng(0).random((n, 784)).astype(np.float32)


def rate(fn, steps: int, repeats: int) -> float:
    """Best-of-``repeats`` steps per second of ``fn()``, which runs ``steps`` steps."""
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return steps / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="time steps per run (T)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and onnxruntime")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = args.threads
    model = mnist_fc(args.steps)
    net = compile_network(model, load_profile("loihi2"), 255)

    def sess(m):
        return ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])

    step_s, unrolled_s, int_s = (sess(onnx_step.build(net)), sess(onnx_unrolled.build(net)),
                                 sess(onnx_int.build(net)))
    acc = onnx_int.accumulators(net)
    # the same graph with layer 0 on the int64 MatMul: a payload bound past 2**24 / row (the
    # input_max_value of the copy only selects the path; the payload fed is unchanged)
    slow = dataclasses.replace(net, input_max_value=onnx_int.FLOAT32_EXACT // acc[0].row + 1)
    assert onnx_int.accumulators(slow)[0].dtype == "int64"
    int64_s = sess(onnx_int.build(slow))
    _, states = onnx_graph.body_from_meta(step_s)
    rows = []
    for batch in (1, 256):
        x = images(batch)
        seq = model.encode(torch.as_tensor(x))
        x_seq = np.ascontiguousarray(np.broadcast_to(x, (args.steps,) + x.shape))
        payload = np.ascontiguousarray(encode_input(net, x))  # round(x * input_max_value)

        def norse():
            with torch.no_grad():
                return model.run_encoded(seq)

        def per_step():
            return onnx_graph.run_steps(step_s, x_seq, states, np.float32)

        def unrolled():
            return unrolled_s.run(["z"], {"x": x_seq})[0]

        def integer():
            return int_s.run(["z"], {"x": payload})[0]

        def integer_int64():
            return int64_s.run(["z"], {"x": payload})[0]

        ref = norse().numpy()
        assert np.array_equal(per_step(), ref) and np.array_equal(unrolled(), ref)
        chip = simulate(net, payload)[-1]
        assert np.array_equal(integer(), chip) and np.array_equal(integer_int64(), chip)
        base = rate(norse, args.steps, args.repeats)
        for name, fn in (("Norse eager", norse), ("onnxruntime per-step", per_step),
                         ("onnxruntime unrolled (Scan)", unrolled),
                         ("onnxruntime integer chip model", integer),
                         ("  same, int64 MatMul layer 0", integer_int64)):
            r = base if fn is norse else rate(fn, args.steps, args.repeats)
            rows.append((batch, name, r, r / base))
        rows.append((batch, "(output spikes per sample)", ref.sum() / batch, float("nan")))
        rows.append((batch, "(chip output spikes per sample)", chip.sum() / batch, float("nan")))
    print(f"MNIST FC 784-800-10, {net.synapses} synapses ({net.synapses / net.total_synapses:.1%}"
          f"), T={args.steps}, {args.threads} thread(s), torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}; integer model sums per layer: "
          f"{', '.join(f'{a.dtype} (bound {a.bound})' for a in acc)}")
    print(f"{'batch':>5}  {'runtime':<32}{'steps/s':>12}{'vs Norse':>10}")
    for batch, name, r, ratio in rows:
        if np.isnan(ratio):
            print(f"{batch:>5}  {name:<32}{r:>12.1f}")
        else:
            print(f"{batch:>5}  {name:<32}{r:>12.1f}{ratio:>9.2f}x")


if __name__ == "__main__":
    main()
