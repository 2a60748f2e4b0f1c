r"""What the compiled network does differently from the model it came from: the compiler's
warnings (:class:`~rewire.errors.RewireWarning`, issued through :func:`warnings.warn` and kept
as :class:`~rewire.errors.WarningRecord` s in ``CompiledNetwork.warnings``).

Each rule, with its code:

* ``semantics``: a frontend note that starts with :data:`rewire.errors.SEMANTIC_NOTE` (the
  source framework's spike trains differ from the IR's: a reset by subtraction or one step
  late, several spikes per step, decays that are not the framework's). Other notes are plain
  information (what was folded, dropped or assumed exactly) and stay in ``notes``.
* ``synapses_lost``: a layer whose weight grid rounds to 0 synapses that carry more than
  ``LOST_SHARE`` (1 %) of its synaptic weight: :math:`\sum_{\mathrm{lost}} |w| /
  \sum |w| > 0.01` over its float weights (recurrent ones included; a sum pool's constant
  kernel is never lost), a synapse being lost when its float weight is non-zero and its chip
  weight 0. The grid rounds the smallest weights to 0 first, so their share of the weight is
  at most their share of the synapses: such a layer has also lost more than 1 % of its
  synapses. One outlier weight sets the layer's scale and rounds the others to 0 (issue 23:
  77 % of a layer's synapses, 5 points of accuracy). The weight share, not the synapse count,
  is the rule because a trained sparse layer keeps a few weights near 0 that cost nothing: the
  main job's ``fc1`` loses 26 of 1427 synapses (1.8 %) carrying 0.015 % of its weight, and its
  integer model is as accurate as the float one.
* ``threshold_resolution``: a spiking layer whose threshold spans fewer than
  ``THRESHOLD_BITS`` (6) bits of the weight grid: :math:`\log_2(\mathrm{vThMant} / s) < 6`,
  :math:`s` the profile's weight step (``2**weights.exponent``, 2 on Loihi 2). The chip
  compares the membrane voltage with the threshold in units of that grid, so each synapse's
  rounding error is up to :math:`s / (2\,\mathrm{vThMant})` of the threshold: at 6 bits that
  is 1/128; below it, a few synapses' errors move a spike (issue 23: a recurrent NIR net with
  ``vThMant`` 19 matched its own float model on at most 1 of 32 samples). The threshold is
  small against the weights when one weight is much larger than the threshold (the scale is
  then set by that weight); the rule does not read :math:`\mathrm{vThMant} /
  \max|w_\mathrm{int}|` (a threshold a few strong synapses reach is normal: the main job's
  output layer has 2057 / 254, 3 bits, and its integer model agrees with the float one on
  99.7 % of the test set).
* ``class_agreement``: given calibration inputs (``current`` encoding, the float values
  ``x`` in [0, 1]), the float IR and the integer chip model predict the same class on fewer
  than ``AGREEMENT`` (98 %) of the first ``CALIBRATION_SAMPLES`` (1024) of them
  (:func:`rewire.compiler.equivalence.compare`). ``rate`` encoding's calibration values are
  not the spike trains the chip gets, so the rule needs ``current`` encoding.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import warnings as _warnings

import numpy as np

from rewire.errors import SEMANTIC_NOTE, RewireWarning, StrictError, WarningRecord
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.compiled_layers import CompiledConv, CompiledSumPool

__all__ = ["LOST_SHARE", "THRESHOLD_BITS", "AGREEMENT", "CALIBRATION_SAMPLES", "diagnose",
           "issue", "with_warnings", "semantic_notes", "lost_synapses", "threshold_resolution",
           "class_agreement"]

LOST_SHARE = 0.01          # share of a layer's float |w| the grid may round to 0
THRESHOLD_BITS = 6         # bits of the weight grid the threshold must span
AGREEMENT = 0.98           # float-vs-integer class agreement on the calibration inputs
CALIBRATION_SAMPLES = 1024  # calibration inputs the agreement is measured on (the first)


def semantic_notes(net: CompiledNetwork) -> list[WarningRecord]:
    """``semantics``: each note of ``net.notes`` marked :data:`~rewire.errors.SEMANTIC_NOTE`."""
    return [WarningRecord("semantics", "", note[len(SEMANTIC_NOTE):], {})
            for note in net.notes if note.startswith(SEMANTIC_NOTE)]


def lost_synapses(net: CompiledNetwork) -> list[WarningRecord]:
    """``synapses_lost``: layers whose weight grid rounds to 0 synapses carrying more than
    :data:`LOST_SHARE` of their float synaptic weight (``sum |w|``)."""
    out = []
    for layer in net.layers:
        if isinstance(layer, CompiledSumPool) or not layer.float_synapses:
            continue
        w = np.abs(_float_fan_in(layer))
        lost = (w > 0) & (layer.fan_in_matrix == 0)
        weight_share = float(w[lost].sum() / w.sum())
        if weight_share > LOST_SHARE:
            n_float, n_lost = layer.float_synapses, int(lost.sum())
            out.append(WarningRecord(
                "synapses_lost", layer.name,
                f"the {net.profile.name} weight grid rounds {n_lost} of its {n_float} float "
                f"synapses to 0 ({n_lost / n_float:.1%}), {weight_share:.1%} of the layer's "
                f"synaptic weight (more than {LOST_SHARE:.0%}; largest |weight| "
                f"{float(w.max()):.4g}, chip weights {int(layer.fan_in_matrix.min())}.."
                f"{int(layer.fan_in_matrix.max())}): an outlier weight sets the scale, or "
                f"the grid has too few bits; clip or regularize the weights, or train with "
                f"the chip's grid (quantization-aware training)",
                {"float_synapses": n_float, "synapses": layer.synapses,
                 "lost_share": n_lost / n_float, "lost_weight_share": weight_share}))
    return out


def _float_fan_in(layer) -> np.ndarray:
    """The float weights in the layout of ``layer.fan_in_matrix`` (recurrent, then skip
    ones after)."""
    w = np.asarray(layer.weight, np.float64).reshape(len(layer.weight), -1)
    rec = getattr(layer, "weight_rec", None)
    parts = [w] + ([] if rec is None else [np.asarray(rec, np.float64)])
    if not isinstance(layer, CompiledConv):  # a dense layer's skips follow its columns
        parts += [np.asarray(s.weight, np.float64) for s in layer.skips]
    return np.hstack(parts) if len(parts) > 1 else w


def threshold_resolution(net: CompiledNetwork) -> list[WarningRecord]:
    """``threshold_resolution``: spiking layers whose ``vThMant`` spans fewer than
    :data:`THRESHOLD_BITS` bits of the weight grid (``log2(vThMant / step)``)."""
    step = net.profile.weights.step
    out = []
    for layer in net.layers:
        if not layer.spiking:
            continue
        bits = math.log2(layer.v_th_mant / step) if layer.v_th_mant > 0 else -math.inf
        if bits < THRESHOLD_BITS:
            wmax = int(np.abs(layer.fan_in_matrix).max()) if layer.fan_in_matrix.size else 0
            out.append(WarningRecord(
                "threshold_resolution", layer.name,
                f"vThMant {layer.v_th_mant} is {bits:.1f} bits of the weight grid (step "
                f"{step}; fewer than {THRESHOLD_BITS}; largest chip weight {wmax}, scale "
                f"limited by {layer.scale_limited_by}): a weight much larger than the "
                f"threshold leaves the threshold few levels, and rounding moves spikes; "
                f"lower the largest weights or raise the threshold (v_th) in training",
                {"v_th_mant": int(layer.v_th_mant), "weight_step": int(step),
                 "bits": bits if math.isfinite(bits) else -1.0, "max_weight_int": wmax}))
    return out


def class_agreement(net: CompiledNetwork, calibration) -> list[WarningRecord]:
    """``class_agreement``: float vs integer class agreement below :data:`AGREEMENT` on the
    first :data:`CALIBRATION_SAMPLES` calibration inputs ``(B, n_in)`` in [0, 1]
    (``current`` encoding; nothing for ``rate`` encoding or no calibration)."""
    from rewire.compiler.equivalence import compare

    if calibration is None or net.encoding != "current" or not len(calibration):
        return []
    x = np.asarray(calibration, dtype=np.float64)[:CALIBRATION_SAMPLES]
    x = x.reshape(len(x), -1)
    agree = compare(net, x).prediction_agreement
    if agree >= AGREEMENT:
        return []
    return [WarningRecord(
        "class_agreement", "",
        f"the integer chip model predicts the float model's class on {agree:.2%} of "
        f"{len(x)} calibration inputs (fewer than {AGREEMENT:.0%}): the chip does not run "
        f"the network that was trained; see the synapses_lost and threshold_resolution "
        f"warnings, or train with the chip's grid (quantization-aware training)",
        {"agreement": float(agree), "samples": int(len(x))})]


def diagnose(net: CompiledNetwork, calibration=None) -> tuple[WarningRecord, ...]:
    """Every warning of ``net`` (module docstring), in rule order: semantics, then per layer
    synapses lost and threshold resolution, then class agreement.

    Args:
        net: the compiled network.
        calibration: optional calibration inputs ``(B, *input_shape)`` or ``(B, n_in)`` in
            [0, 1], as :func:`rewire.compiler.quantize.compile_network` takes them.

    Returns:
        The :class:`~rewire.errors.WarningRecord` s (``()`` for a clean network).
    """
    return tuple(semantic_notes(net) + lost_synapses(net) + threshold_resolution(net)
                 + class_agreement(net, calibration))


def issue(records, strict: bool = False) -> None:
    """Issue ``records`` as :class:`~rewire.errors.RewireWarning` s, or refuse them. Each
    warning points at the first caller outside rewire (the user's ``rewire.compile`` line).

    Args:
        records: :class:`~rewire.errors.WarningRecord` s.
        strict: raise instead of warning.

    Raises:
        rewire.errors.StrictError: ``strict`` and at least one record (every one named).
    """
    records = tuple(records)
    if strict and records:
        raise StrictError(records)
    for record in records:
        _warnings.warn(RewireWarning(record), stacklevel=_outside_rewire())


def _outside_rewire() -> int:
    """The ``stacklevel`` of the first frame outside the rewire package, seen from the
    function calling this one."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(root):
        frame, level = frame.f_back, level + 1
    return level


def with_warnings(net: CompiledNetwork, calibration=None, strict: bool = False
                  ) -> CompiledNetwork:
    """``net`` with its :func:`diagnose` records in ``warnings``, each issued
    (:func:`issue`: a :class:`~rewire.errors.RewireWarning`, or with ``strict`` a
    :class:`~rewire.errors.StrictError` naming them all).

    Raises:
        rewire.errors.StrictError: ``strict`` and any warning.
    """
    records = diagnose(net, calibration)
    issue(records, strict)
    return dataclasses.replace(net, warnings=records) if records else net
