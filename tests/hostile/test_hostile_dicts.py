"""Hostile dicts to ``CompiledNetwork.from_dict`` and ``Network.from_dict`` (issue 27, item 3):
every field is checked against the range its format holds. A weight that does not fit the
chip's weight bits is an error naming the field, never numpy's 16-bit wrap (``10**9`` became
``-13824`` in ``model.net``); missing keys, wrong types, shapes and out-of-range decays or
thresholds are ``ValueError`` naming the field, never ``KeyError``/``AttributeError``/
``OverflowError``/``IndexError``."""

from __future__ import annotations

import copy
import json
import math
import random
import traceback
from pathlib import Path

import numpy as np
import pytest

from rewire.compiler.mapping import load_compiled
from rewire.frontends import lower
from rewire.ir.compiled import CompiledNetwork
from rewire.ir.network import Network

from conftest import HYPOTHESIS_PROFILE, capped, random_network

SCALE = 1 if HYPOTHESIS_PROFILE == "ci" else 10
SEED = 20261207 if HYPOTHESIS_PROFILE == "ci" else random.randrange(2**32)
V2 = json.loads((Path(__file__).parents[1] / "data" / "compiled_v2.json").read_text())
GARBAGE = [None, True, "x", "", [], {}, [1, 2], 2.5, -1, 0, 10**9, 10**30, -10**30, math.nan,
           math.inf, {"dtype": "int16", "shape": [1], "data": [10**9]}, [[1, 2], [3]]]


@pytest.fixture(scope="module")
def dicts(loihi2):
    from rewire import compile as compile_network
    net = compile_network(random_network((6, 5, 3), steps=4), loihi2, input_max_value=16)
    out = {"dense": net.to_dict()}
    for name, data in V2.items():
        out[name] = load_compiled(data).to_dict()
    return {k: json.loads(json.dumps(v)) for k, v in out.items()}


def test_a_weight_beyond_the_weight_bits_is_refused_not_wrapped(dicts):
    data = copy.deepcopy(dicts["dense"])
    data["layers"][0]["weight_int"]["dtype"] = "int16"
    data["layers"][0]["weight_int"]["data"][0] = 10**9
    with pytest.raises(ValueError, match=r"layers\[0\].*weight_int.*int16.*1000000000"):
        CompiledNetwork.from_dict(data)
    data["layers"][0]["weight_int"]["dtype"] = "int32"
    with pytest.raises(ValueError, match=r"layers\[0\] \('fc1'\)\.weight_int: 1 weights .*"
                                         r"\[-256, 254\].*1000000000"):
        CompiledNetwork.from_dict(data)


@pytest.mark.parametrize("field,value,match", [
    ("i_decay", 4097, r"i_decay must be an integer in \[0, 4096\]"),
    ("v_decay", -1, r"v_decay must be an integer in \[0, "),
    ("v_th_mant", 2**17, r"v_th_mant must be an integer in \[1, 131071\]"),
    ("v_th_mant", 2.5, r"v_th_mant must be an integer"),
    ("scale", math.inf, r"scale must be a finite number > 0"),
    ("neuron", None, r"neuron must be a dict"),
    ("weight", None, r"weight must be an array dict"),
])
def test_out_of_range_layer_fields_are_named(dicts, field, value, match):
    data = copy.deepcopy(dicts["dense"])
    data["layers"][0][field] = value
    with pytest.raises(ValueError, match=match):
        CompiledNetwork.from_dict(data)


@pytest.mark.parametrize("field,value,match", [
    ("steps", 0, r"steps must be an integer in \[1, 1000000\]"),
    ("steps", 2.5, r"steps must be an integer"),
    ("steps", True, r"steps must be an integer"),
    ("encoding", "", r"encoding must be one of"),
    ("input_gain", math.nan, r"input_gain must be a finite number > 0"),
    ("input_max_value", 2**40, r"input_max_value must be an integer in \[1, 16777216\]"),
    ("layers", [], r"layers must be a non-empty list"),
])
def test_out_of_range_run_fields_are_named(dicts, field, value, match):
    data = copy.deepcopy(dicts["dense"])
    data[field] = value
    with pytest.raises(ValueError, match=match):
        CompiledNetwork.from_dict(data)


