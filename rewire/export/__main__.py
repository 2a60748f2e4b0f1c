"""``python -m rewire.export``: the main job's command line, :func:`rewire.job.cli.main`."""
from rewire.job.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
