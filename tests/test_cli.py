"""The command line: bad input gives a clear error and exit code 2 before any work; a short
run writes every file atomically."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from rewire.frontends import nir as nir_frontend
from rewire.export.__main__ import main
from rewire.job import runner as pipeline


@pytest.mark.parametrize("argv, needle", [
    (["--profile", "nochip"], "unknown profile 'nochip'"),
    (["--profile", "/no/such.toml"], "profile file not found"),
    (["--connectivity", "0"], "--connectivity must be in (0, 1]"),
    (["--max-synapses", "3"], "output neurons"),
    (["--cores", "500"], "--cores must be in [1, 128]"),
    (["--dataset", "mnist"], "--dataset mnist needs --data-dir"),
    (["--dataset", "mnist", "--data-dir", "/no/such/dir"], "no such directory"),
    (["--target-sparsity", "0.2"], "--target-sparsity"),
    (["--device", "cuda:7"], None),
])
def test_bad_input_exits_2_with_message(tmp_path, capsys, argv, needle):
    code = main(argv + ["--out", str(tmp_path / "o"), "--epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    if needle is None:  # CUDA may exist where the tests run
        assert code in (0, 2)
        return
    assert code == 2
    assert err.startswith("error: ") and needle in err
    assert not (tmp_path / "o").exists()  # nothing written before the checks pass


def test_malformed_profile_file(tmp_path, capsys):
    bad = tmp_path / "chip.toml"
    bad.write_text('format_version = 1\nname = "x"\ndescription = "y"\nformats = ["netx"]\n'
                   '[limits]\ncores = -2\n')
    assert main(["--profile", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "field 'limits.cores' must be in [1, 1048576], got -2" in capsys.readouterr().err


def test_argparse_rejects_non_numbers(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["--epochs", "many"])
    assert exc.value.code == 2


def test_list_and_show_profiles(capsys):
    assert main(["--list-profiles"]) == 0
    assert "loihi2" in capsys.readouterr().out
    assert main(["--show-profile", "loihi2"]) == 0
    assert json.loads(capsys.readouterr().out)["limits"]["cores"] == 128


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "rewire.export", "--list-profiles"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "loihi2" in res.stdout


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["--out", str(out), "--epochs", "4", "--connectivity", "0.5", "--no-progress",
                 "--lava-samples", "2"])
    return code, out


def test_short_run_writes_everything(short_run):
    code, out = short_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["result"]["within_budget"]
    assert report["result"]["synapses"] <= report["budget"]["max_synapses"]
    assert {"netx", "onnx", "report"} <= set(report["files"])
    assert (out / "model.net").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == [
        "cores.json", "cores.png", "model.net", "model.nir", "model_int.onnx",
        "model_step.onnx", "model_unrolled.onnx", "report.json"]  # nothing temporary


def test_onnx_of_the_main_job_runs(short_run):
    from rewire.export import onnx_step

    _, out = short_run
    spikes = onnx_step.run(out / "model_step.onnx", np.full((2, 64), 0.5, np.float32))
    assert spikes.shape == (16, 2, 10)
    from rewire.export import nir_graph, onnx_int, onnx_unrolled

    unrolled = onnx_unrolled.run(out / "model_unrolled.onnx", np.full((2, 64), 0.5, np.float32))
    np.testing.assert_array_equal(unrolled, spikes)
    assert onnx_int.run(out / "model_int.onnx", np.full((16, 2, 64), 8)).shape == (16, 2, 10)
    lowered = nir_frontend.lower(out / "model.nir")
    sizes = (*lowered.input_shape, *(layer.out_shape[0] for layer in lowered.layers))
    assert sizes == (64, 256, 10)


def test_interrupted_export_keeps_previous_output(short_run, monkeypatch, tmp_path):
    """An export that fails midway leaves the earlier files intact and no temp file."""
    _, out = short_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(pipeline.onnx_step.onnx, "save", boom)
    code = main(["--out", str(out), "--epochs", "1", "--connectivity", "0.9", "--no-progress",
                 "--lava-samples", "0"])
    assert code == 2
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after.keys() == before.keys()
    assert after == before  # every file byte for byte, the netx written first included


def test_conv_gets_its_own_training_defaults_and_mlp_keeps_its_own():
    """--epochs and --lr left out: the model's defaults (issue 15 item 4: the mlp's lr 1e-3 and
    alpha_max 2 trained a dead conv net); given options win; the mlp is TrainConfig()."""
    from rewire.export.__main__ import job_spec, parser
    from rewire.training.train import TrainConfig

    mlp = job_spec(parser().parse_args([]))
    assert mlp.train == TrainConfig() and mlp.model == "mlp"
    conv = job_spec(parser().parse_args(["--model", "conv", "--no-progress"]))
    assert (conv.train.lr, conv.train.epochs) == (pipeline.CONV_LR, pipeline.CONV_EPOCHS["digits"])
    assert conv.train.controller == pipeline.CONV_CONTROLLER and conv.channels == (16, 32)
    assert pipeline.CONV_CONTROLLER["alpha_max"] < 1
    mnist = job_spec(parser().parse_args(["--model", "conv", "--dataset", "mnist"]))
    assert mnist.train.epochs == pipeline.CONV_EPOCHS["mnist"]
    given = job_spec(parser().parse_args(["--model", "conv", "--lr", "1e-3", "--epochs", "7",
                                          "--channels", "8", "16"]))
    assert (given.train.lr, given.train.epochs, given.channels) == (1e-3, 7, (8, 16))
    # the Python API resolves the same way, and names what it refuses
    assert pipeline.JobSpec(model="conv").train == dataclasses.replace(conv.train,
                                                                     progress=True)
    assert pipeline.JobSpec().train == TrainConfig()
    with pytest.raises(ValueError, match="--model"):
        pipeline.default_train_config("lstm")


def test_header_names_the_training_options_used():
    spec = pipeline.JobSpec(model="conv")
    line = pipeline.training_line(spec)
    assert f"{spec.train.epochs} epochs" in line and "lr 0.01" in line
    assert "'alpha_max': 0.95" in line
    assert "controller" not in pipeline.training_line(pipeline.JobSpec())
