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

from dataclasses import dataclass, field

__all__ = ["RewireError", "ProfileError", "BudgetError", "DataError", "LoweringError",
           "CompileError", "MappingError", "ExportError", "StrictError", "RewireWarning",
           "WarningRecord", "SEMANTIC_NOTE"]

#: Leading words of a frontend note (``Network.notes``) that names a semantic difference
#: between the source model and the IR (spike trains that differ from the framework the
#: model came from). The compiler turns each such note into a :class:`RewireWarning`
#: (code ``"semantics"``); notes without it are plain information and stay notes.
SEMANTIC_NOTE = "differs from the source: "


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


class StrictError(CompileError):
    """``strict=True`` (``--strict``) met warnings: every one is named in the message.

    Attributes:
        warnings: the :class:`WarningRecord` s, in the order they were raised.
    """

    def __init__(self, warnings) -> None:
        self.warnings = tuple(warnings)
        super().__init__(f"strict: {len(self.warnings)} warning(s) are errors: "
                         + "; ".join(w.text for w in self.warnings)
                         + "; fix each one, or run without strict to accept them")


@dataclass(frozen=True)
class WarningRecord:
    """One warning about the compiled network: a semantic difference from the source model
    or a quantization loss (:mod:`rewire.compiler.diagnostics` lists the rules).

    Attributes:
        code: what kind of warning (``"semantics"``, ``"synapses_lost"``,
            ``"class_agreement"``, ``"threshold_resolution"``).
        layer: the compiled layer it is about (``""``: the whole network).
        message: one sentence naming the figure, the threshold and the fix.
        figures: the measured numbers (name -> int or float), for reports.

    Example:
        >>> w = WarningRecord("synapses_lost", "fc1", "lost 3 of 100", {"lost_share": 0.03})
        >>> w.text
        '[synapses_lost] fc1: lost 3 of 100'
        >>> WarningRecord.from_dict(w.to_dict()) == w
        True
    """

    code: str
    layer: str
    message: str
    figures: dict = field(default_factory=dict, hash=False)

    @property
    def text(self) -> str:
        """``[code] layer: message`` (the layer left out when it is the whole network)."""
        return f"[{self.code}] {self.layer + ': ' if self.layer else ''}{self.message}"

    def to_dict(self) -> dict:
        """JSON-ready ``{"code", "layer", "message", "figures"}``."""
        return {"code": self.code, "layer": self.layer, "message": self.message,
                "figures": dict(self.figures)}

    @classmethod
    def from_dict(cls, data: dict) -> "WarningRecord":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a dict with string ``code``, ``layer``, ``message`` and a dict of
                numbers ``figures`` (named).
        """
        if not isinstance(data, dict):
            raise ValueError(f"warning: expected a dict, got {type(data).__name__}")
        for key in ("code", "layer", "message"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"warning.{key} must be a string, got {data.get(key)!r}")
        figures = data.get("figures", {})
        if not isinstance(figures, dict) or any(
                not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float))
                for k, v in figures.items()):
            raise ValueError("warning.figures must map names to numbers")
        return cls(data["code"], data["layer"], data["message"], dict(figures))


class RewireWarning(UserWarning):
    """A difference between the source model and the compiled one that rewire can compile
    but that changes what the chip computes, issued through :func:`warnings.warn`.

    Attributes:
        record: the :class:`WarningRecord` (code, layer, message, figures).
    """

    def __init__(self, record: WarningRecord) -> None:
        super().__init__(record.text)
        self.record = record
