"""Bad command-line input caught before any work (issue 17, items 10-12): empty strings, a
folder named like a shipped profile, a dangling ``--out`` link, ``--out .``, huge floats, a
profile whose name holds NUL or whose ``decay_bits`` is 1 or 2, MNIST labels >= 10. Each
exits 2 with one ``error:`` line naming the option or field, and nothing is written."""

from __future__ import annotations

import gzip
import struct

import pytest

from rewire.export import __main__ as cli
from rewire.hw_profiles.profile import PROFILE_DIR, load_profile
from rewire.job import runner


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
