"""The package's shape: every module imports on its own (no import cycle), the compiler and
the exporters import nothing from rewire.training, and ``import rewire`` stays light."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import rewire

MODULES = sorted(m.name for m in pkgutil.walk_packages(rewire.__path__, "rewire.")
                 if not m.name.endswith("__main__"))

PROBE = r"""
import importlib, json, sys
result = {}
for name in json.loads(sys.argv[1]):
    for key in [k for k in sys.modules if k == "rewire" or k.startswith("rewire.")]:
        del sys.modules[key]
    try:
        importlib.import_module(name)
        loaded = sorted(k for k in sys.modules if k.startswith("rewire."))
        result[name] = {"ok": True, "training": [k for k in loaded
                                                 if k.startswith("rewire.training")],
                        "heavy": [m for m in ("torch_geometric", "lava") if m in sys.modules]}
    except Exception as exc:
        result[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(result))
"""


def _probe(names):
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(names)], capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_module_imports_on_its_own_and_the_compiler_not_training():
    assert len(MODULES) > 40
    result = _probe(MODULES)
    failed = {k: v["error"] for k, v in result.items() if not v["ok"]}
    assert not failed
    for name, info in result.items():
        if name.startswith(("rewire.compiler", "rewire.export", "rewire.ir",
                            "rewire.frontends")) and name != "rewire.export.__main__":
            assert info["training"] == [], (name, info["training"])


def test_import_rewire_loads_neither_pyg_nor_lava():
    code = ("import sys, rewire; rewire.compile; rewire.load_profile('loihi2'); "
            "import rewire.export; "
            "print([m for m in ('torch_geometric', 'lava') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_profiles_name_only_registered_writers():
    from rewire.export import ANY_PROFILE, WRITERS
    from rewire.hw_profiles.profile import KNOWN_FORMATS, list_profiles, load_profile

    assert set(KNOWN_FORMATS) == set(WRITERS) - set(ANY_PROFILE)
    for name in list_profiles():
        assert set(load_profile(name).formats) <= set(WRITERS)
