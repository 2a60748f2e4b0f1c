"""The main job on spike trains (issue 15, item 1): ``--input spikes`` (fixed rate-coded
trains of the shipped digits) and ``--events PATH`` (an .npz of spike trains), the compiled
network fed the very same spikes, and the refusals of a bad file before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rewire.job.cli import main
from rewire.job.events import load_events, rate_code
from rewire.errors import DataError
from rewire.training.data import load_digits_split

FAST = ["--hidden", "64", "--lr", "2e-2", "--no-progress", "--lava-samples", "3"]


@pytest.fixture(scope="module")
def digit_spikes():
    """Rate-coded digits, (N, T, F) uint8, as a user would write them to an .npz."""
    data = rate_code(load_digits_split(), steps=12, seed=5)
    return {"x_train": data.x_train.numpy().astype(np.uint8), "y_train": data.y_train.numpy(),
            "x_test": data.x_test.numpy().astype(np.uint8), "y_test": data.y_test.numpy()}


def _report(out):
    return json.loads((out / "report.json").read_text())


def _check_same_spikes(rep):
    """The integer/Lava checks ran on spikes and compared something."""
    assert rep["network"]["encoding"] == "rate"
    eq = rep["equivalence"]
    # float IR on the test spikes = the float model's accuracy measured in training
    assert abs(eq["float_accuracy"] - rep["result"]["float_accuracy"]) <= 2 / 360, eq
    assert eq["prediction_agreement"] >= 0.95, eq
    assert rep["warnings"] == [], rep["warnings"]    # a healthy run: spiking, above chance
    lava = rep["lava_check"]
    if "skipped" not in lava:
        assert lava["spike_exact"] == lava["samples"] and lava["output_spikes"] > 0, lava


def test_rate_code_is_fixed_by_the_seed():
    split = load_digits_split()
    a, b = rate_code(split, 8, 3), rate_code(split, 8, 3)
    assert a.x_train.shape == (len(split.x_train), 8, 64)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.x_test, b.x_test)
    assert set(torch.unique(a.x_train).tolist()) == {0.0, 1.0}
    # P(spike) = pixel value: the mean rate follows the image
    assert abs(float(a.x_train.mean()) - float(split.x_train.mean())) < 0.01
    assert not torch.equal(rate_code(split, 8, 4).x_train, a.x_train)


@pytest.mark.slow
def test_main_job_on_rate_coded_spike_trains(tmp_path):
    out = tmp_path / "out"
    assert main(["--input", "spikes", "--epochs", "8", "--out", str(out), *FAST]) == 0
    rep = _report(out)
    res = rep["result"]
    print(f"\n--input spikes: float {res['float_accuracy']:.2%}, integer "
          f"{res['quantized_accuracy']:.2%}, lava {rep['lava_check']}")
    assert rep["dataset"] == "digits:spikes"
    assert res["float_accuracy"] > 0.7 and res["within_budget"]
    _check_same_spikes(rep)


@pytest.mark.slow
def test_main_job_on_an_events_file(tmp_path, digit_spikes):
    path = tmp_path / "spikes.npz"
    np.savez(path, **digit_spikes)
    out = tmp_path / "out"
    assert main(["--events", str(path), "--steps", "12", "--epochs", "8", "--out", str(out),
                 *FAST]) == 0
    rep = _report(out)
    assert rep["dataset"] == "events:spikes.npz"
    assert rep["network"]["steps"] == 12 and rep["network"]["sizes"] == [64, 64, 10]
    _check_same_spikes(rep)


def _bad(digit_spikes, **change):
    arrays = dict(digit_spikes)
    for k, v in change.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    return arrays


@pytest.mark.parametrize("change, needle", [
    (dict(y_test=None), "missing array(s) ['y_test']"),
    (dict(X_train=np.zeros(1)), "unknown array(s) ['X_train']"),
    (dict(x_train=np.zeros((5, 64), np.uint8)), "x_train has shape (5, 64)"),
    (dict(x_test=np.full((360, 12, 64), 2, np.uint8)), "x_test holds 276480 values other than 0 and 1"),
    (dict(y_train=np.zeros(3, np.int64)), "y_train has 3 labels for 1437 samples"),
    (dict(y_train=np.zeros(1437)), "give integer class labels"),
    (dict(y_test=-np.ones(360, np.int64)), "negative label"),
    (dict(x_test=np.zeros((360, 12, 63), np.uint8)), "x_test has (T, F) = (12, 63)"),
    (dict(x_train=np.zeros((1437, 12, 64), "U1")), "dtype <U1"),
])
def test_bad_events_file_is_refused_before_any_work(tmp_path, capsys, digit_spikes, change,
                                                     needle):
    path = tmp_path / "bad.npz"
    np.savez(path, **_bad(digit_spikes, **change))
    out = tmp_path / "out"
    assert main(["--events", str(path), "--steps", "12", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(path) in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "16"], "T = 12 steps but --steps is 16; pass --steps 12"),
    (["--steps", "12", "--input", "dense"], "drop --input dense"),
    (["--steps", "12", "--encoding", "current"], "drop --encoding current"),
])
def test_events_options_that_contradict_the_file(tmp_path, capsys, digit_spikes, argv,
                                                  needle):
    path = tmp_path / "spikes.npz"
    np.savez(path, **digit_spikes)
    assert main(["--events", str(path), "--out", str(tmp_path / "o"), *argv, *FAST]) == 2
    assert needle in capsys.readouterr().err


def test_unreadable_or_missing_events_file(tmp_path, digit_spikes):
    bad = tmp_path / "not.npz"
    bad.write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_events(bad, 12)
    with pytest.raises(DataError, match="no such file"):
        load_events(tmp_path / "nope.npz", 12)
    one = tmp_path / "one.npz"
    np.savez(one, **_bad(digit_spikes, y_train=np.zeros(1437, np.int64),
                         y_test=np.zeros(360, np.int64)))
    with pytest.raises(DataError, match="at least 2"):
        load_events(one, 12)
    spikes, split = load_events(_good(tmp_path, digit_spikes), 12)
    assert spikes.x_train.dtype == torch.float32 and spikes.steps == 12
    assert split.num_classes == 10 and split.num_features == 64


def _good(tmp_path, digit_spikes):
    path = tmp_path / "good.npz"
    np.savez(path, **{k: (v.astype(bool) if k.startswith("x") else v)
                      for k, v in digit_spikes.items()})
    return path


def test_input_spikes_with_current_encoding_is_refused(tmp_path, capsys):
    assert main(["--input", "spikes", "--encoding", "current", "--out",
                 str(tmp_path / "o"), *FAST]) == 2
    assert "drop --encoding current" in capsys.readouterr().err
