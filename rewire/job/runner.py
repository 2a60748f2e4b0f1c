"""The main job: train with GradR inside a chip's budget, compile, export, report.

:func:`rewire.job.preparation.prepare` checks every input (profile, data, budget, output
folder) before any work; :func:`run` then trains, compiles and writes, through
``rewire.export.write``, ``<out>/model.net`` (Lava netx HDF5), ``<out>/model_step.onnx``,
``<out>/model_unrolled.onnx`` (float, all steps), ``<out>/model_int.onnx`` (the chip's
integer model) and ``<out>/model.nir``; then ``<out>/cores.json`` and ``<out>/cores.png``
(per-core usage, see :mod:`rewire.compiler.mapping`) and ``<out>/report.json``
(:func:`rewire.job.report.build_report`). Only the export formats the profile lists for its
chip are written; the report says which were skipped and why. On Xylo (``neuron.model``
``cuba_bitshift``) the model is :class:`~rewire.training.xylo_model.XyloMLP`, the chip's file
is ``<out>/model_xylo.npz`` (+ ``.json``, :mod:`rewire.export.xylo_spec`) and every test
sample runs through XyloSim against the integer model (:data:`CHIP_CHECKS`), in the report
(``xylo_check``) and the table with the fan-out of every layer. The files are published as
one set (:class:`rewire.job.publish.Staging`).

Example (the job ``python -m rewire.export`` runs, on a smaller budget)::

    from rewire.job.runner import JobSpec, prepare, run
    report = run(prepare(JobSpec(out="build", connectivity=0.2)))
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from rewire._version import __version__
from rewire.compiler import equivalence, mapping, simulate
from rewire.compiler.quantize import compile_network
from rewire.errors import CompileError, RewireWarning, StrictError
from rewire.export import build as build_files, cores as cores_files
from rewire.frontends import lower
from rewire.hw_profiles.profile import KNOWN_FORMATS
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import layer_names
from rewire.ir.nodes import Dense
from rewire.job import health
from rewire.job.chip_checks import xylo_check
from rewire.job.preparation import Prepared, has_compiler, prepare
from rewire.job.publish import Staging
from rewire.job.qat_rule import qat_option
from rewire.job.quiet import captured
from rewire.job.report import build_report, export_formats, warning_records
from rewire.job.spec import JobSpec, default_train_config, training_line
from rewire.job.table import format_report
from rewire.training.conv import SpikingConvNet
from rewire.training.model import SpikingMLP
from rewire.training.qat import compile_image
from rewire.training.train import encoded_batches, train

__all__ = ["JobSpec", "Prepared", "default_train_config", "export_formats", "lava_check",
           "prepare", "run", "evaluation_inputs"]


def evaluation_inputs(prep: Prepared, net: CompiledNetwork) -> tuple[np.ndarray, np.ndarray]:
    """The test set as the float-vs-integer comparison and the Lava check take it, built
    once: ``(inputs, payload)``.

    ``inputs`` is what :func:`rewire.compiler.equivalence.compare` takes (the float test
    input ``(N, F)`` for ``current`` encoding, else the integer spike trains); ``payload`` the
    integer input ``(T, N, n_in)`` of the chip: the run's fixed test spike trains as they
    are, the integer image of the float input (``current``), or the spike trains of rewire's
    own rate coding, seeded by ``train.seed``.
    """
    spikes, x = prep.spikes, prep.split.x_test
    if spikes is not None:
        payload = spikes.x_test.transpose(0, 1).cpu().numpy().astype(np.int64)
        return payload, payload
    if net.encoding == "current":  # the integer payload of x itself: no model needed
        x = x.cpu().numpy()
        return x, simulate.encode_input(net, x)
    payload = np.concatenate([enc.cpu().numpy().astype(np.int64) for _, enc in
                              encoded_batches(prep.model, x, seed=prep.spec.train.seed)], axis=1)
    return payload, payload


def lava_check(net: CompiledNetwork, path: Path, payload: np.ndarray, samples: int) -> dict:
    """Run the first ``samples`` test inputs of ``payload`` ``(T, N, n_in)`` through Lava and
    compare with the integer model. What Lava prints on import is kept out of the output
    (:func:`rewire.job.quiet.captured`).

    Returns:
        ``{"samples", "spike_exact", "output_spikes", "compared", "seconds"}``, or
        ``{"skipped": why}``.
    """
    from rewire.export.lava_run import lava_missing, run_netx

    if samples <= 0:
        return {"skipped": "lava_samples 0"}
    with captured():
        missing = lava_missing()
    if missing:
        return {"skipped": missing}
    start = time.perf_counter()
    payload = payload[:, :samples]
    padded = simulate.pad_for_lava(net, payload)
    ref = simulate.simulate(net, padded, lava_delay=True)[-1]
    exact = spikes = 0
    with captured():
        for b in range(payload.shape[1]):
            out = run_netx(path, padded[:, b])
            exact += int(np.array_equal(out, ref[:, b]))
            spikes += int(out.sum())
    # a comparison of silence is not a check: say so in the result itself
    return {"samples": int(payload.shape[1]), "spike_exact": exact, "output_spikes": spikes,
            "compared": spikes > 0,
            "seconds": time.perf_counter() - start}


#: Export format -> (report key, check of the written file against the integer model, called
#: ``check(net, path, payload)`` on every test sample): the chip's own simulator.
CHIP_CHECKS = {"xylo": ("xylo_check", xylo_check)}


def _publish(stage: Staging, report: dict) -> None:
    """Publish the staged files into the output folder with ``report.json`` (listing every
    file's SHA-256) written last as the set's commit record (:class:`rewire.io.Staging`:
    each file replaced by a rename; nothing else in the output folder is touched)."""
    stage.publish(report, "report.json")


def _final_paths(out: Path, staged: dict) -> dict:
    """Where each staged file (and ``report.json``) will lie once published: key -> str."""
    return {**{k: str(out / Path(v).name) for k, v in staged.items()},
            "report": str(out / "report.json")}


def _train(prep: Prepared):
    """Train the prepared model: dense data through its Split, fixed spike trains ``(N, T, F)``
    as per-sample ``(T, F)`` (time on the batch's axis 1)."""
    spec, spikes, qat = prep.spec, prep.spikes, qat_option(prep)
    if spikes is None:
        return train(prep.model, prep.split, prep.budget, spec.train, qat=qat,
                     **prep.run_options)
    return train(prep.model, TensorDataset(spikes.x_train, spikes.y_train), prep.budget,
                 spec.train, test_data=TensorDataset(spikes.x_test, spikes.y_test),
                 time_axis=1, qat=qat, **prep.run_options)


def run(prep: Prepared, log=print) -> dict:
    """Train, compile, export and report. Returns the report dict (also in report.json).

    Raises:
        CompileError: a chip whose neurons rewire cannot compile, with a model other than a
            fully connected one (before training); what the compiler or a writer refuses.
        MappingError: the trained network does not fit the cores (before any file is written).
        StrictError: ``spec.strict`` and the run has warnings (raised after the files are
            published and the table logged; it names every warning).
    """
    spec, profile, t0 = prep.spec, prep.profile, time.perf_counter()
    compiled = has_compiler(profile)
    if not compiled and not isinstance(prep.model, SpikingMLP):
        raise CompileError(
            f"profile {profile.name!r}: its neuron model {profile.neuron.model!r} has no "
            f"fixed-point compiler in rewire (only 'cuba': loihi2, loihi; 'cuba_bitshift': "
            f"xylo), and the float-only path (train, map cores, report) takes fully "
            f"connected networks only")
    sizes = prep.sizes if prep.user_model else prep.model.sizes
    log(f"rewire {__version__}: {prep.split.name} {sizes} T={spec.steps} "
        f"on {profile.name}; budget {prep.budget.max_synapses} synapses "
        f"({prep.budget.connectivity:.2%}, {prep.budget.source})")
    log(training_line(spec))
    if isinstance(prep.model, SpikingConvNet):  # a silent conv layer would not learn
        torch.manual_seed(spec.train.seed)
        rates = prep.model.init_rates(prep.split.x_train[:128])
        log(f"conv init: firing rates {', '.join(f'{r:.2f}' for r in rates)} per step")
    result = _train(prep)
    report = (_compile_and_export if compiled else _map_float)(prep, result, t0)
    log(format_report(report))
    if spec.strict and report["warnings"]:  # after the files and the table: see them
        raise StrictError(warning_records(report))
    return report


def _compile_and_export(prep: Prepared, result, t0: float) -> dict:
    """Compile the trained network, check it against the float model and in Lava, write
    every file and the report, and publish them as one set."""
    spec, t1 = prep.spec, time.perf_counter()
    calibration = None if prep.spikes else prep.split.x_train.numpy()
    # the compiler's RewireWarnings are kept on the network and shown in the job's table and
    # report (and fail --strict there): not printed a second time as Python warning lines
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RewireWarning)
        if result.qat.get("on"):  # QAT trained the chip's float image: compile exactly that
            net = compile_image(prep.model.cpu(), prep.profile, prep.split.max_value,
                                spec.cores, calibration=calibration, **prep.run_options)
        else:
            net = compile_network(lower(prep.model.cpu(), **prep.run_options), prep.profile,
                                  prep.split.max_value, spec.cores, calibration=calibration)
    inputs, payload = evaluation_inputs(prep, net)
    equiv = equivalence.compare(net, inputs, labels=prep.split.y_test.cpu().numpy())
    t2 = time.perf_counter()
    formats = [f for f in KNOWN_FORMATS if f in prep.profile.formats]
    # Every file is built in a staging folder first and published only when all of them
    # exist, as one set: a failure or a kill midway leaves the previous export whole.
    with Staging(prep.out) as stage:
        staged = build_files(net, stage.path, [*formats, "cores"])
        t3 = time.perf_counter()
        lava = {"skipped": "profile has no netx target"}
        if "netx" in staged:
            lava = lava_check(net, staged["netx"], payload, spec.lava_samples)
        # the chip's own simulator, where its file has one: every test sample (cheap)
        checks = {key: check(net, staged[fmt], payload)
                  for fmt, (key, check) in CHIP_CHECKS.items() if fmt in staged}
        timings = {"train_s": t1 - t0, "compile_s": t2 - t1, "export_s": t3 - t2,
                   "total_s": time.perf_counter() - t0}
        report = build_report(prep, result, _final_paths(prep.out, staged), timings, lava,
                              formats, net=net, equivalence=equiv, payload=payload,
                              checks=checks)
        report["qat"] = result.qat
        _publish(stage, report)
    return report


def _map_float(prep: Prepared, result, t0: float) -> dict:
    """The end of the main job on a chip whose neurons rewire cannot compile (``neuron.model``
    outside :data:`rewire.job.preparation.COMPILED_MODELS`: speck, truenorth): the trained network's synapses are mapped
    onto the chip's cores and reported; no fixed-point file is written, and the report says
    why."""
    profile, spec, t1 = prep.profile, prep.spec, time.perf_counter()
    names = layer_names([Dense] * len(prep.model.linears))
    layers = [mapping.LayerConnectivity.from_mask(name, lin.weight.detach().cpu().numpy())
              for name, lin in zip(names, prep.model.linears)]
    cores = mapping.map_layers(layers, profile, spec.cores)
    reason = (f"neuron model {profile.neuron.model!r} of {profile.name} has no fixed-point "
              f"compiler in rewire (only 'cuba' and 'cuba_bitshift')")
    with Staging(prep.out) as stage:
        staged = {"cores_json": cores_files.write_json(cores, stage.path / "cores.json"),
                  "cores_png": cores_files.write_png(cores, stage.path / "cores.png")}
        t2 = time.perf_counter()
        timings = {"train_s": t1 - t0, "compile_s": 0.0, "export_s": t2 - t1,
                   "total_s": t2 - t0}
        inputs = (enc for _, enc in encoded_batches(prep.model, prep.split.x_test,
                                                     seed=spec.train.seed))
        if prep.spikes is not None:  # the run's fixed test spike trains (N, T, F)
            inputs = (prep.spikes.x_test[i:i + 512].transpose(0, 1)
                      for i in range(0, len(prep.spikes.x_test), 512))
        activity = health.float_activity(lower(prep.model.cpu()), inputs)
        report = build_report(prep, result, _final_paths(prep.out, staged), timings,
                              {"skipped": reason}, cores=cores, reason=reason,
                              activity=activity)
        _publish(stage, report)
    return report
