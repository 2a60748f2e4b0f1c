"""Data-parallel GradR with ``torch.distributed`` (DDP), launched by ``torchrun``.

:func:`rewire.training.train.train` already works under an initialised process group: it wraps
the model in ``torch.nn.parallel.DistributedDataParallel``, gives rank ``r`` of ``n`` the
samples ``r, r + n, ...`` of every batch, and lets GradR (or a baseline) act on the gradients
DDP has averaged over the ranks. Because every rank starts from the same :math:`\\theta` (DDP
broadcasts rank 0's parameters), sees the same averaged gradient and draws batch order, the
budget controller's :math:`\\alpha` and Deep R's re-activations from the same seed, every rank
ends with bit-identical :math:`\\theta` (:func:`assert_same_on_all_ranks` checks it).

Usage (2 processes on one machine; ``--nproc-per-node`` = GPUs with CUDA)::

    torchrun --nproc-per-node 2 -m rewire.training.distributed --dataset digits \\
        --epochs 60 --connectivity 0.1 --out build/ddp

This module's :func:`main` is that entry point: it initialises the group from torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``),
trains, checks that all ranks agree and lets rank 0 write ``result.json`` and ``theta.pt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from torch import distributed as dist
from torch import nn

from rewire.io import atomic_path, write_text
from rewire.training.budget import SynapseBudget
from rewire.training.data import DATASETS, load_split
from rewire.training.gradr import hidden_params
from rewire.training.model import SpikingMLP
from rewire.training.train import METHODS, TrainConfig, train


def init_from_env(backend: str | None = None) -> torch.device:
    """Initialise the default process group from torchrun's environment variables.

    Args:
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (CUDA); default ``nccl`` when CUDA is
            available, else ``gloo``.

    Returns:
        This rank's device: ``cuda:LOCAL_RANK`` with NCCL, else ``cpu``.

    Raises:
        RuntimeError: the variables torchrun sets are missing (not launched by torchrun).
    """
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if v not in os.environ]
    if missing:
        raise RuntimeError(f"environment variables {missing} are not set: launch with "
                           f"torchrun --nproc-per-node N -m rewire.training.distributed ...")
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    dist.init_process_group(backend)
    if backend == "nccl":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def theta_digest(model: nn.Module) -> str:
    """SHA-256 of every GradR :math:`\\theta` (bytes, module order): equal iff bit-identical."""
    h = hashlib.sha256()
    for theta in hidden_params(model):
        h.update(theta.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def assert_same_on_all_ranks(model: nn.Module) -> str:
    """Gather :func:`theta_digest` from every rank; return it if all agree.

    Raises:
        RuntimeError: two ranks hold different :math:`\\theta` (names the ranks).
    """
    digest = theta_digest(model)
    digests = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise RuntimeError(f"ranks {differ} hold a different theta from rank 0")
    return digest


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: DDP training of a :class:`SpikingMLP`; see the module docstring."""
    ap = argparse.ArgumentParser(prog="torchrun ... -m rewire.training.distributed",
                                 description="DDP GradR training")
    ap.add_argument("--dataset", default="digits", choices=DATASETS)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--hidden", type=int, nargs="+", default=[256])
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (all ranks)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--connectivity", type=float, default=0.1)
    ap.add_argument("--method", default="gradr", choices=METHODS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default=None, choices=("gloo", "nccl"))
    ap.add_argument("--out", default="build/ddp")
    args = ap.parse_args(argv)
    device = init_from_env(args.backend)
    try:
        split = load_split(args.dataset, args.data_dir)
        sizes = (split.num_features, *args.hidden, split.num_classes)
        torch.manual_seed(args.seed)
        model = SpikingMLP(sizes, steps=args.steps)
        total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        budget = SynapseBudget(max_synapses=max(sizes[-1], round(args.connectivity * total)),
                               max_fan_in=0, total_synapses=total,
                               source=f"--connectivity {args.connectivity}")
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             seed=args.seed, device=str(device), method=args.method)
        result = train(model, split, budget, config)
        digest = assert_same_on_all_ranks(model)
        if dist.get_rank() == 0:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            summary = {**result.to_dict(), "world_size": dist.get_world_size(),
                       "theta_sha256": digest}
            write_text(out / "result.json", json.dumps(summary, indent=2) + "\n")
            with atomic_path(out / "theta.pt") as tmp:
                torch.save([t.detach().cpu() for t in hidden_params(model)], tmp)
            print(f"{dist.get_world_size()} ranks agree (theta sha256 {digest[:12]}): "
                  f"{100 * result.accuracy:.2f} % at "
                  f"{100 * result.synapses / total:.2f} % connectivity")
        # every rank leaves together: a gloo rank that tears the group down while rank 0 is
        # still writing can leave one worker hanging at exit (seen in 1 of 3 runs)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
