"""MNIST convolutional SNN through the whole pipeline: GradR, Loihi 2 fixed point, netx, Lava.

Trains :class:`rewire.training.conv.SpikingConvNet` (conv 5x5/2 -> LIF -> conv 3x3 -> LIF ->
sum pool 2x2 -> LIF -> Linear -> LIF, T = 8, constant-current input) with GradR inside a
connectivity budget on the MNIST subset (first 8,000 of the 10k test set to train, last 2,000
to test), compiles it for ``loihi2``, writes the netx, ONNX and NIR files, and prints one
table comparing the float Norse model, the integer chip model, Lava's Loihi 2 simulator and
the exported files run on the whole test set (float unrolled ONNX and integer ONNX in
onnxruntime, the NIR file imported back into Norse)::

    .venv/bin/python benchmarks/mnist_conv.py --data-dir ../shared/datasets/mnist \\
        --epochs 15 --lr 5e-3 --connectivity 0.25 --lava-samples 10 --out build/mnist_conv

It is the same job as ``python -m rewire.export --model conv`` (:mod:`rewire.job.runner`);
the full report is in ``<out>/report.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from rewire.frontends import nir as nir_frontend
from rewire.export import nir_graph, onnx_int, onnx_unrolled
from rewire.job.runner import JobSpec, prepare, run
from rewire.training.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def exported_accuracies(prep, out: Path) -> dict:
    """Test accuracy of the written files on the whole test set: the unrolled float ONNX and
    the integer ONNX in onnxruntime, and the NIR file imported into Norse; plus the share of
    test samples whose output spike trains equal the trained Norse model's."""
    x, y = prep.split.x_test, prep.split.y_test.numpy()
    norse = prep.model.cpu().eval()(x).numpy()
    onnx_z = onnx_unrolled.run(out / "model_unrolled.onnx", x.numpy())
    nir_module = nir_frontend.load(out / "model.nir")
    nir_z = nir_module(x.reshape(len(x), *nir_module.network.input_shape)).numpy()
    net_meta = onnx_int.session(out / "model_int.onnx").get_modelmeta().custom_metadata_map
    payload = np.round(x.numpy() * int(net_meta["input_max_value"])).astype(np.int64)
    int_z = onnx_int.run(out / "model_int.onnx", np.broadcast_to(payload, (prep.model.steps,
                                                                          *payload.shape)))

    def acc(z):
        return float(np.mean(z.sum(0).argmax(-1) == y))

    def same(z):
        return float(np.mean(np.all(z == norse, axis=(0, 2))))

    return {"onnx_unrolled": acc(onnx_z), "onnx_same_spikes": same(onnx_z),
            "onnx_int": acc(int_z), "nir": acc(nir_z), "nir_same_spikes": same(nir_z)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets" / "mnist"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--connectivity", type=float, default=0.25)
    p.add_argument("--alpha", type=float, default=0.1, help="initial GradR prior penalty")
    p.add_argument("--lr", type=float, default=5e-3, help="GradR (Adam) learning rate")
    p.add_argument("--channels", type=int, nargs="+", default=[8, 16])
    p.add_argument("--kernels", type=int, nargs="+", default=[5, 3])
    p.add_argument("--strides", type=int, nargs="+", default=[2, 1])
    p.add_argument("--pools", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--lava-samples", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: small convs stall in a busy thread pool)")
    p.add_argument("--out", default=str(ROOT / "build" / "mnist_conv"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = JobSpec(profile="loihi2", out=args.out, dataset="mnist", data_dir=args.data_dir,
                   model="conv", channels=tuple(args.channels), kernels=tuple(args.kernels),
                   strides=tuple(args.strides), pools=tuple(args.pools), steps=args.steps,
                   connectivity=args.connectivity,
                   train=TrainConfig(epochs=args.epochs, batch_size=64, lr=args.lr,
                                     alpha=args.alpha, seed=args.seed, progress=False),
                   lava_samples=args.lava_samples)
    prep = prepare(spec)
    report = run(prep, log=lambda msg: print(msg, flush=True))
    r, lava = report["result"], report["lava_check"]
    files = exported_accuracies(prep, Path(args.out))
    lava_text = (f"{lava['spike_exact']}/{lava['samples']} samples spike-exact"
                 if "samples" in lava else f"skipped ({lava['skipped']})")
    rows = [
        ("model", "accuracy (2,000 test)", "note"),
        ("float (Norse)", f"{100 * r['float_accuracy']:.2f} %",
         f"GradR, {args.epochs} epochs, connectivity {100 * r['connectivity']:.2f} % "
         f"({r['synapses']} / {report['network']['total_synapses']} synapses)"),
        ("integer (loihi2)", f"{100 * r['quantized_accuracy']:.2f} %",
         f"drop {100 * r['quantization_drop']:+.2f} points (target <= 0.5)"),
        ("Lava netx", "-", lava_text),
        ("ONNX unrolled (float)", f"{100 * files['onnx_unrolled']:.2f} %",
         f"onnxruntime; same spikes as Norse on {100 * files['onnx_same_spikes']:.2f} % of "
         f"test samples"),
        ("ONNX integer", f"{100 * files['onnx_int']:.2f} %",
         "onnxruntime; = integer chip model" if files["onnx_int"] == r["quantized_accuracy"]
         else "onnxruntime; DIFFERS from the integer chip model"),
        ("NIR -> Norse", f"{100 * files['nir']:.2f} %",
         f"nir.read + rewire.frontends.nir.load; same spikes as the NIR-free Norse run on "
         f"{100 * files['nir_same_spikes']:.2f} % of test samples"),
    ]
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, width)))
    print(json.dumps({"float_accuracy": r["float_accuracy"],
                      "quantized_accuracy": r["quantized_accuracy"],
                      "drop_points": 100 * r["quantization_drop"],
                      "connectivity": r["connectivity"], "lava": lava, "files": files,
                      "layers": [(l["name"], l["shape"], l["synapses"], l["scale_limited_by"])
                                 for l in report["layers"]],
                      "timings": report["timings"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
