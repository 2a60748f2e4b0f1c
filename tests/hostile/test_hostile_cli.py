"""Bad command-line input caught before any work (issue 17, items 10-12): empty strings, a
folder named like a shipped profile, a dangling ``--out`` link, ``--out .``, huge floats, a
profile whose name holds NUL or whose ``decay_bits`` is 1 or 2, MNIST labels >= 10. Each
exits 2 with one ``error:`` line naming the option or field, and nothing is written."""

from __future__ import annotations

import gzip
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewire.hw_profiles.profile import PROFILE_DIR, load_profile
from rewire.job import cli, runner


class _Reached(Exception):
    pass


@pytest.fixture
def no_run(monkeypatch, tmp_path):
    """The job's run replaced by a stub that fails the test if reached; cwd an empty folder."""
    def run(prep, log=print):
        raise _Reached(prep.spec)

    monkeypatch.setattr(runner, "run", run)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _error(capsys, argv) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("option", ["--show-profile", "--out", "--profile", "--data-dir",
                                    "--device"])
@pytest.mark.parametrize("value", ["", " ", "a\x00b"])
def test_empty_or_nul_values_are_refused(no_run, capsys, option, value):
    err = _error(capsys, [option, value, "--no-progress"])
    assert option in err
    assert list(no_run.iterdir()) == []  # no ./build, nothing in the current folder


def test_folder_named_like_a_profile_does_not_hide_it(no_run, capsys, tmp_path):
    """Item 11: ``--profile loihi2 --out loihi2`` works twice (a bare name is the shipped
    profile); ``./loihi2`` is a path and says so."""
    (no_run / "loihi2").mkdir()
    assert load_profile("loihi2").name == "loihi2"
    with pytest.raises(_Reached):
        cli.main(["--profile", "loihi2", "--out", "loihi2", "--no-progress"])
    err = _error(capsys, ["--profile", "./loihi2", "--out", str(tmp_path / "o")])
    assert "profile file not found" in err


def test_dangling_out_link_is_refused(no_run, capsys, tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    assert "dangling symbolic link" in _error(capsys, ["--out", str(link)])


@pytest.mark.parametrize("out", [".", "..", "/"])
def test_out_holding_the_current_folder_is_refused(no_run, capsys, out):
    assert "current folder" in _error(capsys, ["--out", out])


@pytest.mark.parametrize("option", ["--alpha", "--lr", "--input-gain"])
def test_huge_floats_are_refused(no_run, capsys, tmp_path, option):
    err = _error(capsys, [option, "1e308", "--out", str(tmp_path / "o")])
    assert option in err and "must be in (0," in err


def _profile_file(tmp_path, old: str, new: str):
    path = tmp_path / "chip.toml"
    text = (PROFILE_DIR / "loihi2.toml").read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("old, new, field", [
    ('name = "loihi2"', 'name = "loi\\u0000hi2"', "name"),
    ("decay_bits = 12", "decay_bits = 1", "neuron.decay_bits"),
    ("decay_bits = 12", "decay_bits = 2", "neuron.decay_bits"),
    ("cores = 128", "cores = 10000000", "limits.cores"),
    ("cores = 128", "cores = 2147483648", "limits.cores"),
])
def test_profile_caught_before_training(no_run, capsys, tmp_path, old, new, field):
    path = _profile_file(tmp_path, old, new)
    err = _error(capsys, ["--profile", str(path), "--out", str(tmp_path / "o")])
    assert f"field '{field}'" in err
    assert not (tmp_path / "o").exists()


def _idx(dims, body):
    return b"\x00\x00\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def test_mnist_labels_over_9_caught_before_training(no_run, capsys, tmp_path):
    data = tmp_path / "mnist"
    data.mkdir()
    n = 10_000
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx((n, 28, 28),
                                                                        bytes(n * 784)), 1))
    (data / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(
        _idx((n,), bytes([3] * (n - 1) + [10])), 1))
    err = _error(capsys, ["--dataset", "mnist", "--data-dir", str(data), "--out",
                          str(tmp_path / "o")])
    assert "t10k-labels-idx1-ubyte.gz: 1 labels are >= 10" in err


def test_ctrl_c_in_prepare_exits_130_with_one_line(monkeypatch, capsys, tmp_path):
    def interrupt(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "prepare", interrupt)
    assert cli.main(["--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("interrupted") and "Traceback" not in err


# ------------------------------------------------- Ctrl-C at start-up (issue 27, item 6)

_STARTUP = """
import runpy, sys
sys.argv = ["rewire.export", *sys.argv[1:]]
print("up", flush=True)
runpy.run_module("rewire.export", run_name="__main__", alter_sys=True)
"""


def _interrupted_after(delay: float, out) -> tuple[int, str]:
    """``python -m rewire.export`` (a short job) sent SIGINT ``delay`` seconds after its
    interpreter is up (SIGINT set to its default in the child, as a terminal gives it, even
    when this suite runs under nohup); its exit code and stderr."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARTUP, "--out", str(out), "--epochs", "1", "--no-progress",
         "--lava-samples", "0"], cwd=root, env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline().strip() == b"up"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err.decode()


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_130(tmp_path):
    """Issue 27, item 6: from the first imports (the command line's module loads only small
    standard modules, then installs its SIGINT handling before torch, Norse or Lava load)
    through data loading, preparation and training, Ctrl-C gives one ``interrupted`` line and
    exit code 130, never a traceback; nothing is published."""
    for i, delay in enumerate((0.1, 0.2, 0.4, 0.7, 1.0, 1.6, 2.4, 3.5)):
        code, err = _interrupted_after(delay, tmp_path / f"o{i}")
        if code == 0:  # the whole job ran before the signal (a fast machine): nothing to see
            continue
        assert code == 130, (delay, err)
        assert err.count("\n") == 1 and err.startswith("interrupted") \
            and "Traceback" not in err, (delay, err)
        out = tmp_path / f"o{i}"  # nothing published: the staging folder lives inside the
        assert not out.exists() or not any(out.iterdir())  # output folder and is gone
