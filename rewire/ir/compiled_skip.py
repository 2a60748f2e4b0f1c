"""A skip (residual) connection into a compiled layer (:class:`rewire.ir.network.Skip` after
the compiler; :mod:`rewire.compiler.skips` quantizes it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rewire.ir._checked import array_from_dict, check_int

__all__ = ["CompiledSkip"]


@dataclass(frozen=True, kw_only=True)
class CompiledSkip:
    """A skip connection into a compiled layer (:class:`rewire.ir.network.Skip`), quantized
    with the scale ``S`` of the layer it feeds.

    Attributes:
        source: 0 for the network input, ``k >= 1`` for the output of layer ``k`` (1-based).
        weight: float32 ``(n_target, n_source)``.
        weight_int: int32, same shape, on the layer's weight grid.
    """

    source: int
    weight: np.ndarray
    weight_int: np.ndarray

    def to_dict(self) -> dict:
        """``{"source", "weight", "weight_int"}``, arrays as ``{dtype, shape, data}``."""
        return {"source": self.source, **{k: _array(getattr(self, k))
                                          for k in ("weight", "weight_int")}}

    @staticmethod
    def from_dict(data: dict) -> "CompiledSkip":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: missing or unknown fields, or malformed arrays (named).
        """
        if not isinstance(data, dict) or set(data) != {"source", "weight", "weight_int"}:
            raise ValueError("a compiled skip is a {source, weight, weight_int} dict")
        return CompiledSkip(source=check_int("CompiledSkip.source", data["source"], 0,
                                             2**31 - 1),
                            **{k: array_from_dict(data[k], f"CompiledSkip.{k}")
                               for k in ("weight", "weight_int")})


def _array(value: np.ndarray) -> dict:
    return {"dtype": str(value.dtype), "shape": list(value.shape),
            "data": value.reshape(-1).tolist()}
