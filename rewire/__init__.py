"""rewire: Gradient Rewiring for spiking neural networks, from training under a chip's
budget to Lava netx, ONNX and NIR; and Gradient Rewiring for editable GNNs.

The pipeline, one sub-package each: :mod:`rewire.hw_profiles` (chip budgets),
:mod:`rewire.frontends` (Norse/torch modules and NIR graphs lowered to the IR),
:mod:`rewire.ir` (the intermediate representation), :mod:`rewire.training` (GradR),
:mod:`rewire.compiler` (fixed point, cores, integer model), :mod:`rewire.export` (netx,
ONNX, NIR), :mod:`rewire.job` (the main job) and :mod:`rewire.gnn` (GNN editing).

The curated face (each name is imported on first use, so ``import rewire`` loads neither
PyG nor Lava):

* :func:`load_profile`, :func:`compile`, :func:`lower`, ``rewire.export.write``;
* :func:`train` (any compilable model, :class:`TrainConfig`), :func:`apply_gradr`,
  :func:`remove_gradr`, :class:`GradR`, :class:`BudgetController`, :func:`model_budget`;
* :class:`LIFBitshiftCell`: Xylo's neuron as a torch cell (called like Norse's
  ``LIFCell``), for models that :func:`compile` lowers to ``BitshiftLIF`` layers;
* :class:`JobSpec`, :func:`run_job`; :class:`Network`, :class:`CompiledNetwork`;
  :class:`RewireError` and its subclasses in :mod:`rewire.errors`.

Example:
    >>> import torch, rewire
    >>> from norse.torch import LIFCell, SequentialState
    >>> model = SequentialState(torch.nn.Linear(4, 3, bias=False), LIFCell(),
    ...                         torch.nn.Linear(3, 2, bias=False), LIFCell())
    >>> net = rewire.compile(model, "loihi2", steps=8)
    >>> [(l.name, l.neuron.kind) for l in net.layers]
    [('fc1', 'CubaLIF'), ('fc2', 'CubaLIF')]
"""

from __future__ import annotations

import importlib

from rewire._version import __version__

_LAZY = {
    "load_profile": ("rewire.hw_profiles.profile", "load_profile"),
    "HardwareProfile": ("rewire.hw_profiles.profile", "HardwareProfile"),
    "lower": ("rewire.frontends", "lower"),
    "LIFBitshiftCell": ("rewire.frontends.bitshift", "LIFBitshiftCell"),
    "Network": ("rewire.ir.network", "Network"),
    "CompiledNetwork": ("rewire.ir.compiled", "CompiledNetwork"),
    "apply_gradr": ("rewire.training.gradr", "apply_gradr"),
    "remove_gradr": ("rewire.training.gradr", "remove_gradr"),
    "train": ("rewire.training.train", "train"),
    "TrainConfig": ("rewire.training.train", "TrainConfig"),
    "GradR": ("rewire.training.gradr", "GradR"),
    "BudgetController": ("rewire.training.budget", "BudgetController"),
    "model_budget": ("rewire.training.budget", "model_budget"),
    "JobSpec": ("rewire.job.spec", "JobSpec"),
    "RewireError": ("rewire.errors", "RewireError"),
    "CompileError": ("rewire.errors", "CompileError"),
    "LoweringError": ("rewire.errors", "LoweringError"),
}
_SUBPACKAGES = ("export", "errors", "ir", "frontends", "compiler", "hw_profiles", "training",
                "job", "gnn", "io")

__all__ = ["__version__", "compile", "run_job", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"rewire.{name}")
    raise AttributeError(f"module 'rewire' has no attribute {name!r}")


