"""mkdocs hook (``hooks:`` in mkdocs.yml): settings of the docs toolchain that mkdocs.yml
cannot express.

1. rewire's docstrings title their doctests ``Example:``; griffe's Google parser knows only
   ``Examples:`` as a section and would render ``Example:`` as prose, reading doctest output
   such as ``['x', 'v0']`` as Markdown links. ``Example`` is registered as an examples section.
2. A compatibility shim: pymdown-extensions 12 made ``pymdownx.highlight.Highlight.__init__``
   take the Markdown instance ``md`` first; mkdocstrings 1.0's ``Highlighter`` still calls it
   without, which fails with ``TypeError: Highlight.__init__() missing 1 required positional
   argument: 'md'``. The hook passes ``md`` through; nothing changes when the versions agree.
"""

from __future__ import annotations

import inspect


def _patch() -> None:
    try:
        from mkdocstrings._internal.handlers import rendering
        from pymdownx.highlight import Highlight
    except ImportError:  # pragma: no cover - other versions: nothing to do
        return
    if "md" not in inspect.signature(Highlight.__init__).parameters:
        return
    highlighter = rendering.Highlighter
    if getattr(highlighter, "_rewire_patched", False):
        return
    original = highlighter.__init__

    def __init__(self, md):  # noqa: N807 - replaces the constructor
        self._rewire_md = md
        original(self, md)

    def _highlight_init(self, *args, **kwargs):
        if isinstance(self, highlighter) and "md" not in kwargs and (
                not args or not hasattr(args[0], "htmlStash")):
            args = (self._rewire_md, *args)
        return highlight_init(self, *args, **kwargs)

    highlight_init = Highlight.__init__
    Highlight.__init__ = _highlight_init
    highlighter.__init__ = __init__
    highlighter._rewire_patched = True


def _example_sections() -> None:
    from griffe._internal.docstrings import google
    from griffe._internal.enumerations import DocstringSectionKind

    google._section_kind.setdefault("example", DocstringSectionKind.examples)


def on_startup(command, dirty):  # mkdocs event hook
    """Apply both settings once, when mkdocs starts."""
    _patch()
    _example_sections()


_patch()
_example_sections()
