"""Shared fixtures and hypothesis settings profiles.

``REWIRE_HYPOTHESIS=ci`` (default): derandomized, 50 examples per property, the default test
run; ``thorough``: 1000 examples per property, random, run by hand::

    REWIRE_HYPOTHESIS=thorough .venv/bin/python -m pytest -q tests/properties
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from rewire import compile as compile_network
from rewire.hw_profiles.profile import load_profile
from rewire.training.model import SpikingMLP

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
HYPOTHESIS_PROFILE = os.environ.get("REWIRE_HYPOTHESIS", "ci")
if HYPOTHESIS_PROFILE not in ("ci", "thorough"):
    raise pytest.UsageError(f"REWIRE_HYPOTHESIS={HYPOTHESIS_PROFILE!r}: use 'ci' (default: "
                            f"derandomized, bounded) or 'thorough' (many more examples)")
settings.load_profile(HYPOTHESIS_PROFILE)


def examples(n_ci: int) -> settings:
    """Settings for an expensive property: ``n_ci`` examples under ``ci``, 20x as many (at
    most the profile's own number) under ``thorough``."""
    n = n_ci if HYPOTHESIS_PROFILE == "ci" else max(n_ci, min(20 * n_ci, 1000))
    return settings(max_examples=n)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def lava_missing() -> str | None:
    from rewire.export.lava_run import lava_missing as missing

    return missing()


requires_lava = pytest.mark.skipif(lava_missing() is not None,
                                   reason="Lava (lava-dl, Python 3.10) is not installed")


@pytest.fixture(scope="session")
def loihi2():
    return load_profile("loihi2")


def random_network(sizes, steps=12, encoding="current", seed=0, weight_gain=8.0,
                   density=1.0):
    """A SpikingMLP with random weights (scaled so that it spikes), some pruned."""
    torch.manual_seed(seed)
    model = SpikingMLP(sizes, steps=steps, encoding=encoding)
    gen = torch.Generator().manual_seed(seed + 7919)  # not the init stream: masks must not track signs
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(weight_gain)
            mask = torch.rand(lin.weight.shape, generator=gen) < density
            lin.weight.mul_(mask)
    return model


@pytest.fixture
def small_net(loihi2):
    model = random_network((12, 20, 5))
    return model, compile_network(model, loihi2, input_max_value=16)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tests with one torch thread, restoring the count afterwards (for tiny
    models, where the thread pool costs more than it saves on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CaseOverrun(BaseException):
    """A hostile case ran past its time cap: a hang (a BaseException, so the fuzz loops'
    ``except Exception`` cannot count it as a clean error)."""


@contextlib.contextmanager
def capped(seconds: float = 10.0, extra_bytes: int = 2 << 30):
    """Run one hostile case under a time cap (SIGALRM raises :class:`CaseOverrun`) and a
    memory cap (``RLIMIT_AS`` = the address space in use now plus ``extra_bytes``, so an
    allocation past it fails with MemoryError, which the fuzz loops count as a traceback).
    Main thread, POSIX only; elsewhere it runs the case uncapped."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def overrun(signum, frame):
        raise CaseOverrun(f"a hostile case ran over its {seconds} s cap (a hang)")

    previous = signal.signal(signal.SIGALRM, overrun)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as f:
        in_use = int(f.read().split()[0]) * resource.getpagesize()
    cap = in_use + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
