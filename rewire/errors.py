"""Every error rewire raises on purpose, under one base class.

Each subclasses :class:`RewireError` and :class:`ValueError` (bad input is a value error in
Python's terms, and callers that caught ``ValueError`` before keep working). Messages name
the field, file, layer or option at fault, say what was found and what to do instead.

Example:
    >>> from rewire.errors import CompileError, RewireError
    >>> issubclass(CompileError, RewireError) and issubclass(CompileError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["RewireError", "ProfileError", "BudgetError", "DataError", "LoweringError",
           "CompileError", "MappingError", "ExportError"]


class RewireError(ValueError):
    """Base class of rewire's errors: the message says what is wrong and how to fix it."""


class ProfileError(RewireError):
    """A hardware profile is missing, malformed or out of range.

    The message names the file and the field (``limits.cores``), says what was found
    and what is allowed.
    """


class BudgetError(RewireError):
    """A budget is infeasible or contradicts the profile; the message says which option to change."""


class DataError(RewireError):
    """A data set is unknown, or its files are missing or malformed."""


class LoweringError(RewireError, NotImplementedError):
    """A frontend met a module, parameter, NIR node or semantics it cannot lower to the IR.

    The message names the piece (its type and its name or path), says why it cannot be
    lowered and what to use instead. It is also a ``NotImplementedError``: the piece is
    valid for its framework, rewire just has no mapping for it.

    Attributes:
        piece: the qualified name of the module, parameter or NIR node at fault.
    """

    def __init__(self, message: str, piece: str = "") -> None:
        super().__init__(message)
        self.piece = piece


class CompileError(RewireError):
    """The network cannot run on the chip; the message names the layer, the limit and the fix."""


class MappingError(CompileError):
    """The network does not fit the chip's cores.

    Attributes:
        limit: the profile field that overflows (``"limits.neurons_per_core"``, ...).
        layer: the layer that does not fit (``""`` when the whole network is meant).
        needed, allowed: the amount needed and the amount the limit allows.
    """

    def __init__(self, message: str, limit: str = "", layer: str = "", needed: int = 0,
                 allowed: int = 0):
        super().__init__(message)
        self.limit, self.layer, self.needed, self.allowed = limit, layer, needed, allowed


class ExportError(CompileError):
    """A file format cannot express the compiled network (a ``CompileError``, so callers that
    catch those keep working).

    Attributes:
        format: the writer that refuses (``"netx"``, ``"onnx_int"``, ...).
        layer: the layer it refuses (``""`` when the whole network is meant).
    """

    def __init__(self, message: str, format: str = "", layer: str = ""):
        super().__init__(message)
        self.format, self.layer = format, layer
