"""``python -m rewire.export``: train a Norse SNN with GradR inside a chip's budget and export it.

Examples::

    python -m rewire.export --profile loihi2 --out build/
    python -m rewire.export --profile my_chip.toml --max-synapses 2000 --out build/
    python -m rewire.export --dataset mnist --data-dir ../shared/datasets/mnist --hidden 800 \\
        --steps 8 --epochs 30 --connectivity 0.02
    python -m rewire.export --dataset mnist --data-dir ../shared/datasets/mnist --model conv
    python -m rewire.export --input spikes --encoding rate --epochs 30 --out build/
    python -m rewire.export --events spikes.npz --steps 20 --out build/
    python -m rewire.export --list-profiles
    python -m rewire.export --show-profile loihi2

Exit codes: 0 success, 2 bad input (the message names the option or field and the fix),
3 with ``--strict`` when the report has warnings (:mod:`rewire.job.health`; the files are
written), 130 on Ctrl-C and 143 on SIGTERM (one line; the previous export is left whole and no
staging folder stays behind).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import signal
import sys
import threading
from dataclasses import replace

from rewire.errors import CompileError
from rewire.hw_profiles.profile import ProfileError, list_profiles, load_profile
from rewire.training.budget import BudgetError
from rewire.training.data import DATASETS, DataError
from rewire.training.model import ENCODINGS

USER_ERRORS = (ProfileError, DataError, BudgetError, CompileError, ValueError, OSError)
#: Upper bounds of the float options, each far past any useful value (defaults: lr 1e-3,
#: alpha 0.1, input gain 4): above them training overflows float32 at the first step.
FLOAT_BOUNDS = {"lr": 10.0, "alpha": 1e4, "input_gain": 1e4}
STRING_OPTIONS = ("profile", "out", "show_profile", "data_dir", "device", "events")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` and ``with`` block runs
    (the staging folder is removed, the previous export stays whole)."""


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM into :class:`Terminated` while the job runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_args(args) -> None:
    """Refuse empty or NUL-holding strings and out-of-range floats before any work."""
    for name in STRING_OPTIONS:
        value = getattr(args, name)
        if value is not None and (not value.strip() or "\x00" in value):
            raise ValueError(f"--{name.replace('_', '-')} {value!r}: empty or not a valid "
                             f"value; leave the option out for its default")
    for name, hi in FLOAT_BOUNDS.items():
        value = getattr(args, name)
        if value is not None and not 0 < value <= hi:
            raise ValueError(f"--{name.replace('_', '-')} must be in (0, {hi:g}], got {value:g}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    """The command-line parser (every option documented in ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m rewire.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="loihi2",
                   help="shipped profile name or path to a TOML profile (default loihi2)")
    p.add_argument("--out", default="build", help="output folder (default build/)")
    p.add_argument("--list-profiles", action="store_true", help="list shipped profiles, exit")
    p.add_argument("--show-profile", metavar="NAME", help="print a profile as JSON, exit")
    d = p.add_argument_group("data and network")
    d.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits (embedded, default) or mnist (needs --data-dir)")
    d.add_argument("--data-dir", help="folder with the MNIST IDX files")
    d.add_argument("--model", choices=("mlp", "conv"), default="mlp",
                   help="mlp: fully connected (--hidden); conv: Conv2d + sum-pooling stages "
                        "then a Linear readout (--channels/--kernels/--strides/--pools)")
    d.add_argument("--hidden", type=_positive_int, nargs="+", default=[256],
                   help="hidden layer sizes of the mlp (default 256)")
    d.add_argument("--channels", type=_positive_int, nargs="+", default=[16, 32],
                   help="conv: output channels of each conv stage (default 16 32)")
    d.add_argument("--kernels", type=_positive_int, nargs="+", default=[5, 3],
                   help="conv: kernel size of each stage, padding kernel//2 (default 5 3)")
    d.add_argument("--strides", type=_positive_int, nargs="+", default=[2, 1],
                   help="conv: stride of each stage (default 2 1)")
    d.add_argument("--pools", type=_positive_int, nargs="+", default=[1, 2],
                   help="conv: sum-pooling window after each stage, 1 = none (default 1 2)")
    d.add_argument("--steps", type=_positive_int, default=16, help="time steps T (default 16)")
    d.add_argument("--encoding", choices=ENCODINGS, default=None,
                   help="input encoding: constant current (graded spikes on chip) or rate "
                        "(default: current for dense input, rate for spike trains)")
    d.add_argument("--input", choices=("dense", "spikes"), default=None,
                   help="dense: the data set's values, encoded every batch (default without "
                        "--events); "
                        "spikes: made into fixed Bernoulli spike trains (N, T, F) of "
                        "P(spike) = value before training, seeded by --seed, so training and "
                        "the integer/Lava checks see the same spikes")
    d.add_argument("--events", metavar="PATH",
                   help="train on the spike trains of an .npz instead of --dataset: arrays "
                        "x_train, x_test (N, T, F) 0/1 (bool or integer), y_train, y_test (N,) "
                        "integer labels; T must equal --steps")
    d.add_argument("--input-gain", type=_float, default=4.0,
                   help="constant-current gain (default 4)")
    b = p.add_argument_group("budget (the smallest applies)")
    b.add_argument("--cores", type=_positive_int, help="cores allotted (default: whole chip)")
    b.add_argument("--max-synapses", type=_positive_int, help="synapse budget")
    b.add_argument("--connectivity", type=_float, default=0.1,
                   help="connectivity budget in (0, 1] (default 0.1)")
    b.add_argument("--max-fan-in", type=_positive_int, help="per-neuron fan-in budget")
    t = p.add_argument_group("training (GradR)")
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="epochs (default: mlp 60; conv 60 on digits, 5 on mnist)")
    t.add_argument("--batch-size", type=_positive_int, default=64, help="batch (default 64)")
    t.add_argument("--lr", type=_float, default=None,
                   help="learning rate (default: mlp 1e-3, conv 1e-2)")
    t.add_argument("--alpha", type=_float, default=0.1,
                   help="initial prior penalty; adapted to meet the budget (default 0.1)")
    t.add_argument("--target-sparsity", type=_float, default=0.95,
                   help="Laplace prior target sparsity p in [0.5, 1) (default 0.95)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--device", default="cpu", help="torch device (default cpu)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 3 when the report has warnings (a dead net, a "
                        "projection that cost > 1 point, a check that compared no spike, "
                        "chance-level accuracy); the files are still written")
    p.add_argument("--lava-samples", type=int, default=10,
                   help="test samples to run in Lava and compare spike for spike with the "
                        "integer model (default 10; 0 skips; skipped without Lava)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = parser().parse_args(argv)
    try:
        with _sigterm_raises():
            return _main(args)
    except Terminated:
        print("terminated (SIGTERM): nothing was published; the previous export is whole",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted: nothing was published; the previous export is whole",
              file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; use a smaller network (--hidden, --channels) or "
              "--batch-size", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            print(f"error: No space left on device ({exc.filename or 'the output folder'}); "
                  f"free some space and run again (the previous export is whole)",
                  file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(args) -> int:
    """Validate ``args`` and run the listing or the job; returns the exit code."""
    _check_args(args)
    if args.list_profiles:
        for name in list_profiles():
            prof = load_profile(name)
            print(f"{prof.summary()}\n{'':12s} {prof.description}")
        return 0
    if args.show_profile is not None:
        print(json.dumps(load_profile(args.show_profile).to_dict(), indent=2))
        return 0
    from rewire.job.runner import prepare, run

    report = run(prepare(job_spec(args)))
    if args.strict and report.get("warnings"):
        print(f"error: --strict: the run ended with {len(report['warnings'])} warning(s) (see "
              f"the end of the table and report.json 'warnings'); exit code 3",
              file=sys.stderr)
        return 3
    return 0


def job_spec(args):
    """The :class:`rewire.job.runner.JobSpec` of parsed ``args``: ``--epochs`` and ``--lr``
    left out take the model's defaults (:func:`rewire.job.runner.default_train_config`:
    the conv net has its own), so the spec, the printed header and ``report.json`` hold the
    values actually used."""
    from rewire.job.runner import JobSpec, default_train_config

    base = default_train_config(args.model, args.dataset)
    train = replace(base, epochs=base.epochs if args.epochs is None else args.epochs,
                    lr=base.lr if args.lr is None else args.lr, batch_size=args.batch_size,
                    alpha=args.alpha, sparsity=args.target_sparsity, seed=args.seed,
                    device=args.device, progress=not args.no_progress)
    return JobSpec(
        profile=args.profile, out=args.out, dataset=args.dataset, data_dir=args.data_dir,
        model=args.model, hidden=tuple(args.hidden), channels=tuple(args.channels),
        kernels=tuple(args.kernels), strides=tuple(args.strides), pools=tuple(args.pools),
        steps=args.steps, encoding=args.encoding,
        input_gain=args.input_gain, cores=args.cores, max_synapses=args.max_synapses,
        connectivity=args.connectivity, max_fan_in=args.max_fan_in, train=train,
        lava_samples=args.lava_samples, input=args.input, events=args.events)


if __name__ == "__main__":
    sys.exit(main())
