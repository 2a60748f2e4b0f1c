"""Exporters: one module per file format, all reading a compiled network
(:class:`rewire.ir.compiled.CompiledNetwork`) and nothing from :mod:`rewire.training`.

:data:`WRITERS` is the registry (format -> files and writers) that hardware profiles'
``formats`` name; :func:`write` writes a compiled network in the formats asked for (default:
its profile's). ``python -m rewire.export`` runs the main job (:mod:`rewire.job.runner`).

Example:
    >>> sorted(WRITERS)
    ['netx', 'nir', 'onnx']
"""

from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["WRITERS", "write"]

#: format -> ``((file name, module, function), ...)``: what :func:`write` produces.
WRITERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "netx": (("model.net", "rewire.export.netx", "write"),),
    "onnx": (("model_step.onnx", "rewire.export.onnx_step", "write"),
             ("model_unrolled.onnx", "rewire.export.onnx_unrolled", "write"),
             ("model_int.onnx", "rewire.export.onnx_int", "write")),
    "nir": (("model.nir", "rewire.export.nir_graph", "write"),),
}


def write(net, out_dir: str | Path, formats=None) -> dict[str, Path]:
    """Write ``net`` into ``out_dir`` in each of ``formats``.

    Args:
        net: a :class:`~rewire.ir.compiled.CompiledNetwork` (not modified).
        out_dir: output folder (created); every file is written to a temporary name and
            renamed into place.
        formats: names from :data:`WRITERS`; default: the profile's ``formats``.

    Returns:
        ``{file key: path}``, the key being the file name without its suffix
        (``model``, ``model_step``, ...) prefixed by the format for netx and NIR
        (``"netx"``, ``"onnx_step"``, ``"onnx_unrolled"``, ``"onnx_int"``, ``"nir"``).

    Raises:
        ValueError: an unknown format (named, with the known ones), or a format the profile
            does not list (the profile says what the chip runs).
        rewire.errors.CompileError: the format cannot express the network (e.g. netx and a
            leaky-integrator readout), naming the layer; nothing is written then.
    """
    formats = list(net.profile.formats if formats is None else formats)
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; known: {sorted(WRITERS)}")
    foreign = [f for f in formats if f not in net.profile.formats]
    if foreign:
        raise ValueError(f"profile {net.profile.name!r} lists formats {list(net.profile.formats)}"
                         f", not {foreign}: the chip does not run them")
    out = Path(out_dir)
    # build everything in memory-checked order first: a writer that refuses the network
    # (CompileError) must do so before any file of another format is written
    if "netx" in formats:
        from rewire.export.netx import check_network

        check_network(net)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        for name, module, func in WRITERS[fmt]:
            key = _key(fmt, name)
            written[key] = getattr(importlib.import_module(module), func)(net, out / name)
    return written


def _key(fmt: str, name: str) -> str:
    stem = name.split(".")[0]
    return fmt if stem == "model" else f"{fmt}_{stem.split('_', 1)[1]}"
