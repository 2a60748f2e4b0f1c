"""The main job: train under a chip's budget, compile, export and report.

:mod:`rewire.job.runner` runs it (``python -m rewire.export`` calls it);
:mod:`rewire.job.report` builds and prints its report.
"""
