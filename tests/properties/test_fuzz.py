"""Fuzzing the entry points with hostile input: every one must end in the documented error
(:class:`ProfileError` from ``load_profile``; exit code 2 with a message from the CLI) or be
accepted, never in a traceback.

Over 1,000 inputs per run, generated from a fixed seed (so the default run is repeatable;
``REWIRE_HYPOTHESIS=thorough`` draws ten times as many from a fresh seed):

* hardware profiles: valid ones mutated (wrong types, missing/extra fields, negative, huge,
  NaN and infinite values, non-tables), then written as TOML and corrupted as text (cut
  short, bad UTF-8, binary noise, empty), plus paths that are not profile files;
* argument lists for ``python -m rewire.export`` (in process, ``main(argv)``): unknown flags,
  bad numbers, NaN/inf, negative counts, bad paths, missing or malformed data folders,
  unwritable outputs, unknown devices. Nothing trains: ``pipeline.run`` is replaced by a stub
  that only does what training would do first with the validated options (seed the RNGs,
  open the device, create the output and staging folders);
* small networks for ``compile_network`` with hostile neuron constants and weights.

Each test prints its count and the seed (to replay a ``thorough`` failure, set ``SEED``).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import io
import math
import random
import shutil
import struct
import tempfile
import traceback

import torch

from rewire import compile as compile_network
from rewire.errors import CompileError
from rewire.export import __main__ as cli
from rewire.job import preparation, runner as pipeline
from rewire.hw_profiles.profile import (HardwareProfile, ProfileError, list_profiles,
                                        load_profile)
from rewire.training import data as data_module
from rewire.errors import LoweringError
from rewire.training.model import NeuronConfig, SpikingMLP

from conftest import HYPOTHESIS_PROFILE, capped

SCALE = 1 if HYPOTHESIS_PROFILE == "ci" else 10
SEED = 20261124 if HYPOTHESIS_PROFILE == "ci" else random.randrange(2**32)
N_PROFILES = 650 * SCALE
N_ARGV = 450 * SCALE

HOSTILE_VALUES = [None, -1, 0, 1, -(2**63), 2**63 - 1, 2**64, 10**30, math.nan, math.inf,
                  -math.inf, 1.5, -0.0, True, False, "", " ", "x", "\x00", "é" * 300, "8",
                  [], [1, "a"], [None], {}, {"a": 1}, {"": {}}, ("t",), b"bytes", object()]
HOSTILE_NUMBERS = ["-1", "0", "-0", "nan", "NaN", "inf", "-inf", "1e309", "1e-320", "",
                   " ", "abc", "1" + "0" * 30, "0x10", "1.5", "½", "٣", "\x00", "9" * 5000,
                   "-9223372036854775809", "1_000", "+3", "1e3", "0.0", "-1e-9", "2", "1e308"]


def _short(text: str, keep: int = 300) -> str:
    """Long hostile values (5,000-character names) cut down for the failure message."""
    return "\n".join(line if len(line) <= keep else line[:keep] + "..."
                     for line in text.split("\n"))


# ----------------------------------------------------------------------------- profiles

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == math.inf else
                                     "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\x00", "\\u0000") \
            + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + "}"
    return "<not toml>"  # None, bytes, objects: a TOML syntax error


def _to_toml(data) -> str:
    if not isinstance(data, dict):
        return _toml_value(data)
    lines = [f'"{k}" = {_toml_value(v)}' for k, v in data.items() if not isinstance(v, dict)]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f'["{k}"]')
            lines += [f'"{kk}" = {_toml_value(vv)}' for kk, vv in v.items()]
    return "\n".join(lines) + "\n"


def _hostile(rng: random.Random):
    """A fresh copy of a hostile value (never one shared table that could contain itself)."""
    return copy.deepcopy(rng.choice(HOSTILE_VALUES))


def _mutate(rng: random.Random, base: dict):
    data = copy.deepcopy(base)
    for _ in range(rng.randint(1, 3)):
        sections = [k for k, v in data.items() if isinstance(v, dict)] if isinstance(data, dict) \
            else []
        target = data[rng.choice(sections)] if sections and rng.random() < 0.7 else data
        if not isinstance(target, dict):
            break
        action = rng.random()
        keys = list(target)
        if action < 0.5 and keys:
            target[rng.choice(keys)] = _hostile(rng)
        elif action < 0.7 and keys:
            del target[rng.choice(keys)]
        elif action < 0.85:
            target[rng.choice(["typo", "cores_", "Bits", "", " ", "limits", "ü"])] = \
                _hostile(rng)
        elif action < 0.95 and keys:
            key = rng.choice(keys)
            if isinstance(target[key], int) and not isinstance(target[key], bool):
                target[key] = rng.choice([-target[key], target[key] * 2**40, target[key] + 1,
                                          target[key] - 1, float(target[key])])
        else:
            data = _hostile(rng)
    return data


def _corrupt_text(rng: random.Random, text: str) -> bytes:
    raw = text.encode("utf-8")
    kind = rng.randrange(8)
    if kind == 0:
        return raw[: rng.randrange(len(raw) + 1)]
    if kind == 1:
        pos = rng.randrange(len(raw) + 1)
        return raw[:pos] + rng.choice([b"\xff\xfe", b"\xc3", b"\x80", b"\xed\xa0\x80"]) + raw[pos:]
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))
    if kind == 3:
        return rng.choice([b"", b" ", b"\n\n", b"\xef\xbb\xbf", b"[", b"=",
                           b"[limits]\n[limits]\n"])
    if kind == 4:
        return raw + raw  # every key twice
    if kind == 5:
        lines = raw.split(b"\n")
        rng.shuffle(lines)
        return b"\n".join(lines)
    if kind == 6:
        return rng.choice([raw.replace(b"=", b":", 1), b"a = " + b"[" * 5000,
                           b"a = " + b"{b = " * 3000, b"x" * 100_000])
    return raw.replace(b"]", b"", 1)


def _profile_cases(rng, base, folder):
    """Yield (description, argument for load_profile or a dict for from_dict)."""
    weird_paths = [folder / "missing.toml", folder / "dir.toml", folder / "noext", "nochip",
                   "", " ", "loihi2 ", "LOIHI2", "../loihi2", "/dev/null", "/dev/zero",
                   "/proc/self/status", "/nonexistent/dir/chip.toml", "a\x00b.toml", "x" * 5000,
                   folder / ("y" * 300 + ".toml"), folder / "link.toml"]
    (folder / "dir.toml").mkdir()
    (folder / "noext").write_text("not a profile")
    (folder / "link.toml").symlink_to(folder / "link.toml")  # a symlink loop
    for p in weird_paths:
        yield f"path {str(p)[:40]!r}", p
    for i in range(N_PROFILES - len(weird_paths)):
        data = _mutate(rng, base)
        if i % 3 == 0:
            yield "dict", data
            continue
        text = _to_toml(data)
        raw = _corrupt_text(rng, text) if i % 3 == 2 else text.encode("utf-8", "surrogatepass")
        path = folder / f"p{i}.toml"
        path.write_bytes(raw)
        yield f"file p{i}.toml", path


def test_fuzz_profiles(tmp_path, capsys):
    """Every hostile profile (mutated dicts, TOML text corrupted in any way, paths that are not
    profile files) either loads as a valid profile or raises :class:`ProfileError` with a
    message; never any other exception."""
    rng = random.Random(SEED)
    base = load_profile("loihi2").to_dict()
    count, accepted, tracebacks = 0, 0, []
    for what, case in _profile_cases(rng, base, tmp_path):
        count += 1
        try:
            with capped():
                prof = HardwareProfile.from_dict(case, "fuzz") if what == "dict" \
                    else load_profile(case)
        except ProfileError as exc:
            assert str(exc).strip(), what
            continue
        except Exception:  # noqa: BLE001 - the point of the test
            tracebacks.append(f"{what}: {_short(traceback.format_exc(limit=3))}")
            continue
        accepted += 1
        assert isinstance(prof, HardwareProfile)
        assert HardwareProfile.from_dict(prof.to_dict()) == prof
    with capsys.disabled():
        print(f"\nfuzz profiles (seed {SEED}): {count} inputs, {accepted} accepted, "
              f"{count - accepted - len(tracebacks)} ProfileError, {len(tracebacks)} tracebacks")
    assert count >= N_PROFILES
    assert not tracebacks, "\n".join(tracebacks[:5])


# ----------------------------------------------------------------------------- the CLI

def _idx(dims, body=None, magic=b"\x00\x00\x08"):
    head = magic + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    n = math.prod(dims) if dims else 1
    return head + (body if body is not None else bytes(n))


def _flip(raw: bytes, pos: int) -> bytes:
    return raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1:]


def _data_dirs(root):
    """Folders that look like MNIST data but are not usable."""
    img, lab = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
    cases = {
        "empty": {},
        "only-images": {img: _idx((10, 28, 28))},
        "bad-magic": {img: b"\x01\x02\x03\x04" * 10, lab: b"\xff" * 10},
        "truncated": {img: _idx((10000, 28, 28), b"\x00" * 100), lab: _idx((10000,))},
        "short-header": {img: b"\x00\x00\x08\xff\x00\x00", lab: b"\x00\x00\x08"},
        "zero-dims": {img: _idx(()), lab: _idx(())},
        "huge-dims": {img: _idx((2**32 - 1, 2**32 - 1, 2**32 - 1), b""), lab: _idx((5,))},
        "too-few": {img: _idx((100, 28, 28)), lab: _idx((100,))},
        "mismatch": {img: _idx((10000, 28, 28)), lab: _idx((9999,))},
        "wrong-rank": {img: _idx((10000, 784)), lab: _idx((10000, 1))},
        "gz-garbage": {img + ".gz": b"not gzip at all", lab + ".gz": b"\x1f\x8b\x08garbage"},
        "gz-truncated": {img + ".gz": gzip.compress(_idx((10000, 28, 28)))[:50],
                         lab + ".gz": gzip.compress(_idx((10000,)))},
        "gz-corrupt": {img + ".gz": _flip(gzip.compress(_idx((10000, 28, 28))), 30),
                       lab + ".gz": gzip.compress(_idx((10000,)))[:-8] + b"\x00" * 8},
        "dir-named-file": {img: None, lab: None},
    }
    dirs = {}
    root.mkdir()
    for name, files in cases.items():
        d = root / name
        d.mkdir()
        for fname, raw in files.items():
            if raw is None:
                (d / fname).mkdir()
            else:
                (d / fname).write_bytes(raw)
        dirs[name] = str(d)
    return dirs


POSITIVE = ["--hidden", "--steps", "--cores", "--max-synapses", "--max-fan-in", "--epochs",
            "--batch-size", "--channels", "--kernels", "--strides", "--pools"]
FLOATS = ["--input-gain", "--connectivity", "--lr", "--alpha", "--target-sparsity"]
INTS = ["--seed", "--lava-samples"]
CHOICES = {"--dataset": ["digits", "mnist", "cifar", ""], "--encoding": ["current", "rate", "x"],
           "--model": ["mlp", "conv", "cnn"]}
DEVICES = ["cpu", "cuda", "cuda:7", "cuda:-1", "foo", "", "cpu:0", "meta", "mps", "xla", "CPU",
           "cpu:99", "cuda:abc"]
UNKNOWN = ["--frobnicate", "-x", "--", "positional", "--hidden=", "--out=", "-", "--Profile",
           "--list-profiles=yes", "---steps"]


def _argv_cases(rng, root, profiles, dirs):
    not_dir = root / "file"
    not_dir.write_text("x")
    outs = [str(not_dir), str(not_dir / "sub"), "/dev/null", "/dev/null/x", "/proc/rewire",
            "/proc/self/x", "/sys/rewire", "", "\x00", str(root / ("z" * 300)),
            str(root / "a" / ("b" * 300) / "c"), "/", str(root / "ok")]
    data_dirs = list(dirs.values()) + ["/nonexistent", str(not_dir), "", "\x00", "/dev/null"]
    base = ["--out", str(root / "out"), "--no-progress", "--lava-samples", "0"]
    # every hostile folder, output, device and profile once, then random combinations
    dangling = root / "dangling"
    dangling.symlink_to(root / "nowhere")
    (root / "cwd" / "loihi2").mkdir(parents=True)  # a folder named like a shipped profile
    issue17 = [["--show-profile", ""], ["--out", ""], ["--profile", ""], ["--out", "."],
               ["--out", str(dangling)], ["--alpha", "1e308"], ["--lr", "1e308"],
               ["--input-gain", "1e308"], ["--profile", "loihi2", "--out", "loihi2"],
               ["--device", ""], ["--data-dir", ""], ["--model", "conv", "--kernels", "100", "3"],
               ["--model", "conv", "--channels", "100000", "2"],
               ["--model", "conv", "--pools", "9", "9"], ["--model", "conv", "--strides", "9"]]
    singles = issue17 + [["--dataset", "mnist", "--data-dir", d] for d in data_dirs] \
        + [["--out", o] for o in outs] + [["--device", d] for d in DEVICES] \
        + [["--profile", p] for p in profiles] + [["--seed", v] for v in HOSTILE_NUMBERS]
    for extra in singles:
        yield base + extra
    for _ in range(N_ARGV - len(singles)):
        argv = list(base)
        for _ in range(rng.randint(1, 4)):
            kind = rng.random()
            if kind < 0.3:
                flag = rng.choice(POSITIVE)
                vals = [rng.choice(HOSTILE_NUMBERS + ["1", "3", "64", "100000", "2000000"])
                        for _ in range(rng.randint(0, 3))]
                argv += [flag, *vals]
            elif kind < 0.45:
                argv += [rng.choice(FLOATS), rng.choice(HOSTILE_NUMBERS + ["0.5", "1"])]
            elif kind < 0.52:
                argv += [rng.choice(INTS), rng.choice(HOSTILE_NUMBERS + [str(2**64), "-5"])]
            elif kind < 0.58:
                flag = rng.choice(list(CHOICES))
                argv += [flag, rng.choice(CHOICES[flag])]
            elif kind < 0.68:
                argv += ["--profile", rng.choice(profiles)]
            elif kind < 0.76:
                argv += ["--out", rng.choice(outs)]
            elif kind < 0.84:
                argv += ["--dataset", "mnist"] + (["--data-dir", rng.choice(data_dirs)]
                                                  if rng.random() < 0.9 else [])
            elif kind < 0.9:
                argv += ["--device", rng.choice(DEVICES)]
            elif kind < 0.95:
                argv += [rng.choice(UNKNOWN)]
            elif kind < 0.98:
                argv += ["--show-profile", rng.choice(profiles)]
            else:
                argv += [rng.choice(["--list-profiles", "--help", "--epochs"])]
        yield argv


class _Reached(Exception):
    pass


def test_fuzz_cli(tmp_path, monkeypatch, capsys):
    """Every hostile argument list given to ``main(argv)`` ends in ``SystemExit`` (argparse,
    code 2; 0 for --help) or exit code 2 with an ``error: ...`` line, before anything is
    written; one that passes validation reaches the (stubbed) run, whose first steps (seeding,
    opening the device) must then work. Never any other exception."""
    rng = random.Random(SEED + 1)
    base = load_profile("loihi2").to_dict()
    pdir = tmp_path / "profiles"
    pdir.mkdir()
    profiles = ["loihi2", "nochip", "", str(pdir / "missing.toml"), "/dev/null", "a\x00b"]
    for i in range(12):
        path = pdir / f"bad{i}.toml"
        path.write_bytes(_corrupt_text(rng, _to_toml(_mutate(rng, base))))
        profiles.append(str(path))
    dirs = _data_dirs(tmp_path / "data")
    digits = data_module.load_split("digits")
    real_load = preparation.load_split
    monkeypatch.setattr(preparation, "load_split",
                        lambda name, data_dir=None: digits if name == "digits"
                        else real_load(name, data_dir))

    reached = []

    def stub_run(prep, log=print):
        """What ``run`` does first with the validated options, then stop (no training)."""
        cfg = prep.spec.train
        torch.Generator(device=torch.device(cfg.device)).manual_seed(cfg.seed)
        torch.Generator().manual_seed(cfg.seed)
        created = prep.out
        while not created.parent.exists():
            created = created.parent
        existed = created.exists()
        prep.out.mkdir(parents=True, exist_ok=True)
        tempfile.mkdtemp(prefix=".staging-", dir=prep.out)
        if not existed:
            shutil.rmtree(created)
        else:
            for d in prep.out.glob(".staging-*"):
                d.rmdir()
        reached.append(prep)
        raise _Reached

    monkeypatch.setattr(pipeline, "run", stub_run)
    cases = list(_argv_cases(rng, tmp_path, profiles, dirs))
    monkeypatch.chdir(tmp_path / "cwd")  # relative outputs land here, and must not
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    count, tracebacks, outcomes = 0, [], {"argparse": 0, "error": 0, "ok": 0, "reached": 0}
    for argv in cases:
        count += 1
        err = io.StringIO()
        out_dir = tmp_path / "out"
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                    capped():
                code = cli.main(argv)
        except SystemExit as exc:
            assert exc.code in (0, 2), argv
            assert exc.code == 0 or "error:" in err.getvalue(), argv
            outcomes["argparse"] += 1
        except _Reached:
            outcomes["reached"] += 1
        except Exception:  # noqa: BLE001 - the point of the test
            tracebacks.append(f"{_short(repr(argv))}: {_short(traceback.format_exc(limit=4))}")
        else:
            if code == 2:
                assert err.getvalue().startswith("error: ") and len(err.getvalue()) > 8, argv
                outcomes["error"] += 1
            else:
                assert code == 0, argv
                outcomes["ok"] += 1
        assert not out_dir.exists(), f"{argv!r} wrote {out_dir} before training"
    with capsys.disabled():
        print(f"\nfuzz CLI (seed {SEED + 1}): {count} argument lists: "
              f"{outcomes['argparse']} argparse exits, "
              f"{outcomes['error']} 'error:' exit 2, {outcomes['ok']} listings, "
              f"{outcomes['reached']} passed validation (stubbed run), "
              f"{len(tracebacks)} tracebacks")
    assert count >= N_ARGV
    assert not tracebacks, f"{len(tracebacks)} tracebacks, e.g.\n" + "\n".join(tracebacks[:6])
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "a case left files behind"


# ----------------------------------------------------------------------------- the compiler

N_MODELS = 200 * SCALE
HOSTILE_FLOATS = [0.0, -0.0, -1.0, 1e-12, 1e12, math.nan, math.inf, -math.inf, 1e-3, 200.0]


def _hostile_model(rng: random.Random):
    """A small SNN with hostile neuron constants or weights (what the chip may not take)."""
    fields = dict(tau_syn_inv=200.0, tau_mem_inv=100.0, v_th=1.0, v_leak=0.0, v_reset=0.0,
                  dt=1e-3)
    for _ in range(rng.randint(0, 2)):
        fields[rng.choice(list(fields))] = rng.choice(HOSTILE_FLOATS)
    sizes = tuple(rng.randint(1, 6) for _ in range(rng.randint(2, 4)))
    model = SpikingMLP(sizes, steps=rng.randint(1, 4), neuron=NeuronConfig(**fields),
                       encoding=rng.choice(["current", "rate"]))
    with torch.no_grad():
        for lin in model.linears:
            kind = rng.random()
            if kind < 0.15:
                lin.weight.zero_()
            elif kind < 0.3:
                lin.weight.view(-1)[rng.randrange(lin.weight.numel())] = \
                    rng.choice([math.nan, math.inf, -math.inf, 1e30, -1e30, 1e-30])
            elif kind < 0.4:
                lin.weight.mul_(rng.choice([1e-9, 1e9]))
    return model


def test_fuzz_compiler(loihi2, capsys):
    """Every small network with hostile neuron constants (leak, reset, non-positive or
    non-finite threshold, time step or time constants) or hostile weights (all zero, NaN,
    infinite, tiny, huge) either compiles to chip integers inside the profile's formats or is
    refused with :class:`CompileError` (or, for what the IR cannot hold, the frontend's
    :class:`LoweringError`); never another exception, never a hang."""
    rng = random.Random(SEED + 2)
    count, compiled, tracebacks = 0, 0, []
    profiles = [loihi2] + [load_profile(name) for name in list_profiles()
                           if load_profile(name).neuron.model != "cuba"][:1]
    for _ in range(N_MODELS):
        count += 1
        model = _hostile_model(rng)
        profile = rng.choice(profiles)
        try:
            with capped():
                net = compile_network(model, profile, input_max_value=rng.choice([1, 16, 255]))
        except (CompileError, LoweringError) as exc:
            assert str(exc).strip()
            continue
        except Exception:  # noqa: BLE001 - the point of the test
            tracebacks.append(_short(traceback.format_exc(limit=3)))
            continue
        compiled += 1
        for layer in net.layers:
            w = layer.weight_int
            assert w.min() >= profile.weights.min_int and w.max() <= profile.weights.max_int
            assert 1 <= layer.v_th_mant <= profile.neuron.max_threshold_mant
            assert 1 <= layer.i_decay <= profile.neuron.decay_unit
            assert 1 <= layer.v_decay <= profile.neuron.decay_unit
    with capsys.disabled():
        print(f"\nfuzz compiler (seed {SEED + 2}): {count} networks, {compiled} compiled, "
              f"{count - compiled - len(tracebacks)} CompileError, {len(tracebacks)} tracebacks")
    assert not tracebacks, f"{len(tracebacks)} tracebacks, e.g.\n" + "\n".join(tracebacks[:4])
