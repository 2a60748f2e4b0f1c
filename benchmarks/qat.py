"""Quantization-aware training (issue 23, item 3): float-vs-integer class agreement and integer
accuracy without and with QAT (:mod:`rewire.training.qat`) on the main job, MNIST
784-800-10 at 1 % connectivity, and the recurrent and conv families.

Each case trains twice from the same seed: plain GradR, then the same run whose final
``--qat-epochs`` epochs train on the chip's grid. Measured on the test set:

* **float**: the accuracy of the trained torch model (with QAT: the chip's float image);
* **integer**: the accuracy of the compiled integer chip model (:mod:`rewire.compiler.simulate`);
* **agreement**: the fraction of test samples on which the torch model and the integer model
  predict the same class (the main job: the job's own float-vs-integer comparison).

Usage (one heavy run at a time; each appends one JSON line to ``--out``)::

    nice -n 10 python benchmarks/qat.py recurrent [--epochs 8] [--qat-epochs 2]
    nice -n 10 python benchmarks/qat.py conv|mnist|main ...
    python benchmarks/qat.py --table benchmarks/results/qat.jsonl   # the markdown table
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

import rewire
from rewire.compiler import simulate
from rewire.training.conv import SpikingConvNet
from rewire.training.data import load_digits_split, load_mnist_standard
from rewire.training.model import SpikingMLP, spike_count_logits
from rewire.training.qat import QAT, compile_image
from rewire.training.train import TrainConfig, train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
# the recurrent family: the model of tests/training/test_train_any.py, shared with the tests
from norse_models import Recurrent  # noqa: E402

MNIST_DIR = Path(__file__).resolve().parents[1] / "../shared/datasets/mnist"
MNIST_CALIBRATION = 4000  # training images bounding the graded input (compile time)


def rate_spikes(x: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(x.unsqueeze(1).expand(-1, steps, -1), generator=g)


@torch.no_grad()
def float_predictions(model, inputs, spikes: bool) -> np.ndarray:
    model.eval()
    preds = []
    for i in range(0, inputs.shape[1] if spikes else len(inputs), 500):
        part = inputs[:, i:i + 500] if spikes else inputs[i:i + 500]
        preds.append(spike_count_logits(model(part)).argmax(-1).numpy())
    return np.concatenate(preds)


def integer_predictions(net, payload: np.ndarray) -> np.ndarray:
    preds = []
    for i in range(0, payload.shape[1], 500):
        out = simulate.simulate(net, payload[:, i:i + 500])[-1]
        preds.append(simulate.class_scores(net, out).argmax(-1))
    return np.concatenate(preds)


def setup(case: str, epochs: int | None):
    """``(make_model, data kwargs, TrainConfig, budget kwargs, compile kwargs, test inputs,
    test labels, spikes)`` of one case."""
    if case == "mnist":
        split = load_mnist_standard(MNIST_DIR)
        make = lambda: SpikingMLP((784, 800, 10), steps=8)  # noqa: E731
        cfg = TrainConfig(epochs=epochs or 2, lr=4e-3, progress=False)
        comp = dict(input_max_value=split.max_value,
                    calibration=split.x_train[:MNIST_CALIBRATION].numpy())
        return make, dict(data=split), cfg, dict(connectivity=0.01), comp, split.x_test, \
            split.y_test, False
    split = load_digits_split()
    if case == "conv":
        make = lambda: SpikingConvNet((1, 8, 8), channels=(16, 32), kernels=(5, 3),  # noqa
                                      strides=(2, 1), pools=(1, 2), steps=16)
        cfg = TrainConfig(epochs=epochs or 20, lr=1e-2, progress=False,
                          controller={"alpha_max": 0.95, "short_below": 0})
        comp = dict(input_max_value=split.max_value, calibration=split.x_train.numpy())
        return make, dict(data=split), cfg, dict(connectivity=0.1), comp, split.x_test, \
            split.y_test, False
    if case == "recurrent":
        train_x, test_x = rate_spikes(split.x_train, 16, 0), rate_spikes(split.x_test, 16, 1)
        data = dict(data=DataLoader(TensorDataset(train_x, split.y_train), batch_size=64,
                                    shuffle=True, generator=torch.Generator().manual_seed(0)),
                    test_data=TensorDataset(test_x, split.y_test))
        cfg = TrainConfig(epochs=epochs or 8, lr=2e-2, progress=False)
        return Recurrent, data, cfg, dict(connectivity=0.1, max_fan_in=24), {}, \
            test_x.transpose(0, 1), split.y_test, True
    raise ValueError(f"case must be mnist, conv, recurrent or main, got {case!r}")


def run_case(case: str, epochs: int | None, qat_epochs: int | None) -> dict:
    make, data, cfg, budget_kw, comp, x_test, y_test, spikes = setup(case, epochs)
    profile = rewire.load_profile("loihi2")
    torch.manual_seed(cfg.seed)
    model = make()
    probe = copy.deepcopy(model)
    rewire.apply_gradr(probe)
    budget = rewire.model_budget(probe, profile, **budget_kw)
    qat = None if qat_epochs is None else QAT(profile, qat_epochs, **comp)
    start = time.perf_counter()
    res = train(model, budget=budget, config=cfg, qat=qat, **data)
    train_s = time.perf_counter() - start
    if qat is not None:
        net = compile_image(model, profile, **comp, **res.run_options)
    else:
        net = rewire.compile(model, profile, **comp, **res.run_options)
    payload = x_test.numpy().astype(np.int64) if spikes else \
        simulate.encode_input(net, x_test.numpy())
    f_pred = float_predictions(model, x_test, spikes)
    i_pred = integer_predictions(net, payload)
    y = y_test.numpy()
    return {"case": case, "qat_epochs": qat_epochs or 0, "epochs": cfg.epochs,
            "float": float((f_pred == y).mean()), "integer": float((i_pred == y).mean()),
            "agreement": float((f_pred == i_pred).mean()), "samples": int(len(y)),
            "connectivity": res.synapses / budget.total_synapses, "qat": res.qat,
            "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - start, 1)}


def run_main(qat_epochs: int | None, out_dir: str) -> dict:
    from rewire.job.runner import prepare, run
    from rewire.job.spec import JobSpec

    start = time.perf_counter()
    spec = JobSpec(out=out_dir, lava_samples=0,
                                   qat="off" if qat_epochs is None else qat_epochs)
    rep = run(prepare(spec), log=lambda *a: None)
    eq = rep["equivalence"]
    return {"case": "main", "qat_epochs": qat_epochs or 0, "epochs": spec.train.epochs,
            "float": eq["float_accuracy"], "integer": eq["integer_accuracy"],
            "agreement": eq["prediction_agreement"], "samples": eq["samples"],
            "connectivity": rep["result"]["connectivity"], "qat": rep.get("qat", {}),
            "train_s": round(rep["timings"]["train_s"], 1),
            "wall_s": round(time.perf_counter() - start, 1)}


def table(path: Path) -> str:
    """The markdown table of the JSON lines in ``path`` (last line per case and setting)."""
    rows = {}
    for line in path.read_text().splitlines():
        r = json.loads(line)
        rows[(r["case"], r["qat_epochs"] > 0)] = r
    out = ["| case | epochs | QAT epochs | float % | integer % | agreement % | integer − "
           "no-QAT float (points) | connectivity | connected, 0 on the grid | train s | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (case, on), r in sorted(rows.items()):
        base = rows.get((case, False))
        delta = "" if base is None else f"{100 * (r['integer'] - base['float']):+.2f}"
        out.append(f"| {case} | {r['epochs']} | {r['qat_epochs'] or '–'} | "
                   f"{100 * r['float']:.2f} | {100 * r['integer']:.2f} | "
                   f"{100 * r['agreement']:.2f} | {delta} | {r['connectivity']:.2%} | "
                   f"{r['qat'].get('grid_zero', '–')} | {r['train_s']} | {r['wall_s']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", nargs="?", choices=("main", "mnist", "recurrent", "conv"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--qat-epochs", type=int, default=None, help="QAT epochs (omit: no QAT)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "qat.jsonl"))
    p.add_argument("--table", default=None, help="print the table of this JSON-lines file")
    args = p.parse_args(argv)
    if args.table:
        print(table(Path(args.table)))
        return 0
    torch.set_num_threads(1)
    if args.case == "main":
        r = run_main(args.qat_epochs, "/tmp/qat_bench_main")
    else:
        r = run_case(args.case, args.epochs, args.qat_epochs)
    print(json.dumps(r))
    with open(args.out, "a") as f:
        f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
