"""Train small SNNs in their own frameworks and export them to NIR: the fixtures of
tests/frontends/test_nir_fixtures.py and of issue 14's Done-when families (7) snnTorch
Leaky/Synaptic, (8) snnTorch RLeaky, (9) Norse to_nir.

Each net is 64-64-10 on scikit-learn's digits (8x8 images, pixel / 16 in [0, 1]), presented as a
constant input current for ``steps`` steps, trained with BPTT and Adam on the cross-entropy of
the output spike counts, then exported with its framework's own NIR exporter:

* ``snntorch_leaky.nir``: ``Linear -> Leaky -> Linear -> Leaky`` (``reset_mechanism='zero'``,
  ``reset_delay=False``: the semantics the IR has), snnTorch 1.0;
* ``snntorch_synaptic.nir``: ``Linear -> Synaptic -> Linear -> Leaky`` (same reset);
* ``snntorch_rleaky.nir``: ``Linear -> RLeaky (all-to-all, recurrent Linear without bias) ->
  Linear -> Leaky`` (same reset);
* ``norse_lif.nir``: ``norse.SequentialState(Linear, LIFCell, Linear, LIFCell)`` at dt = 1e-3 s,
  exported with Norse 1.1's ``norse.to_nir`` (its τ bug kept: the frontend corrects it).

snnTorch 1.0's ``export_to_nir`` fails with nir 1.0.8 ("Type inference error", snntorch #410),
so the snnTorch graphs are made with what it calls, ``nirtorch.extract_nir_graph`` with
snnTorch's own ``_extract_snntorch_module``. Neither snnTorch's nor Norse's graphs can be
written by ``nir.write`` as they come (scalar parameters: "Scalar datasets don't support
chunk/filter options", norse #412; torch tensors): :func:`writable` converts tensors to numpy
and broadcasts each neuron's scalar parameters to its layer's width, changing no value. The
graphs' metadata stay empty, as the frameworks write them; a sidecar ``<name>.json`` records
dt, steps, encoding, the framework's test accuracy and its own output spike counts on 20 test
images, which the tests compare with the IR's.

Run from the repository root (about a minute on 2 cores)::

    PYTHONPATH=$PWD .venv/bin/python scripts/make_nir_fixtures.py [--out tests/data]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import nir
import numpy as np
import torch

STEPS = 16
SAMPLES = 20  # test images whose framework outputs the sidecar stores


def digits(seed: int = 0):
    """``(x_train, y_train, x_test, y_test)``: digits / 16 as float32, a fixed 1500/297 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return (torch.from_numpy(x[:1500]), torch.from_numpy(y[:1500]),
            torch.from_numpy(x[1500:]), torch.from_numpy(y[1500:]))


def train(run, params, data, epochs: int, lr: float, seed: int = 0) -> float:
    """Adam on the cross-entropy of ``run(x) -> spike counts (B, 10)``; returns the test
    accuracy."""
    x_tr, y_tr, x_te, y_te = data
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x_tr), generator=gen).split(50):
            loss = torch.nn.functional.cross_entropy(run(x_tr[idx]) * 0.5, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return float((run(x_te).argmax(1) == y_te).float().mean())


# --------------------------------------------------------------------------- snnTorch


def snntorch_net(kind: str) -> torch.nn.Sequential:
    import snntorch as snn

    out = snn.Leaky(beta=0.9, init_hidden=True, output=True, reset_mechanism="zero",
                    reset_delay=False)
    if kind == "leaky":
        hidden = snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero",
                           reset_delay=False)
    elif kind == "synaptic":
        hidden = snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, reset_mechanism="zero",
                              reset_delay=False)
    else:
        hidden = snn.RLeaky(beta=0.9, linear_features=64, init_hidden=True,
                            reset_mechanism="zero", reset_delay=False)
        hidden.recurrent = torch.nn.Linear(64, 64, bias=False)  # the chip has no bias
        with torch.no_grad():
            hidden.recurrent.weight.mul_(0.5)
    return torch.nn.Sequential(torch.nn.Linear(64, 64, bias=False), hidden,
                               torch.nn.Linear(64, 10, bias=False), out)


def snntorch_counts(net, x: torch.Tensor, steps: int = STEPS) -> torch.Tensor:
    """Output spike counts ``(B, 10)`` of ``x`` presented as a constant current."""
    from snntorch import utils

    utils.reset(net)
    return sum(net(x)[0] for _ in range(steps))


