"""Exporters: one module per file format, all reading a compiled network
(:class:`rewire.ir.compiled.CompiledNetwork`) and nothing from :mod:`rewire.frontends`,
:mod:`rewire.training` or :mod:`rewire.job`.

:data:`WRITERS` is the registry (format -> files, checks and writers) that hardware profiles'
``formats`` name, plus ``"cores"`` (``cores.json`` and ``cores.png``, for any profile);
:func:`write` writes a compiled network in the formats asked for (default: its profile's).
``python -m rewire.export`` runs the main job (:mod:`rewire.job`).

Example:
    >>> sorted(WRITERS)
    ['cores', 'netx', 'nir', 'onnx', 'xylo']
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the package loads no numpy: `python -m rewire.export` must reach its
    # entry point (which installs Ctrl-C handling) at once
    from rewire.ir.compiled import CompiledNetwork


__all__ = ["WRITERS", "FileWriter", "build", "check", "write"]


class FileWriter(NamedTuple):
    """One file a format produces.

    Attributes:
        key: the file key in :func:`write`'s result (``"netx"``, ``"onnx_int"``, ...).
        name: the file name in ``out_dir``.
        module: the writer module.
        check: a function of the module that refuses (``ExportError``) what the file cannot
            express, before anything is written; ``""``: the writer refuses nothing.
        func: the module's function ``func(net, path) -> path`` that writes the file.
    """

    key: str
    name: str
    module: str
    check: str = ""
    func: str = "write"


#: format -> the files it produces (:class:`FileWriter`), in writing order.
WRITERS: dict[str, tuple[FileWriter, ...]] = {
    "netx": (FileWriter("netx", "model.net", "rewire.export.netx", "check_network"),),
    "onnx": (FileWriter("onnx_step", "model_step.onnx", "rewire.export.onnx_step",
                        "check_size"),
             FileWriter("onnx_unrolled", "model_unrolled.onnx", "rewire.export.onnx_unrolled",
                        "check_size"),
             FileWriter("onnx_int", "model_int.onnx", "rewire.export.onnx_int", "check")),
    "nir": (FileWriter("nir", "model.nir", "rewire.export.nir_graph", "to_nir"),),
    "xylo": (FileWriter("xylo", "model_xylo.npz", "rewire.export.xylo_spec", "check"),
             FileWriter("xylo_json", "model_xylo.json", "rewire.export.xylo_spec",
                        func="write_json")),
    "cores": (FileWriter("cores_json", "cores.json", "rewire.export.cores", func="write_json"),
              FileWriter("cores_png", "cores.png", "rewire.export.cores", func="write_png")),
}
#: formats any profile may write (they describe the mapping, not a chip's input format).
ANY_PROFILE = ("cores",)


def _formats(net: CompiledNetwork, formats) -> list[str]:
    """The requested formats, checked (see :func:`write`)."""
    formats = list(net.profile.formats if formats is None else formats)
    unknown = [f for f in formats if f not in WRITERS]
    if unknown:
        raise ValueError(f"unknown export format(s) {unknown}; known: {sorted(WRITERS)}")
    foreign = [f for f in formats if f not in net.profile.formats and f not in ANY_PROFILE]
    if foreign:
        raise ValueError(f"profile {net.profile.name!r} lists formats {list(net.profile.formats)}"
                         f", not {foreign}: the chip does not run them")
    return formats


def check(net: CompiledNetwork, formats=None) -> None:
    """Run every requested writer's check, writing nothing.

    Raises:
        TypeError: ``net`` is not a compiled network.
        ValueError: an unknown format, or one the profile does not list.
        rewire.errors.ExportError: a format cannot express the network (names the format,
            the layer and why).
    """
    from rewire.ir.compiled import CompiledNetwork

    if not isinstance(net, CompiledNetwork):
        raise TypeError(f"net: give a rewire CompiledNetwork (rewire.compile(model, profile)), "
                        f"got {type(net).__name__}")
    for fmt in _formats(net, formats):
        for fw in WRITERS[fmt]:
            if fw.check:
                getattr(importlib.import_module(fw.module), fw.check)(net)


def build(net: CompiledNetwork, folder: str | Path, formats=None) -> dict[str, Path]:
    """Check ``net`` against every requested writer, then write its files into ``folder``
    (an existing folder, typically a :class:`rewire.io.Staging` folder): no publishing.

    The main job builds its files this way inside its own staging folder and publishes them
    with its report; :func:`write` wraps it for everyone else.

    Returns:
        ``{file key: path}`` as :func:`write`.

    Raises:
        as :func:`check`; nothing is written when a check refuses.
    """
    check(net, formats)
    built = {}
    for fmt in _formats(net, formats):
        for fw in WRITERS[fmt]:
            func = getattr(importlib.import_module(fw.module), fw.func)
            built[fw.key] = Path(func(net, Path(folder) / fw.name))
    return built


def write(net: CompiledNetwork, out_dir: str | Path, formats=None) -> dict[str, Path]:
    """Write ``net`` into ``out_dir`` in each of ``formats``, published as one set.

    Every requested writer's check runs first (:func:`check`); then every file is built in a
    hidden staging folder inside ``out_dir`` and published by :class:`rewire.io.Staging`: each
    file replaced by an atomic rename, then ``manifest.json`` (every file's SHA-256) written
    last as the set's commit record. A refusal, or a writer failing midway, leaves
    ``out_dir`` as it was; nothing in ``out_dir`` that rewire did not write is touched
    (docs/publishing.md; :func:`rewire.io.verify_set` checks a set).

    Args:
        net: a :class:`~rewire.ir.compiled.CompiledNetwork` (not modified).
        out_dir: output folder (created).
        formats: names from :data:`WRITERS`; default: the profile's ``formats`` (``"cores"``
            writes ``cores.json`` and ``cores.png``, for any profile).

    Returns:
        ``{file key: path}``: ``"netx"``, ``"onnx_step"``, ``"onnx_unrolled"``,
        ``"onnx_int"``, ``"nir"``, ``"xylo"`` (``model_xylo.npz``, :mod:`rewire.export.xylo_spec`),
        ``"xylo_json"``, ``"cores_json"``, ``"cores_png"`` (those written).

    Raises:
        TypeError: ``net`` is not a compiled network (e.g. ``None``, a dict, an IR
            ``Network``: compile it first), or ``out_dir`` is not a path.
        ValueError: ``out_dir`` is empty; an unknown format (named, with the known ones), or
            a format the profile does not list (the profile says what the chip runs).
        rewire.errors.ExportError: a format cannot express the network (e.g. netx and a
            leaky-integrator readout), naming the format and the layer; nothing is written.
    """
    if not isinstance(out_dir, (str, Path)):
        raise TypeError(f"out_dir: give a folder path, got {type(out_dir).__name__}")
    if str(out_dir) == "":
        raise ValueError("out_dir: give a folder path, got ''")
    check(net, formats)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from rewire.io import Staging

    with Staging(out) as stage:
        built = build(net, stage.path, formats)
        names = {key: path.name for key, path in built.items()}
        stage.publish()
    return {key: out / name for key, name in names.items()}
