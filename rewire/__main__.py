"""``python -m rewire``: the main job's command line, as ``python -m rewire.export``
(:func:`rewire.job.cli.main`)."""
from rewire.job.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