def compile(model, profile, input_max_value: int | None = None, cores: int | None = None, *,
            calibration=None, strict: bool = False, **lower_options):
    """Compile a network for a chip: lower it to the IR, then fixed point and cores.

    Like ``torch.compile`` this is a function (the compiler package is
    :mod:`rewire.compiler`).

    Args:
        model: a Norse/torch ``nn.Module``, a ``nir.NIRGraph``, a ``.nir`` path or a
            :class:`~rewire.ir.network.Network`.
        profile: a :class:`~rewire.hw_profiles.profile.HardwareProfile`, a shipped profile
            name (``"loihi2"``) or a TOML path.
        input_max_value, cores, calibration: see
            :func:`rewire.compiler.quantize.compile_network`; ``calibration`` images
            ``(B, C, H, W)`` also give a torch model's ``input_shape`` when no option does.
        strict: turn the compiler's warnings (:class:`~rewire.errors.RewireWarning`, issued
            through :func:`warnings.warn` and kept in ``warnings`` of the result: semantic
            differences from the source model and quantization losses,
            :mod:`rewire.compiler.diagnostics`) into a ``StrictError`` naming every one.
        lower_options: for the frontend, by keyword (:func:`rewire.frontends.lower`): a torch
            module takes ``example_input``, ``steps``, ``encoding``, ``input_gain``,
            ``input_shape``; a NIR graph or ``.nir`` path ``dt``, ``steps``, ``encoding``,
            ``input_gain``, ``source``; an IR network none. After :func:`train`, pass its
            ``TrainResult.run_options``.

    Returns:
        The :class:`~rewire.ir.compiled.CompiledNetwork`, which ``rewire.export.write`` writes.

    Raises:
        rewire.errors.LoweringError: a piece of the model that cannot be lowered, named.
        rewire.errors.CompileError: a layer the chip cannot run (named), a value an IR node
            refuses (a NaN weight, ``v_reset >= v_th``), or it does not fit (``MappingError``).
        rewire.errors.ProfileError: an unknown or malformed profile.
        TypeError: an option the model's frontend does not take (named).
        ValueError: frontend options given with an IR network (they would be ignored).
        rewire.errors.StrictError: ``strict`` and the compiler warned (a ``CompileError``).
    """
    from rewire.compiler.quantize import compile_network
    from rewire.errors import CompileError, RewireError
    from rewire.frontends import lower as _lower
    from rewire.hw_profiles.profile import HardwareProfile, load_profile as _load
    from rewire.ir.network import Network

    if not isinstance(profile, HardwareProfile):
        profile = _load(profile)
    if isinstance(model, Network):  # options would be ignored: refused by name
        network = _lower(model, **lower_options)
    else:
        lower_options = _layout_from_data(model, calibration, lower_options)
        try:
            network = _lower(model, **lower_options)
        except RewireError:
            raise
        except ValueError as exc:  # an IR node refused a value (NaN weight, v_reset >= v_th)
            raise CompileError(f"the model cannot be compiled: {exc}") from None
    return compile_network(network, profile, input_max_value=input_max_value, cores=cores,
                           calibration=calibration, strict=strict)


def _layout_from_data(model, calibration, options: dict) -> dict:
    """``options`` with ``input_shape`` read from image-shaped ``calibration`` data
    ``(B, C, H, W)`` for a torch model given neither ``input_shape`` nor ``example_input``
    (a conv net's image size, which its first layer does not tell)."""
    import torch

    shape = getattr(calibration, "shape", ())
    if not isinstance(model, torch.nn.Module) or len(shape) != 4 or \
            options.get("input_shape") is not None or options.get("example_input") is not None:
        return options
    return {**options, "input_shape": tuple(int(s) for s in shape[1:])}


def run_job(spec=None, log=print, model=None, **options) -> dict:
    """Run the main job (train under the profile's budget, compile, export, report), as
    ``python -m rewire.export`` does: the same defaults (:class:`~rewire.job.spec.JobSpec`,
    10 Lava samples included).

    Args:
        spec: a :class:`~rewire.job.spec.JobSpec` (default: built from ``options``, its
            fields).
        log: where progress and the final table go.
        model: a Norse/torch model of your own to train instead of rewire's MLP or conv net
            (see :func:`rewire.job.preparation.prepare`); it is GradR-parametrized in place.

    Returns:
        The report dict (also written as ``<out>/report.json``).

    Raises:
        rewire.errors.RewireError: bad input, before any work.
    """
    from rewire.job.preparation import prepare
    from rewire.job.runner import run
    from rewire.job.spec import JobSpec as _Spec

    return run(prepare(spec if spec is not None else _Spec(**options), model=model), log=log)