@pytest.mark.parametrize("key", ["steps", "layers", "profile", "encoding"])
def test_missing_keys_are_named(dicts, key):
    data = copy.deepcopy(dicts["dense"])
    del data[key]
    with pytest.raises(ValueError, match=f"missing field '{key}'"):
        CompiledNetwork.from_dict(data)


def _mutate(rng, data):
    kind = rng.randrange(5)
    if kind == 0:
        data[rng.choice(sorted(data))] = rng.choice(GARBAGE)
    elif kind == 1:
        data.pop(rng.choice(sorted(data)))
    elif isinstance(data.get("layers"), list) and data["layers"] and \
            all(isinstance(l, dict) for l in data["layers"]):
        layer = rng.choice(data["layers"])
        key = rng.choice(sorted(layer))
        value = layer[key]
        if kind == 2 and isinstance(value, dict) and "data" in value and value["data"]:
            sub = rng.choice(["data", "shape", "dtype", "entry"])
            if sub == "entry":
                value["data"][rng.randrange(len(value["data"]))] = rng.choice(GARBAGE)
            else:
                value[sub] = rng.choice(GARBAGE + ["object", "int8", [10**12], [0]])
        elif kind == 3 and isinstance(value, dict) and value:
            value[rng.choice(sorted(value))] = rng.choice(GARBAGE)
        else:
            layer[key] = rng.choice(GARBAGE)
    return data


def test_fuzz_compiled_from_dict(dicts, loihi2, capsys):
    """Every mutated dict is refused with a ValueError naming a field, or loads into a network
    whose integer fields all fit the profile."""
    rng = random.Random(SEED)
    count, refused, tracebacks = 0, 0, []
    for _ in range(400 * SCALE):
        data = copy.deepcopy(dicts[rng.choice(sorted(dicts))])
        for _ in range(rng.randrange(1, 3)):
            data = _mutate(rng, data)
        count += 1
        try:
            with capped():
                net = CompiledNetwork.from_dict(data)
        except ValueError as exc:
            refused += 1
            assert str(exc).strip()
        except Exception:  # noqa: BLE001
            tracebacks.append(traceback.format_exc(limit=4))
        else:
            w = net.profile.weights
            for layer in net.layers:
                assert layer.weight_int.min() >= w.min_int and layer.weight_int.max() <= w.max_int
                assert 0 <= layer.i_decay <= net.profile.neuron.decay_unit
            assert isinstance(net.steps, int) and net.steps >= 1
    with capsys.disabled():
        print(f"\nfuzz CompiledNetwork.from_dict (seed {SEED}): {count} dicts, {refused} "
              f"refused, {count - refused - len(tracebacks)} loaded, {len(tracebacks)} tracebacks")
    assert not tracebacks, "\n".join(tracebacks[:4])


def test_fuzz_network_from_dict(capsys):
    base = json.loads(json.dumps(lower(random_network((6, 5, 3), steps=4)).to_dict()))
    rng = random.Random(SEED + 1)
    count, refused, tracebacks = 0, 0, []
    for _ in range(300 * SCALE):
        data = copy.deepcopy(base)
        if rng.random() < 0.5:
            data[rng.choice(sorted(data))] = rng.choice(GARBAGE)
        else:
            node = rng.choice(data["nodes"])
            key = rng.choice(sorted(node))
            node[key] = rng.choice(GARBAGE) if rng.random() < 0.8 else node.pop(key)
        count += 1
        try:
            with capped():
                net = Network.from_dict(data)
        except ValueError:
            refused += 1
        except Exception:  # noqa: BLE001
            tracebacks.append(traceback.format_exc(limit=4))
        else:
            assert isinstance(net.steps, int) and net.encoding in ("current", "rate")
    with capsys.disabled():
        print(f"\nfuzz Network.from_dict (seed {SEED + 1}): {count} dicts, {refused} refused, "
              f"{len(tracebacks)} tracebacks")
    assert not tracebacks, "\n".join(tracebacks[:4])


@pytest.mark.parametrize("field,value", [("steps", 2.5), ("steps", True), ("encoding", ""),
                                         ("input_gain", "1"), ("nodes", None)])
def test_network_from_dict_refuses_instead_of_coercing(field, value):
    data = json.loads(json.dumps(lower(random_network((6, 5, 3), steps=4)).to_dict()))
    data[field] = value
    with pytest.raises(ValueError, match=field):
        Network.from_dict(data)
