"""The package version, imported by the writers and the job (never ``rewire/__init__``)."""

__version__ = "0.1.0"
