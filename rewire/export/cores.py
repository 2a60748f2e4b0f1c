"""The core mapping's writers: ``cores.json`` (the mapping's figures per core and layer, see
docs/mapping.md) and ``cores.png`` (each core's utilisation of every limit), registered in
:data:`rewire.export.WRITERS` under ``"cores"`` (file keys ``cores_json``, ``cores_png``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rewire.io import atomic_path, write_text
from rewire.ir.cores import LIMIT_KEYS, LIMITS, CoreMapping, core_label

__all__ = ["write_json", "write_png"]


def _mapping(net) -> CoreMapping:
    return net if isinstance(net, CoreMapping) else net.mapping


def write_json(net, path: str | Path) -> Path:
    """Write ``cores.json`` (:meth:`~rewire.ir.cores.CoreMapping.to_dict` of ``net``'s
    mapping) atomically; return the path.

    Args:
        net: a :class:`~rewire.ir.compiled.CompiledNetwork` or a
            :class:`~rewire.ir.cores.CoreMapping` (the job's float path maps a network it
            does not compile).
    """
    mapping = _mapping(net)
    return write_text(path, json.dumps(mapping.to_dict(), indent=2) + "\n")


def write_png(net, path: str | Path) -> Path:
    """Bar chart of each core's utilisation of every limit (``cores.png``), written atomically.

    One group of bars per core (neurons, synapses, input axons, output routes and the largest
    per-neuron fan-in, each as a fraction of its limit; limits the chip does not set are left
    out) and a line at 100 %.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mapping = _mapping(net)
    usage = mapping.usage
    n = len(usage)
    fig = Figure(figsize=(min(max(7.0, 0.5 * n + 3), 24.0), 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(LIMIT_KEYS)
    x = np.arange(n)
    smallest = 100.0
    for k, (key, attr) in enumerate(LIMITS):
        util = [u.utilisation()[key] for u in usage]
        if all(v is None for v in util):
            continue
        pct = [100 * (v or 0) for v in util]
        bars = ax.bar(x + (k - (len(LIMITS) - 1) / 2) * width, pct, width, label=key)
        if n <= 16:  # the used amount on top of each bar
            ax.bar_label(bars, [f"{getattr(u, attr)}" for u in usage], fontsize=7, rotation=90,
                         padding=2)
        smallest = min([smallest] + [v for v in pct if v > 0])
    ax.axhline(100, color="k", linestyle="--", linewidth=1, label="limit")
    if smallest < 1.0:  # small utilisations stay visible on a log axis
        ax.set_yscale("log")
        ax.set_ylim(max(smallest / 3, 1e-4), 400)
    else:
        ax.set_ylim(0, 135)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{core_label(u.core)}" + ("" if n > 16 else "\n" + "+".join(u.layers))
                        for u in usage],
                       rotation=90 if n > 20 else 0, fontsize=8 if n > 20 else 9)
    ax.set_xlabel("core (layers)")
    ax.set_ylabel("used / core limit (%)")
    ax.set_title(f"{mapping.profile}: {mapping.cores} of {mapping.allotted} cores "
                 f"({mapping.algorithm})", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
