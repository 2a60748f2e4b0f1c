"""Moved to :mod:`rewire.ir.compiled`; this alias keeps old imports working."""

from rewire.ir.compiled import (FORMAT_VERSION, CompiledLayer,  # noqa: F401
                                 CompiledNetwork)


def __getattr__(name: str):
    """``CoreMapping`` lives in :mod:`rewire.compiler.mapping`; old imports keep working."""
    if name == "CoreMapping":
        from rewire.compiler.mapping import CoreMapping

        return CoreMapping
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
