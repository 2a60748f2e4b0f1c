"""``python -m rewire.export`` (and ``python -m rewire``): train a Norse SNN with GradR inside a
chip's budget and export it.

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

Every option is a field of :class:`rewire.job.spec.JobSpec` or of its
:class:`rewire.training.train.TrainConfig` (:data:`FLAGS`), with the default the field has
there; an option left out keeps that default, so this command and ``rewire.run_job()`` run
the same job. An error that names a field is printed with its flag.

Exit codes: 0 success, 2 bad input (the message names the option or field and the fix),
3 with ``--strict`` when the run has warnings (the compiler's,
:mod:`rewire.compiler.diagnostics`, and the report's, :mod:`rewire.job.health`; the files are
written), 130 on Ctrl-C (at any moment, start-up included) and 143 on SIGTERM (one line; the
previous export is left whole and no staging folder stays behind). Set ``REWIRE_DEBUG=1`` to
see what third-party libraries print on import (:mod:`rewire.job.quiet`).

At load time this module imports only ``contextlib``, ``os``, ``signal`` and ``sys`` (already
loaded when ``python -m`` runs it; everything else loads inside :func:`main`), so the SIGINT
handling is in place a moment after the interpreter starts, before torch, Norse or Lava.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

#: Field of :class:`~rewire.job.spec.JobSpec` (or of its ``train``,
#: :class:`~rewire.training.train.TrainConfig`) -> its command-line flag. The parser is built
#: from it, and :func:`flagged` writes the fields an error names as these flags.
FLAGS = {
    "profile": "--profile", "out": "--out", "dataset": "--dataset", "data_dir": "--data-dir",
    "model": "--model", "hidden": "--hidden", "channels": "--channels",
    "kernels": "--kernels", "strides": "--strides", "pools": "--pools", "steps": "--steps",
    "encoding": "--encoding", "input": "--input", "events": "--events",
    "input_gain": "--input-gain", "cores": "--cores", "max_synapses": "--max-synapses",
    "connectivity": "--connectivity", "max_fan_in": "--max-fan-in", "epochs": "--epochs",
    "batch_size": "--batch-size", "lr": "--lr", "alpha": "--alpha",
    "sparsity": "--target-sparsity", "seed": "--seed", "device": "--device",
    "progress": "--no-progress", "lava_samples": "--lava-samples", "strict": "--strict",
    "qat": "--qat",
}
#: The fields of ``JobSpec.train`` among :data:`FLAGS`.
TRAIN_FIELDS = ("epochs", "batch_size", "lr", "alpha", "sparsity", "seed", "device", "progress")
INTERRUPTED = "interrupted: nothing was published; the previous export is whole"


def flagged(message: str) -> str:
    """``message`` with the fields it names written as their flags (:data:`FLAGS`): the
    field or list of fields that opens it (``lr must be > 0`` -> ``--lr must be > 0``;
    ``channels, kernels and pools need ...``), and any field with an underscore in its name
    wherever it stands (``data_dir``). Other words stay as they are.

    Example:
        >>> flagged("sparsity must be in [0.5, 1), got 0.2")
        '--target-sparsity must be in [0.5, 1), got 0.2'
    """
    import re

    m = re.match(r"\w+(?:(?:, and |, | and )\w+)*", message)
    if m and all(n in FLAGS for n in re.split(r", and |, | and ", m.group())):
        message = re.sub(r"\w+", lambda w: FLAGS.get(w.group(), w.group()), m.group()) \
            + message[m.end():]
    return re.sub(r"(?<![\w-])(" + "|".join(f for f in FLAGS if "_" in f) + r")(?![\w-])",
                  lambda w: FLAGS[w.group()], message)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every ``finally`` and ``with`` block runs
    (the staging folder is removed, the previous export stays whole)."""


