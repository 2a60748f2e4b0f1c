r"""Quantization-aware training (QAT): the chip's weight grid, thresholds and decays in the
training loop, so that the float model a user reads is the integer model the chip runs.

The compiler (:func:`rewire.compiler.quantize.compile_network`) maps a float weight to

.. math::
    w_\mathrm{int} = \mathrm{clip}\big(\mathrm{step}\cdot
        \mathrm{round}(w\,g\,c_\mathrm{in}\,S / \mathrm{step}), \pm w_\mathrm{mag}\big),
    \qquad \mathrm{vThMant} = \mathrm{round}(v_\mathrm{th} S), \qquad
    \mathrm{iDecay} = \mathrm{round}(4096\,\Delta t\,\tau_\mathrm{syn}^{-1})

(``g`` the neuron's weight gain, :meth:`rewire.ir.chip_neurons.ChipNeuron.rates`; ``S`` the
layer's scale; ``c_in`` the float value of one unit of input payload; derivation in
docs/compiler.md). Its **float image** is the float network whose weights are
:math:`w_\mathrm{int} / (g\,c_\mathrm{in} S)`, thresholds :math:`\mathrm{vThMant}/S` and decays
:math:`\mathrm{iDecay}/4096`: the integer model up to the chip's rounding of its states
(:func:`chip_image`).

QAT trains that float image. Each weight ``w = s relu(theta)`` of GradR (Chen et al., IJCAI
2021, Eq. 5) keeps its parametrization, and :class:`ChipGrid` is stacked on top of it
(``torch.nn.utils.parametrize``): the forward uses the grid value, the backward passes the
gradient straight through (the straight-through estimator of Bengio, Léonard & Courville,
arXiv 1308.3432, 2013; as in Jacob et al., CVPR 2018, Sec. 3, "simulated quantization").
GradR's masks are untouched (:math:`\theta` is still the parameter and the synapse is
connected iff :math:`\theta > 0`). The decays are rounded once, the thresholds and the grid
follow ``S``, which the compiler itself computes from the current weights at the start of every
QAT epoch and once more at the end (:class:`QATRun`), so that the final model is the chip's
float image exactly.

Under ``current`` encoding the first layer's input goes on the chip's payload grid as well
(:class:`~rewire.training.qat_grid.InputGrid`, a forward pre-hook: ``g round(x p) / p``).
Compile the result with :func:`compile_image` (``rewire.compile`` refuses the hook by name, and
a weight already on its grid need not compile to the same ``S``)::

    qat = QAT("loihi2", epochs=10, input_max_value=16, calibration=x_train)
    result = train(model, split, budget, config, qat=qat)
    net = compile_image(model, "loihi2", 16, calibration=x_train, **result.run_options)

**The budget** counts what GradR counts: a connected synapse (:math:`\theta > 0`) whose weight
rounds to 0 on the grid still counts, although the chip does not store it; the chip therefore
never holds more synapses than the budget (``TrainResult.qat["grid_zero"]`` says how many
rounded to 0).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from rewire.compiler import equivalence
from rewire.compiler.quantize import compile_network
from rewire.errors import RewireError, RewireWarning
from rewire.frontends import lower
from rewire.frontends.bitshift import LIFBitshiftCell
from rewire.hw_profiles.profile import HardwareProfile, load_profile
from rewire.ir.chip_neurons import chip_class
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledRecurrentDense, CompiledSumPool
from rewire.training.qat_grid import ChipGrid, InputGrid, grid_off, qat_grids, remove_qat

__all__ = ["GRID_STEPS", "uniform_steps", "xylo_steps", "QAT", "ChipGrid", "InputGrid", "QATRun", "auto_epochs", "chip_image",
           "compile_image", "grid_off", "qat_grids", "remove_qat"]

#: Weight tensors a compiled layer's source module holds, in ``[W | W_rec]`` order.
WEIGHT_NAMES = ("weight", "input_weights", "recurrent_weights")


@dataclass(frozen=True, eq=False)
class QAT:
    """The ``qat=`` option of :func:`rewire.training.train.train`.

    Attributes:
        profile: the target chip (:class:`HardwareProfile`, a shipped name or a TOML path).
        epochs: the final epochs trained on the chip's grid (>= 1; all epochs at most).
        input_max_value, cores, calibration: as for
            :func:`rewire.compiler.quantize.compile_network` (pass what you will compile with:
            the grid is the compiler's).
        below: ``None``: QAT always; a fraction in (0, 1]: QAT only when the float-vs-integer
            class agreement on ``check_inputs``, measured when the QAT epochs would start, is
            below it (the job's rule: 0.99).
        check_inputs: what :func:`rewire.compiler.equivalence.compare` takes (``(B, n_in)`` in
            [0, 1] for ``current`` encoding, ``(T, B, n_in)`` spikes otherwise); needed with
            ``below``.

    Raises:
        ValueError: a field out of range, named.
    """

    profile: object
    epochs: int = 10
    input_max_value: int | None = None
    cores: int | None = None
    calibration: np.ndarray | None = None
    below: float | None = None
    check_inputs: np.ndarray | None = None

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"qat.epochs must be an integer >= 1 (the final epochs trained on "
                             f"the chip's grid), got {self.epochs!r}")
        if self.below is not None:
            if isinstance(self.below, bool) or not isinstance(self.below, (int, float)) \
                    or not 0 < self.below <= 1:
                raise ValueError(f"qat.below must be a fraction in (0, 1] (e.g. 0.99) or None, "
                                 f"got {self.below!r}")
            if self.check_inputs is None:
                raise ValueError("qat.check_inputs: give the inputs the float-vs-integer "
                                 "agreement is measured on (qat.below needs them)")
        if not isinstance(self.profile, HardwareProfile):
            if not isinstance(self.profile, str):
                raise ValueError(f"qat.profile must be a HardwareProfile, a shipped profile "
                                 f"name or a TOML path, got {type(self.profile).__name__}")
            object.__setattr__(self, "profile", load_profile(self.profile))


def _neuron_modules(model: nn.Module) -> list[nn.Module]:
    """Neuron modules in module order (the order of the IR layers): Norse's (a ``p``
    parameter tuple with ``tau_mem_inv`` or ``v_th``) and Xylo's
    :class:`~rewire.frontends.bitshift.LIFBitshiftCell` (its IR neuron ``neuron``)."""
    return [m for m in model.modules() if isinstance(m, LIFBitshiftCell) or (
        isinstance(getattr(m, "p", None), tuple)
        and any(f in getattr(m.p, "_fields", ()) for f in ("tau_mem_inv", "v_th")))]


def _layer_k(layer) -> tuple[float, float]:
    """``(k_in, k_rec)``: float weight -> integer units of ``layer``'s input and recurrent
    synapses (``g c_in S`` and ``g S``)."""
    gain = chip_class(layer.neuron).rates(layer.neuron)[2]
    return gain * layer.input_scale * layer.scale, gain * layer.scale


def chip_image(net: CompiledNetwork) -> CompiledNetwork:
    """The float image of ``net``'s integer model: float weights ``w_int / (g c_in S)``,
    thresholds ``vThMant / S`` and decays ``iDecay / 4096`` (module docstring); ``weight_int``
    and everything the chip runs are unchanged, so every float file written from the result
    is the chip's model up to its state rounding.

    Returns:
        A new :class:`CompiledNetwork` (``net`` is not changed).
    """
    layers = []
    for layer in net.layers:
        k_in, k_rec = _layer_k(layer)
        fields = {"weight": (layer.weight_int / k_in).astype(np.float32)}
        if isinstance(layer, CompiledRecurrentDense):
            fields["weight_rec"] = (layer.weight_rec_int / k_rec).astype(np.float32)
        if isinstance(layer, CompiledSumPool):
            fields["pool_weight"] = float(layer.weight_int.flat[0] / k_in) \
                if layer.weight_int.size else 0.0
        chip = layer.chip
        neuron = dataclasses.replace(chip.neuron, **_rounded_fields(layer, net.profile))
        fields["chip"] = dataclasses.replace(chip, neuron=neuron)
        layers.append(dataclasses.replace(layer, **fields))
    return dataclasses.replace(net, layers=tuple(layers))


def _rounded_fields(layer, profile: HardwareProfile) -> dict:
    """The IR neuron fields of ``layer`` on the chip's grid: ``tau_syn_inv``/``tau_mem_inv``
    from ``iDecay``/``vDecay`` and ``v_th = vThMant / S`` (only the fields the kind has)."""
    neuron, unit, out = layer.neuron, profile.neuron.decay_unit, {}
    i_rate, v_rate, _ = chip_class(neuron).rates(neuron)
    for name, rate, decay in (("tau_syn_inv", i_rate, layer.chip.i_decay),
                              ("tau_mem_inv", v_rate, layer.chip.v_decay)):
        if hasattr(neuron, name) and getattr(neuron, name):
            out[name] = decay / (unit * neuron.dt)
    if neuron.spiking:
        out["v_th"] = layer.chip.v_th_mant / layer.scale
    return out


def compile_image(model: nn.Module, profile, input_max_value=None, cores=None,
                  calibration=None, **lower_options) -> CompiledNetwork:
    """Compile a QAT-trained ``model`` exactly as QAT quantized it: lowered with its grids
    off (:func:`grid_off`), compiled, and given its float image (:func:`chip_image`).

    Args:
        model: a model trained with ``train(..., qat=QAT(...))``.
        profile, input_max_value, cores, calibration: as for ``compile_network`` (the same
            as the :class:`QAT` given to ``train``).
        lower_options: for :func:`rewire.frontends.lower` (``steps``, ``encoding``,
            ``input_gain``: ``TrainResult.run_options``).

    Raises:
        rewire.errors.CompileError, rewire.errors.LoweringError: as the compiler and frontend.
    """
    profile = profile if isinstance(profile, HardwareProfile) else load_profile(profile)
    with grid_off(model):
        net = compile_network(lower(model, **lower_options), profile, input_max_value, cores,
                              calibration=calibration)
    return chip_image(net)


class QATRun:
    """QAT inside :func:`rewire.training.train.train`: :meth:`epoch` at the start of every
    epoch, :meth:`finish` after the last (and after the projection); :attr:`info` is
    ``TrainResult.qat``. With ``qat=None`` every method does nothing and :attr:`info` is
    ``{}``.

    Args:
        qat: the :class:`QAT` option, or ``None``.
        model: the model being trained (GradR-parametrized).
        epochs: the run's epochs.
        run_options: ``steps``, ``encoding``, ``input_gain`` (the feed's ``run_options``).

    Raises:
        ValueError: ``qat.epochs`` above ``epochs`` (named).
    """

    def __init__(self, qat: QAT | None, model: nn.Module, epochs: int, run_options: dict):
        self.qat, self.model, self.run_options = qat, model, dict(run_options)
        self.active, self.info, self.v_th0 = False, {}, []
        if qat is not None and qat.epochs > epochs:
            raise ValueError(f"qat.epochs = {qat.epochs} is more than the run's {epochs} "
                             f"epochs; give at most epochs")
        self.start = None if qat is None else epochs - qat.epochs

    def _compile(self) -> CompiledNetwork:
        was_training = self.model.training
        # the grid's own compiles, of the plain weights: their warnings are not the result's
        with torch.random.fork_rng(devices=[]), torch.no_grad(), grid_off(self.model), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", RewireWarning)
            net = compile_network(lower(self.model, **self.run_options), self.qat.profile,
                                  self.qat.input_max_value, self.qat.cores,
                                  calibration=self.qat.calibration)
        self.model.train(was_training)
        return net

    def epoch(self, epoch: int) -> None:
        """At the start of ``epoch`` (0-based): decide and attach, then refresh the grid."""
        if self.qat is None or epoch < self.start:
            return
        if epoch == self.start:
            self.info = {"epochs": self.qat.epochs, "below": self.qat.below, "on": True}
            try:
                net = self._compile()
            except RewireError as exc:
                if self.qat.below is None:
                    raise
                # the rule cannot measure: QAT stays off, and the final compile reports it
                self.info.update(on=False, check_failed=str(exc))
                return
            if self.qat.below is not None:
                rep = equivalence.compare(net, self.qat.check_inputs)
                self.info["agreement_before"] = rep.prediction_agreement
                self.info["on"] = rep.prediction_agreement < self.qat.below
            if not self.info["on"]:
                return
            self._attach(net)
            self.active = True
        self.refresh()

    def _attach(self, net: CompiledNetwork) -> None:
        """Stack a :class:`ChipGrid` on every weight of every layer and round the decays."""
        cells = _neuron_modules(self.model)
        if len(cells) != len(net.layers):
            raise ValueError(f"qat: the model has {len(cells)} Norse neuron modules for "
                             f"{len(net.layers)} compiled layers; QAT needs one per layer")
        for layer, cell in zip(net.layers, cells):
            module = self.model.get_submodule(layer.source) if layer.source else None
            names = [n for n in WEIGHT_NAMES if module is not None and hasattr(module, n)]
            if not names:
                raise ValueError(f"qat: layer {layer.name} ({layer.source!r}) has no weight "
                                 f"tensor QAT can put on the chip's grid")
            for pname in names:
                parametrize.register_parametrization(module, pname, ChipGrid())
            if layer is net.layers[0] and net.encoding == "current":
                hook = InputGrid()
                self.model._rewire_qat_input = (module, hook,
                                                module.register_forward_pre_hook(hook))
            rounded = _rounded_fields(layer, net.profile)
            self._set_cell(cell, {k: v for k, v in rounded.items() if k != "v_th"})
            self.v_th0.append(getattr(layer.neuron, "v_th", None))

    @staticmethod
    def _set_cell(cell: nn.Module, values: dict) -> None:
        if isinstance(cell, LIFBitshiftCell):  # its decays are the chip's already (dash)
            if "v_th" in values:
                cell.neuron = dataclasses.replace(cell.neuron, v_th=float(values["v_th"]))
            return
        fields = {k: torch.full_like(torch.as_tensor(getattr(cell.p, k)), float(v))
                  for k, v in values.items() if k in cell.p._fields}
        cell.p = cell.p._replace(**fields)

    def refresh(self) -> None:
        """Recompute ``S`` with the compiler from the current weights and set every grid and
        threshold to it; records the grid's synapses rounding to 0 in :attr:`info`."""
        if not self.active:
            return
        net = self._compile()
        zero, mismatch = 0, 0
        steps = GRID_STEPS.get(net.profile.neuron.model, uniform_steps)(net)
        for index, (layer, cell, v_th0) in enumerate(zip(net.layers,
                                                         _neuron_modules(self.model),
                                                         self.v_th0)):
            module = self.model.get_submodule(layer.source)
            k_in, k_rec = _layer_k(layer)
            ints = [layer.weight_int] + ([layer.weight_rec_int] if layer.recurrent else [])
            for part, (pname, k, want) in enumerate(zip(
                    [n for n in WEIGHT_NAMES if hasattr(module, n)], (k_in, k_rec), ints)):
                grid = [p for p in module.parametrizations[pname] if isinstance(p, ChipGrid)][0]
                grid.set(k, *steps[index][part])
                with grid_off(self.model):
                    plain = getattr(module, pname)
                got = grid.integers(plain).reshape(np.shape(want))
                mismatch += int(np.count_nonzero(got != want))
                zero += int(np.count_nonzero((plain.detach().cpu().numpy().reshape(
                    np.shape(want)) != 0) & (want == 0)))
            if v_th0 is not None and layer.spiking:
                self._set_cell(cell, {"v_th": round(v_th0 * layer.scale) / layer.scale})
        held = getattr(self.model, "_rewire_qat_input", None)
        if held is not None:
            held[1].unit = net.input_gain / net.input_max_value
        self.info.update(grid_zero=zero, payload=int(net.input_max_value), grid_mismatch=mismatch,
                         scales=[float(l.scale) for l in net.layers])

    def finish(self) -> None:
        """The final grid (after the last epoch and after the projection): the model is then
        the float image of the network the compiler makes of it."""
        self.refresh()


def uniform_steps(net: CompiledNetwork) -> list[list[tuple[int, int]]]:
    """Per layer, per weight tensor (``[W | W_rec]``): ``(step, magnitude)`` of the
    compiler's integer grid, the profile's ``weights.step`` and its largest symmetric
    magnitude for every tensor (the CUBA compiler's, :mod:`rewire.compiler.rounding`)."""
    wfmt = net.profile.weights
    grid = (int(wfmt.step), int(min(wfmt.max_int, -wfmt.min_int)))
    return [[grid, grid] for _ in net.layers]


def xylo_steps(net: CompiledNetwork) -> list[list[tuple[int, int]]]:
    """:func:`uniform_steps` for Xylo: each matrix's integers are ``int8 << weight_shift``
    (:func:`rewire.compiler.xylo.xylo_shifts`), so its grid step is ``2**shift`` and its
    magnitude ``127 << shift``."""
    from rewire.compiler.xylo import matrix_of, xylo_shifts

    shifts, n = xylo_shifts(net), len(net.layers)
    top = int(min(net.profile.weights.max_int, -net.profile.weights.min_int))
    return [[(1 << shifts[matrix_of(k, n, part)], top << shifts[matrix_of(k, n, part)])
             for part in (False, True)] for k in range(n)]


#: ``profile.neuron.model`` -> the per-tensor integer grids of its compiled networks
#: (:func:`uniform_steps` for any model not listed).
GRID_STEPS = {"cuba_bitshift": xylo_steps}


def auto_epochs(epochs: int) -> int:
    """The job's QAT epochs for a run of ``epochs``: a sixth of them, at least one."""
    return max(1, math.ceil(epochs / 6))
