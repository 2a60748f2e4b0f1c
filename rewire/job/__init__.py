"""The main job: train under a chip's budget, compile, export and report.

One module per concept: :mod:`rewire.job.spec` (what is asked, every default),
:mod:`rewire.job.checks` and :mod:`rewire.job.preparation` (every input checked before any
work), :mod:`rewire.job.runner` (train, compile, export), :mod:`rewire.job.report` (the one
function that builds ``report.json``), :mod:`rewire.job.table` (the printed table),
:mod:`rewire.job.health` (its warnings), :mod:`rewire.job.events` (spike-train input),
:mod:`rewire.job.publish` (the files as one set), :mod:`rewire.job.quiet` (third-party noise
kept out) and :mod:`rewire.job.cli` (``python -m rewire.export``, ``python -m rewire``).
"""