def snntorch_graph(net) -> nir.NIRGraph:
    import nirtorch
    import snntorch as snn
    from snntorch.export_nir import _extract_snntorch_module

    return nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(1, 64),
                                      model_name="snntorch",
                                      ignore_submodules_of=[snn.RLeaky, snn.RSynaptic])


# --------------------------------------------------------------------------- Norse


def norse_net():
    import norse.torch as norse

    return norse.SequentialState(torch.nn.Linear(64, 64, bias=False), norse.LIFCell(),
                                 torch.nn.Linear(64, 10, bias=False), norse.LIFCell())


def norse_counts(net, x: torch.Tensor, steps: int = 32) -> torch.Tensor:
    state, total = None, 0
    for _ in range(steps):
        z, state = net(x, state)
        total = total + z
    return total


# --------------------------------------------------------------------------- writing


def _numpy(value):
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return value


_NEURONS = (nir.CubaLIF, nir.LIF, nir.IF, nir.LI, nir.CubaLI)


def writable(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same graph with torch tensors as numpy arrays and every neuron's scalar
    parameters broadcast to its layer's width (the output width of the node feeding it), so
    that ``nir.write`` accepts it; no value changes."""
    widths = {}
    for a, b in graph.edges:
        node = graph.nodes.get(a)
        if isinstance(node, (nir.Linear, nir.Affine)):
            widths[b] = int(np.asarray(_numpy(node.weight)).shape[0])
    nodes = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            nodes[name] = writable(node)
            continue
        if isinstance(node, (nir.Input, nir.Output)):
            nodes[name] = node
            continue
        fields = {f.name: _numpy(getattr(node, f.name)) for f in dataclasses.fields(node)
                  if f.init and f.name not in ("input_type", "output_type", "metadata")}
        if isinstance(node, _NEURONS):
            n = widths[name]
            fields = {k: np.broadcast_to(np.asarray(v, dtype=np.float32), (n,)).copy()
                      if v is not None else v for k, v in fields.items()}
        nodes[name] = type(node)(**fields)
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=dict(graph.metadata),
                        type_check=False)


def save(graph: nir.NIRGraph, side: dict, out: Path, name: str) -> None:
    """``out/name.nir`` (nir.write) and ``out/name.json``, each written to a temp file
    first."""
    out.mkdir(parents=True, exist_ok=True)
    for suffix, write in ((".nir", lambda p: nir.write(p, graph)),
                          (".json", lambda p: Path(p).write_text(json.dumps(side, indent=1)))):
        fd, tmp = tempfile.mkstemp(dir=out, suffix=suffix + ".tmp")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, out / f"{name}{suffix}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    print(f"{name}: {(out / f'{name}.nir').stat().st_size / 1024:.1f} KiB, "
          f"test accuracy {side['test_accuracy']:.4f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data"))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    data = digits()
    x_s, y_s = data[2][:SAMPLES], data[3][:SAMPLES]
    import norse
    import snntorch

    for kind in ("leaky", "synaptic", "rleaky"):
        torch.manual_seed(1)
        net = snntorch_net(kind)
        acc = train(lambda x: snntorch_counts(net, x), net.parameters(), data, args.epochs,
                    5e-3)
        with torch.no_grad():
            counts = snntorch_counts(net, x_s)
        side = {"framework": f"snntorch {snntorch.__version__}", "model": kind, "dt": 1e-4,
                "steps": STEPS, "encoding": "current", "input_gain": 1.0,
                "test_accuracy": acc, "x": x_s.tolist(), "y": y_s.tolist(),
                "counts": counts.tolist()}
        save(writable(snntorch_graph(net)), side, args.out, f"snntorch_{kind}")

    import norse.torch as ntorch

    torch.manual_seed(1)
    net = norse_net()
    with torch.no_grad():
        for lin in (net[0], net[2]):
            lin.weight.mul_(4.0)
    acc = train(lambda x: norse_counts(net, x), net.parameters(), data, args.epochs, 5e-3)
    with torch.no_grad():
        counts = norse_counts(net, x_s)
    side = {"framework": f"norse {norse.__version__}", "model": "lif", "dt": 1e-3, "steps": 32,
            "encoding": "current", "input_gain": 1.0, "test_accuracy": acc,
            "x": x_s.tolist(), "y": y_s.tolist(), "counts": counts.tolist()}
    save(writable(ntorch.to_nir(net, torch.zeros(1, 64))), side, args.out, "norse_lif")


if __name__ == "__main__":
    main()