@contextlib.contextmanager
def _signals(phase: str):
    """SIGINT and SIGTERM handling of one phase, in the main thread only (a SIGINT ignored
    since start, as under ``nohup``, stays ignored); the previous handlers come back after.

    ``"start"``: Ctrl-C prints :data:`INTERRUPTED` and ends the process at once with 130,
    wherever it lands (in the middle of an import too: nothing has been written yet).
    ``"job"``: Ctrl-C raises ``KeyboardInterrupt`` and SIGTERM :class:`Terminated`, so that
    the staging folder is removed on the way out.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signum, frame):
        os.write(2, (INTERRUPTED + "\n").encode())
        os._exit(130)

    def terminated(signum, frame):
        raise Terminated()

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if previous[signal.SIGINT] is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, exit_now if phase == "start" else signal.default_int_handler)
    if phase == "job":
        signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is not None:
                signal.signal(s, handler)


def _int(text: str) -> int:
    import argparse

    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _qat(text: str):
    """``--qat`` value: ``auto``, ``off`` or a number of final epochs."""
    return text if text in ("auto", "off") else _int(text)


def parser() -> argparse.ArgumentParser:
    """The command-line parser, built from :class:`~rewire.job.spec.JobSpec` and
    :class:`~rewire.training.train.TrainConfig`: each option fills the field :data:`FLAGS`
    names and shows that field's default; an option left out is absent from the parsed
    namespace (the field keeps its default)."""
    import argparse

    from rewire.job.spec import CONV_EPOCHS, CONV_LR, PROFILE_DEFAULTS, JobSpec, MODELS
    from rewire.training.data import DATASETS
    from rewire.training.model import ENCODINGS
    from rewire.job.events import INPUTS

    spec = JobSpec()
    default = {**vars(spec), **vars(spec.train)}
    p = argparse.ArgumentParser(prog="python -m rewire.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)

    def show(value):
        if value is None:
            return "none"
        return " ".join(map(str, value)) if isinstance(value, tuple) else f"{value:g}" \
            if isinstance(value, float) else value

    def add(group, field, text, **kwargs):
        shown = show(default[field])
        chips = "".join(f"; {model} chips (xylo): {show(own[field])}"
                        for model, own in PROFILE_DEFAULTS.items() if field in own)
        group.add_argument(FLAGS[field], dest=field,
                           help=text.replace("{default}", f"default {shown}{chips}"), **kwargs)

    add(p, "profile", "shipped profile name or path to a TOML profile ({default})")
    add(p, "out", "output folder ({default})")
    p.add_argument("--list-profiles", action="store_true", default=False,
                   help="list shipped profiles, exit")
    p.add_argument("--show-profile", metavar="NAME", default=None,
                   help="print a profile as JSON, exit")
    d = p.add_argument_group("data and network")
    add(d, "dataset", f"one of {', '.join(DATASETS)}: digits and digits-xylo embedded, mnist "
                      f"needs --data-dir "
                      f"({{default}})", metavar="{" + ",".join(DATASETS) + "}")
    add(d, "data_dir", "folder with the MNIST IDX files")
    add(d, "model", "mlp: fully connected (--hidden); conv: Conv2d + sum-pooling stages then "
                    "a Linear readout (--channels/--kernels/--strides/--pools) ({default})",
        metavar="{" + ",".join(MODELS) + "}")
    add(d, "hidden", "hidden layer sizes of the mlp ({default})", type=_int, nargs="+")
    add(d, "channels", "conv: output channels of each conv stage ({default})", type=_int,
        nargs="+")
    add(d, "kernels", "conv: kernel size of each stage, padding kernel//2 ({default})",
        type=_int, nargs="+")
    add(d, "strides", "conv: stride of each stage ({default})", type=_int, nargs="+")
    add(d, "pools", "conv: sum-pooling window after each stage, 1 = none ({default})",
        type=_int, nargs="+")
    add(d, "steps", "time steps T ({default})", type=_int)
    add(d, "encoding", "input encoding: constant current (graded spikes on chip) or rate "
                       "(default: current for dense input, rate for spike trains)",
        metavar="{" + ",".join(ENCODINGS) + "}")
    add(d, "input", "dense: the data set's values, encoded every batch (default without "
                    "--events); spikes: made into fixed Bernoulli spike trains (N, T, F) of "
                    "P(spike) = value before training, seeded by --seed, so training and the "
                    "integer/Lava checks see the same spikes",
        metavar="{" + ",".join(INPUTS) + "}")
    add(d, "events", "train on the spike trains of an .npz instead of --dataset: arrays "
                     "x_train, x_test (N, T, F) 0/1 (bool or integer), y_train, y_test (N,) "
                     "integer labels; T must equal --steps", metavar="PATH")
    add(d, "input_gain", "constant-current gain ({default})", type=_float)
    b = p.add_argument_group("budget (the smallest applies)")
    add(b, "cores", "cores allotted (default: whole chip)", type=_int)
    add(b, "max_synapses", "synapse budget", type=_int)
    add(b, "connectivity", "connectivity budget in (0, 1] ({default})", type=_float)
    add(b, "max_fan_in", "per-neuron fan-in budget", type=_int)
    t = p.add_argument_group("training (GradR)")
    xylo = PROFILE_DEFAULTS["cuba_bitshift"]["train"]
    add(t, "epochs", f"epochs (default: mlp {{epochs}}, {xylo['epochs']} on xylo; conv "
                     f"{CONV_EPOCHS['digits']} on digits, {CONV_EPOCHS['mnist']} on mnist)"
                     .replace("{epochs}", str(default["epochs"])), type=_int)
    add(t, "batch_size", "batch ({default})", type=_int)
    add(t, "lr", f"learning rate (default: mlp {default['lr']:g}, {xylo['lr']:g} on xylo; "
                 f"conv {CONV_LR:g})",
        type=_float)
    add(t, "alpha", "initial prior penalty; adapted to meet the budget ({default})",
        type=_float)
    add(t, "sparsity", "Laplace prior target sparsity p in [0.5, 1) ({default})", type=_float)
    add(t, "seed", "random seed ({default})", type=_int)
    add(t, "device", "torch device ({default})")
    add(t, "progress", "no progress bar", action="store_false")
    add(p, "strict", "exit with code 3 when the run has warnings (the compiler's: a semantic "
                     "difference from the source model, synapses or threshold bits lost to "
                     "the chip's grid, float vs integer class agreement < 98 %%; the "
                     "report's: a dead net, a projection that cost > 1 point, a check that "
                     "compared no spike, chance-level accuracy); the files are still written",
        action="store_true")
    add(t, "qat", "quantization-aware training: auto (the final epochs on the chip's weight "
                  "grid when float-vs-integer class agreement is below 99 %%), off, or N final "
                  "epochs on the grid ({default})", type=_qat, metavar="{auto,off,N}")
    add(p, "lava_samples", "test samples to run in Lava and compare spike for spike with the "
                           "integer model ({default}; 0 skips; skipped without Lava)",
        type=_int)
    return p


def job_spec(args: argparse.Namespace):
    """The :class:`~rewire.job.spec.JobSpec` of parsed ``args``: the options given, every
    other field at its default (``train``: the model's defaults,
    :func:`rewire.job.spec.default_train_config`), so the spec, the printed header and
    ``report.json`` hold the values actually used.

    Raises:
        ValueError: a field's value the spec or ``TrainConfig`` refuses (named).
    """
    from dataclasses import replace

    from rewire.job.spec import JobSpec

    given = {k: v for k, v in vars(args).items() if k in FLAGS}
    given.update({k: tuple(v) for k, v in given.items() if isinstance(v, list)})
    train = {k: given.pop(k) for k in TRAIN_FIELDS if k in given}
    later = {k: given.pop(k) for k in ("qat",) if k in given}  # checked against the epochs
    spec = JobSpec(**given)
    return replace(spec, train=replace(spec.train, **train), **later) if train or later \
        else spec


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rewire.export``, ``python -m rewire`` and
    ``rewire-export``; returns the exit code (a Ctrl-C before the job starts ends the process
    with 130 at once)."""
    with _signals("start"):
        args = parser().parse_args(argv)
    import errno

    from rewire.errors import RewireError

    try:
        with _signals("job"):
            return _main(args)
    except Terminated:
        print("terminated (SIGTERM): nothing was published; the previous export is whole",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; use a smaller network (--hidden, --channels) or "
              "--batch-size", file=sys.stderr)
        return 2
    except (RewireError, ValueError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            print(f"error: No space left on device ({exc.filename or 'the output folder'}); "
                  f"free some space and run again (the previous export is whole)",
                  file=sys.stderr)
        else:
            print(f"error: {flagged(str(exc))}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    """Run the listing or the job; returns the exit code."""
    import json

    from rewire.hw_profiles.profile import list_profiles, load_profile

    if args.list_profiles:
        for name in list_profiles():
            prof = load_profile(name)
            print(f"{prof.summary()}\n{'':12s} {prof.description}")
        return 0
    if args.show_profile is not None:
        name = args.show_profile
        if not name.strip() or "\x00" in name:
            raise ValueError(f"--show-profile {name!r}: empty or not a valid value; give a "
                             f"shipped profile name or a TOML path")
        print(json.dumps(load_profile(name).to_dict(), indent=2))
        return 0
    from rewire.job import runner

    from rewire.errors import StrictError

    try:
        runner.run(runner.prepare(job_spec(args)))
    except StrictError as exc:
        print(f"error: --strict: the run ended with {len(exc.warnings)} warning(s) (see the "
              f"end of the table and report.json 'warnings'); exit code 3: {exc}",
              file=sys.stderr)
        return 3
    return 0


__all__ = ["FLAGS", "INTERRUPTED", "TRAIN_FIELDS", "Terminated", "flagged", "job_spec", "main",
           "parser"]
