"""The quantizer's rounding rule for weights, in one place: a float weight times the layer's
factor ``k = g S / step`` (``g`` the neuron's weight gain, ``S`` the layer's scale), rounded
half to even (numpy's ``round``), times the profile's weight step, clipped to the symmetric
magnitude. Used by :func:`rewire.compiler.quantize.quantize_layer` for every weight column
(input, recurrent, bias, dense skips) and by :func:`rewire.compiler.skips.with_conv_skips`
for a conv layer's skips, so that the two cannot drift apart.
"""

from __future__ import annotations

import numpy as np

__all__ = ["weight_magnitude", "round_weights"]


def weight_magnitude(weights) -> int:
    """The largest ``|w_int|`` of the profile's weight format ``weights``
    (:class:`rewire.hw_profiles.sections.WeightFormat`), symmetric: ``-256`` alone would be
    clipped to ``-255`` by Lava's inhibitory sign mode (lava-nc 0.10
    ``lava/utils/weightutils.py``), so the magnitude is ``min(max_int, -min_int)``."""
    return min(weights.max_int, -weights.min_int)


def round_weights(q: np.ndarray, k: float, weights) -> np.ndarray:
    """``clip(round(q k) step, -wmag, wmag)`` of float64 ``q``, in place (``q`` returned).

    Args:
        q: float64 weights, any shape; overwritten with the integer values (still float64).
        k: ``g S / step``: float weight -> weight-grid units.
        weights: the profile's weight format (``step``, ``max_int``, ``min_int``).
    """
    wmag = weight_magnitude(weights)
    np.multiply(q, k, out=q)
    np.round(q, out=q)
    np.multiply(q, weights.step, out=q)
    np.minimum(q, wmag, out=q)  # clip to [-wmag, wmag]
    np.maximum(q, -wmag, out=q)
    return q
