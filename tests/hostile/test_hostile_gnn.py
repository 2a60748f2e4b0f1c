"""Hostile input on the GNN side (issue 17, items 1, 5, 14): planted pickles in Planetoid raw
files never run, malformed raw files and checkpoints end in the documented error naming the
file, and no temporary copy is left behind.

Every case runs in process; the planted payloads would create a marker file, which must
never appear.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import random
import tempfile
import traceback

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from rewire.gnn.__main__ import main as gnn_main
from rewire.gnn.data import GraphDataError, load_planetoid
from rewire.gnn.models import ModelConfig, build_model, load_checkpoint, save_checkpoint
from rewire.gnn.planetoid_raw import PARTS, PlanetoidFileError, read_raw, restricted_loads

from conftest import HYPOTHESIS_PROFILE, capped

SCALE = 1 if HYPOTHESIS_PROFILE == "ci" else 10
SEED = 20261203 if HYPOTHESIS_PROFILE == "ci" else random.randrange(2**32)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _planetoid(root, key="cora", n_all=560, n_test=40, n_train=20, features=8, classes=3,
               seed=0):
    """A small Planetoid raw folder written the way the original files are (pickled scipy
    CSR matrices, numpy one-hot labels, a defaultdict(list) graph, a text test index)."""
    from collections import defaultdict

    rng = np.random.default_rng(seed)
    name = {"cora": "Cora", "citeseer": "CiteSeer"}[key]
    raw = root / name / "raw"
    raw.mkdir(parents=True)

    def feats(n):
        return sp.csr_matrix((rng.random((n, features)) < 0.3).astype(np.float32))

    def labels(n):
        return np.eye(classes, dtype=np.int32)[rng.integers(0, classes, n)]

    allx, ally = feats(n_all), labels(n_all)
    parts = {"x": allx[:n_train], "y": ally[:n_train], "allx": allx, "ally": ally,
             "tx": feats(n_test), "ty": labels(n_test)}
    nodes = n_all + n_test
    graph = defaultdict(list)
    for i in range(nodes):
        graph[i] += [int(j) for j in rng.integers(0, nodes, 3)]
    parts["graph"] = graph
    for part, obj in parts.items():
        (raw / f"ind.{key}.{part}").write_bytes(pickle.dumps(obj, protocol=2))
    test = rng.permutation(np.arange(n_all, n_all + n_test))
    (raw / f"ind.{key}.test.index").write_text("".join(f"{i}\n" for i in test))
    return root


@pytest.fixture
def fake_root(tmp_path):
    return _planetoid(tmp_path / "planetoid")


def test_fake_planetoid_loads_and_leaves_no_copy(fake_root, tmp_path, monkeypatch):
    """Item 14: the default cache is a temporary folder removed before returning."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    data = load_planetoid("cora", fake_root)
    assert data.num_nodes == 600 and data.num_features == 8
    assert int(data.train_mask.sum()) == 20 and int(data.val_mask.sum()) == 500
    assert int(data.test_mask.sum()) == 40
    assert list(tmp.iterdir()) == []
    assert sorted(p.name for p in (fake_root / "Cora").iterdir()) == ["raw"]  # root untouched


def test_explicit_cache_is_replaced_not_read(fake_root, tmp_path):
    """A planted ``processed/data.pt`` in a given cache folder is never loaded."""
    cache = tmp_path / "cache"
    (cache / "Cora" / "processed").mkdir(parents=True)
    marker = tmp_path / "PWNED"
    (cache / "Cora" / "processed" / "data.pt").write_bytes(_payload("os", marker))
    data = load_planetoid("cora", fake_root, cache)
    assert data.num_nodes == 600 and not marker.exists()


# ----------------------------------------------------------------------------- payloads

def _payload(kind: str, marker) -> bytes:
    """A pickle that would create ``marker`` if any of its globals were resolved for real."""
    m = str(marker).encode()
    sh = b"touch " + m
    code = b"open('" + m + b"', 'w').close()"
    if kind == "os":
        return b"cos\nsystem\n(S'" + sh + b"'\ntR."
    if kind == "posix":
        return b"cposix\nsystem\n(S'" + sh + b"'\ntR."
    if kind == "exec":
        return b"c__builtin__\nexec\n(S\"" + code + b"\"\ntR."
    if kind == "eval":
        return b"cbuiltins\neval\n(S\"" + code + b"\"\ntR."
    if kind == "open":
        return b"cbuiltins\nopen\n(S'" + m + b"'\nS'w'\ntR."
    if kind == "inst":  # protocol 0 INST opcode
        return b"(S'" + sh + b"'\nios\nsystem\n."
    if kind == "subprocess":
        return b"csubprocess\ncall\n((S'touch'\nS'" + m + b"'\nltR."
    if kind == "numpy-runstring":
        return b"cnumpy.testing._private.utils\nrunstring\n(S\"" + code + b"\"\n(dtR."
    if kind == "numpy-load":  # an allowed module, a refused name
        return b"cnumpy\nload\n(S'" + m + b"'\ntR."
    if kind == "dotted":  # protocol 4 STACK_GLOBAL with a dotted name
        return (b"\x80\x04\x8c\x05numpy\x8c\x14ndarray.__reduce_ex__\x93" +
                b"\x8c\x01x\x85R.")
    if kind == "defaultdict-factory":
        return b"ccollections\ndefaultdict\n(cos\nsystem\ntR."
    if kind == "copyreg":
        return b"ccopyreg\n_reconstructor\n(cos\nsystem\ncbuiltins\nobject\nNtR."
    if kind == "nested":  # a real CSR matrix with the payload as its data array
        mat = sp.csr_matrix(np.eye(3, dtype=np.float32))
        mat.__dict__["data"] = _Evil(sh.decode())
        raw = pickle.dumps(mat, protocol=2)
        assert b"system" in raw
        return raw
    if kind == "huge-array":  # numpy.ndarray called directly with a huge shape
        return b"cnumpy\nndarray\n(I1000000000000\n\x85tR."
    if kind == "huge-reconstruct":
        return (b"cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I100000000000\n"
                b"I100000\ntS'b'\ntR.")
    if kind == "object-dtype":
        return b"cnumpy\ndtype\n(S'O8'\nI0\nI1\ntR."
    if kind == "persistent":
        return b"\x80\x02X\x01\x00\x00\x00aQ."
    if kind == "ext":
        return b"\x80\x02\x82\x01."
    raise ValueError(kind)


class _Evil:
    """Pickles as a call of ``os.system(command)``."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


PAYLOADS = ["os", "posix", "exec", "eval", "open", "inst", "subprocess", "numpy-runstring",
            "numpy-load", "dotted", "defaultdict-factory", "copyreg", "nested", "huge-array",
            "huge-reconstruct", "object-dtype", "persistent", "ext"]


def test_payloads_would_run_with_plain_pickle(tmp_path):
    """The planted payloads are real: plain ``pickle.loads`` runs them (the ones that need no
    shell are checked here, so the test cannot pass by planting nothing)."""
    marker = tmp_path / "RAN"
    for kind in ("open", "exec", "eval"):
        pickle.loads(_payload(kind, marker))
        assert marker.exists(), kind
        marker.unlink()


@pytest.mark.parametrize("kind", PAYLOADS)
@pytest.mark.parametrize("part", ["x", "graph", "ty"])
def test_planted_pickle_never_runs(tmp_path, kind, part):
    """Item 1: a payload in any raw file is refused naming the file; it never runs."""
    root = _planetoid(tmp_path / "planetoid")
    marker = tmp_path / "PWNED"
    (root / "Cora" / "raw" / f"ind.cora.{part}").write_bytes(_payload(kind, marker))
    with pytest.raises(GraphDataError, match=rf"ind\.cora\.{part}"):
        load_planetoid("cora", root)
    assert not marker.exists()


def test_planted_pickle_through_the_cli(tmp_path, capsys):
    root = _planetoid(tmp_path / "planetoid")
    marker = tmp_path / "PWNED"
    (root / "Cora" / "raw" / "ind.cora.allx").write_bytes(_payload("os", marker))
    code = gnn_main(["train", "--dataset", "cora", "--data-root", str(root), "--epochs", "1",
                     "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "ind.cora.allx" in err and "not allowed" in err
    assert not marker.exists() and not (tmp_path / "m.pt").exists()


def test_restricted_loads_reads_what_pickle_reads():
    """The restricted loader builds the same arrays as ``pickle.load`` for the format."""
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    for proto in (0, 2, 4):
        out = restricted_loads(pickle.dumps(arr, protocol=proto))
        np.testing.assert_array_equal(out, arr)
        assert out.dtype == arr.dtype


# ----------------------------------------------------------------------------- malformed

def _structural_cases(rng, base: dict[str, bytes]):
    """(part, bytes) pairs: valid pickles of the wrong structure, and byte-level damage."""
    bad_objects = [None, 3, "x", [], {}, {1: "a"}, {-1: [0]}, {0: [10**9]}, {0: [0.5]},
                   np.zeros((2, 2, 2)), np.zeros(3), np.array([["a"]]),
                   np.full((20, 3), np.nan), sp.csr_matrix((10**5, 10**5), dtype=np.float32),
                   sp.csr_matrix(np.ones((7, 9), np.float32)), np.ones((560, 4), np.int32)]
    for part in PARTS[:-1]:
        for obj in bad_objects:
            yield part, pickle.dumps(obj, protocol=2)
    for text in [b"", b"-1\n", b"abc\n", b"1\n1\n", b"560\n" * 40, b"\xff\xfe",
                 "".join(f"{i}\n" for i in range(560, 600)).replace("599", "9" * 30).encode(),
                 "".join(f"{i}\n" for i in range(10**6, 10**6 + 40)).encode()]:
        yield "test.index", text
    n_random = 250 * SCALE
    for _ in range(n_random):
        part = rng.choice(PARTS[:-1])
        raw = bytearray(base[part])
        kind = rng.randrange(4)
        if kind == 0:
            raw = raw[: rng.randrange(len(raw))]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif kind == 2:
            pos = rng.randrange(len(raw))
            raw[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            ops = [pos for _, _, pos in pickletools.genops(bytes(raw))]
            pos = rng.choice(ops)
            raw = raw[:pos] + raw[pos + 1:]
        yield part, bytes(raw)


def test_fuzz_planetoid_raw(tmp_path, capsys):
    """Every damaged or mis-structured raw file is refused with :class:`PlanetoidFileError`
    naming the file (or, rarely, still fits together and then loads); never another
    exception."""
    rng = random.Random(SEED)
    root = _planetoid(tmp_path / "planetoid")
    raw_dir = root / "Cora" / "raw"
    base = {p: (raw_dir / f"ind.cora.{p}").read_bytes() for p in PARTS}
    count, refused, tracebacks = 0, 0, []
    for part, raw in _structural_cases(rng, base):
        count += 1
        path = raw_dir / f"ind.cora.{part}"
        path.write_bytes(raw)
        try:
            with capped():
                read_raw(raw_dir, "cora")
        except PlanetoidFileError as exc:
            refused += 1
            assert "ind.cora." in str(exc), str(exc)
        except Exception:  # noqa: BLE001 - the point of the test
            tracebacks.append(f"{part} {raw[:60]!r}: {traceback.format_exc(limit=3)}")
        path.write_bytes(base[part])
    with capsys.disabled():
        print(f"\nfuzz planetoid raw (seed {SEED}): {count} files, {refused} refused, "
              f"{count - refused - len(tracebacks)} loaded, {len(tracebacks)} tracebacks")
    assert count >= 300
    assert not tracebacks, "\n".join(tracebacks[:4])


def test_oversized_raw_file_is_refused_before_reading(fake_root, monkeypatch):
    from rewire.gnn import planetoid_raw

    monkeypatch.setattr(planetoid_raw, "MAX_RAW_BYTES", 100)
    with pytest.raises(GraphDataError, match="bytes, more than the 100"):
        load_planetoid("cora", fake_root)


# ----------------------------------------------------------------------------- checkpoints

@pytest.fixture(scope="module")
def good_payload(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig("gcn", 16, 3)
    path = save_checkpoint(build_model(cfg), cfg, tmp_path_factory.mktemp("ck") / "m.pt",
                           meta={"dataset": "toy"})
    return path, torch.load(path, weights_only=True)


def _checkpoint_cases(rng, payload, marker):
    import copy

    def with_(fn):
        p = copy.deepcopy(payload)
        fn(p)
        return p

    cfg_bad = [("typo", 1), ("arch", 3), ("arch", "gat"), ("in_channels", "16"),
               ("in_channels", 16.0), ("in_channels", True), ("in_channels", 0),
               ("in_channels", -5), ("hidden", 10**9), ("hidden", 2**80), ("hidden", None),
               ("out_channels", [3]), ("dropout", "0.1"), ("dropout", float("nan")),
               ("dropout", 1.0), ("dropout", float("inf")), ("egnn", 1), ("egnn", "yes")]
    for key, value in cfg_bad:
        yield f"config.{key}={value!r}", with_(lambda p: p["config"].__setitem__(key, value))
    yield "config huge (1 KB file, 40 GB model)", with_(lambda p: p["config"].update(
        in_channels=100_000, hidden=100_000))
    for key in ("config", "state_dict", "format"):
        yield f"no {key}", with_(lambda p: p.pop(key))
    for key, value in [("config", []), ("config", None), ("state_dict", []),
                       ("state_dict", {"x": 1}), ("meta", [1]), ("format", "other/1")]:
        yield f"{key}={value!r}", with_(lambda p: p.__setitem__(key, value))
    names = list(payload["state_dict"])
    for name in names:
        yield f"{name} missing", with_(lambda p: p["state_dict"].pop(name))
        yield f"{name} nan", with_(lambda p: p["state_dict"][name].fill_(float("nan")))
        yield f"{name} shape", with_(lambda p: p["state_dict"].__setitem__(
            name, torch.zeros(p["state_dict"][name].numel() + 1)))
        yield f"{name} int", with_(lambda p: p["state_dict"].__setitem__(
            name, p["state_dict"][name].long()))
        yield f"{name} str", with_(lambda p: p["state_dict"].__setitem__(name, "w"))
        yield f"{name} huge view", with_(lambda p: p["state_dict"].__setitem__(
            name, torch.zeros(1).expand(10**10)))
    yield "extra tensor", with_(lambda p: p["state_dict"].__setitem__("x", torch.zeros(2)))
    for obj in (None, 1, "x", [payload], {"format": payload["format"]}):
        yield f"top {type(obj).__name__}", obj
    yield "payload", _Evil(f"touch {marker}")


def test_fuzz_checkpoints(good_payload, tmp_path, capsys):
    """Item 5: every hostile checkpoint (a config field unknown, of the wrong type or asking
    for a huge model; a state tensor missing, mis-shaped, non-float, NaN or a 10**10-entry
    view; a pickle payload; bytes damaged) is refused with ValueError naming the file, before
    anything large is allocated; the payload never runs."""
    import resource

    rng = random.Random(SEED + 5)
    path, payload = good_payload
    marker = tmp_path / "PWNED"
    raw = path.read_bytes()
    cases = list(_checkpoint_cases(rng, payload, marker))
    count, tracebacks = 0, []
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i, (what, obj) in enumerate(cases):
        case = tmp_path / f"c{i}.pt"
        torch.save(obj, case)
        cases[i] = (what, case)
    for k in range(150 * SCALE):  # byte damage of a good file
        data = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        case = tmp_path / f"d{k}.pt"
        case.write_bytes(bytes(data))
        cases.append((f"damaged {k}", case))
    loaded = 0
    for what, case in cases:
        count += 1
        try:
            with capped():
                load_checkpoint(case)
        except ValueError as exc:
            assert str(case) in str(exc), (what, str(exc))
        except Exception:  # noqa: BLE001
            tracebacks.append(f"{what}: {traceback.format_exc(limit=3)}")
        else:
            loaded += 1
            assert what.startswith("damaged"), f"{what} was accepted"
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    with capsys.disabled():
        print(f"\nfuzz checkpoints (seed {SEED + 5}): {count} files, {loaded} loaded, "
              f"{count - loaded - len(tracebacks)} refused, {len(tracebacks)} tracebacks, "
              f"peak memory +{grown:.0f} MB")
    assert not marker.exists()
    assert grown < 500, "a hostile checkpoint allocated a large model"
    assert not tracebacks, "\n".join(tracebacks[:4])


# ----------------------------------------------------------------------------- the CLI

GNN_NUMBERS = ["0", "-1", "1", "3", "nan", "inf", "-inf", "1e308", "999999999", "2", "0.5",
               "", "x", "10000000000000000000000"]


def _gnn_argv(rng, ck, tmp_path):
    outs = ["", " ", "\x00", str(tmp_path), str(tmp_path) + "/", str(tmp_path / "dangling"),
            str(tmp_path / "file" / "x.pt"), "/proc/x.pt", str(tmp_path / "o.pt")]
    roots = ["", "\x00", "/nonexistent", str(tmp_path / "file"), str(tmp_path)]
    singles = [["train", "--out", o] for o in outs] \
        + [["train", "--dataset", d, "--data-root", r, "--out", str(tmp_path / "o.pt")]
           for d in ("cora", "citeseer") for r in roots] \
        + [["edit", c, "--targets", "1"] for c in ["", "\x00", str(tmp_path),
                                                  str(tmp_path / "file"), "/dev/null"]]
    yield from singles
    for _ in range(250 * SCALE - len(singles)):
        if rng.random() < 0.4:
            argv = ["train", "--out", rng.choice(outs[-3:])]
            for _ in range(rng.randint(1, 3)):
                argv += [rng.choice(["--hidden", "--dropout", "--epochs", "--seed"]),
                         rng.choice(GNN_NUMBERS)]
        else:
            argv = ["edit", str(ck)]
            argv += rng.choice([["--targets", *rng.sample(GNN_NUMBERS, rng.randint(1, 3))],
                                ["--misclassified", rng.choice(GNN_NUMBERS)], []])
            for _ in range(rng.randint(0, 3)):
                flag = rng.choice(["--labels", "--k", "--lam", "--lr", "--max-steps",
                                   "--batch-size", "--seed", "--method", "--mode", "--project",
                                   "--out", "--record", "--dataset"])
                if flag in ("--method", "--mode", "--project", "--dataset"):
                    argv += [flag, rng.choice(["gre", "gre+", "gd", "batch", "independent",
                                               "update", "toy", "cora", "x", ""])]
                elif flag in ("--out", "--record"):
                    argv += [flag, rng.choice(outs)]
                else:
                    argv += [flag, rng.choice(GNN_NUMBERS)]
        yield argv


def test_fuzz_gnn_cli(tmp_path, monkeypatch, capsys):
    """Every hostile argument list to ``python -m rewire.gnn`` ends in argparse's exit 2, an
    ``error:`` line with exit 2, or a run; never a traceback. Training and editing are
    replaced by stubs (the point is the checks in front of them)."""
    from rewire.gnn import __main__ as gnn_cli
    from rewire.gnn.editor import EditRecord  # noqa: F401 - the stub returns a real record

    torch.manual_seed(0)
    cfg = ModelConfig("gcn", 16, 3)
    ck = save_checkpoint(build_model(cfg), cfg, tmp_path / "ck.pt", meta={"dataset": "toy"})
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    monkeypatch.setattr(gnn_cli, "train_model", lambda model, data, **kw: model)

    class _Record:
        success_rate, steps, seconds_per_edit, cpu_seconds_per_edit = 1.0, 1, 0.0, 0.0

        def to_dict(self):
            return {}

    monkeypatch.setattr(gnn_cli, "edit", lambda model, data, targets, labels, config:
                        (model, _Record()))
    rng = random.Random(SEED + 6)
    count, tracebacks, outcomes = 0, [], {"argparse": 0, "error": 0, "ok": 0}
    for argv in _gnn_argv(rng, ck, tmp_path):
        count += 1
        err = io.StringIO()
        try:
            import contextlib
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
                    capped():
                code = gnn_cli.main(argv)
        except SystemExit as exc:
            assert exc.code == 2, argv
            outcomes["argparse"] += 1
        except Exception:  # noqa: BLE001
            tracebacks.append(f"{argv!r}: {traceback.format_exc(limit=4)}")
        else:
            if code == 2:
                assert err.getvalue().startswith("error: "), argv
                outcomes["error"] += 1
            else:
                assert code == 0, (argv, err.getvalue())
                outcomes["ok"] += 1
    outside = sorted(p.name for p in tmp_path.iterdir()) 
    with capsys.disabled():
        print(f"\nfuzz gnn CLI (seed {SEED + 6}): {count} argument lists: {outcomes}, "
              f"{len(tracebacks)} tracebacks")
    assert set(outside) <= {"ck.pt", "file", "dangling", "o.pt"}, outside
    assert not tracebacks, "\n".join(tracebacks[:4])


def test_gnn_ctrl_c_exits_130_with_one_line(monkeypatch, tmp_path, capsys):
    from rewire.gnn import __main__ as gnn_cli

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gnn_cli, "train_model", interrupt)
    assert gnn_cli.main(["train", "--out", str(tmp_path / "m.pt")]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "m.pt").exists()


# ----------------------------------------------------------------------------- issue 27

def _shared_list_graph(nodes: int, entries: int) -> bytes:
    """A protocol-2 pickle of ``{i: L for i in range(nodes)}`` with one list ``L`` of
    ``entries`` node ids, stored once and named again for every node through the memo:
    a small file standing for ``nodes * entries`` adjacency entries."""
    first = b"K\x00" + b"]q\x01(" + b"K\x00" * entries + b"e"  # 0: L, L in memo slot 1
    rest = b"".join(b"M" + i.to_bytes(2, "little") + b"h\x01" for i in range(1, nodes))
    return b"\x80\x02}q\x00(" + first + rest + b"u."


def test_graph_with_one_list_reused_for_every_node_is_refused_cheaply(tmp_path, capsys):
    """Issue 27: a ~20 KB ``ind.cora.graph`` naming one 10,000-entry list for each of its
    600 nodes (6 M entries) is refused by size before any list is copied, well inside a
    10 s / 2 GB cap; the CLI exits 2 with one line."""
    root = _planetoid(tmp_path / "planetoid")
    graph = root / "Cora" / "raw" / "ind.cora.graph"
    graph.write_bytes(_shared_list_graph(600, 10_000))
    obj = restricted_loads(graph.read_bytes())
    assert len(obj) == 600 and all(v is obj[0] for v in obj.values())
    with capped(seconds=10.0, extra_bytes=1 << 30):
        with pytest.raises(GraphDataError, match=r"ind\.cora\.graph.*more than its"):
            load_planetoid("cora", root)
        code = gnn_main(["train", "--dataset", "cora", "--data-root", str(root),
                         "--epochs", "1", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "ind.cora.graph" in err


@pytest.mark.parametrize("kind", ["sparse_coo", "sparse_csr", "meta"])
def test_checkpoint_with_sparse_or_meta_tensor_is_refused(good_payload, tmp_path, capsys,
                                                          kind):
    """Issue 27: a state tensor that is sparse or lives on the meta device ends in one
    ``error:`` line naming it (exit 2), not a torch traceback."""
    import copy
    import warnings

    _, payload = good_payload
    payload = copy.deepcopy(payload)
    name = next(k for k, v in payload["state_dict"].items() if v.dim() == 2)
    t = payload["state_dict"][name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        payload["state_dict"][name] = {"sparse_coo": t.to_sparse, "sparse_csr": t.to_sparse_csr,
                                       "meta": lambda: torch.empty(t.shape, device="meta")}[kind]()
    path = tmp_path / f"{kind}.pt"
    torch.save(payload, path)
    code = gnn_main(["edit", str(path), "--targets", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert name in err and "dense CPU float tensors" in err


def test_checkpoint_with_deeply_nested_meta_is_refused(good_payload, tmp_path, capsys):
    """Issue 27: a checkpoint whose ``meta`` holds 10**5 nested lists (which ``torch.load``
    reads but nothing can pickle again: RecursionError) is refused on the way in."""
    import struct
    import zipfile

    cfg = ModelConfig("gcn", 16, 3)
    plain = save_checkpoint(build_model(cfg), cfg, tmp_path / "plain.pt",
                            meta={"dataset": "toy", "deep": "PLACEHOLDER"})
    path = tmp_path / "nested.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                old = b"X" + struct.pack("<I", 11) + b"PLACEHOLDER"
                assert old in data
                data = data.replace(old, b"]" * 100_000 + b"a" * 99_999)
            zout.writestr(info.filename, data)
    with pytest.raises(ValueError, match="'meta' is nested deeper"):
        load_checkpoint(path)
    code = gnn_main(["edit", str(path), "--targets", "1", "--out", str(tmp_path / "o.pt")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and not (tmp_path / "o.pt").exists()


def test_memory_error_ends_the_cli_with_one_line(monkeypatch, tmp_path, capsys):
    """Issue 27: MemoryError anywhere in a run is one ``error:`` line and exit 2; run as
    ``python -m rewire.gnn`` the process then ends at once (``os._exit``) instead of
    spending minutes freeing what it built."""
    from rewire.gnn import __main__ as gnn_cli

    def oom(*a, **k):
        raise MemoryError

    monkeypatch.setattr(gnn_cli, "train_model", oom)
    assert gnn_cli.main(["train", "--out", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: out of memory")
    exits = []
    monkeypatch.setattr(gnn_cli.os, "_exit", lambda code: exits.append(code))
    assert gnn_cli.main(["train", "--out", str(tmp_path / "m.pt")], hard_exit=True) == 2
    assert exits == [2] and not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("target", ["10000000000000000000000", "-1"])
def test_edit_refuses_a_target_index_no_graph_has(tmp_path, capsys, target):
    """A node index past int64 (torch's 'Overflow when unpacking long', found by the CLI fuzz
    with seed 3578260629) or below 0 is a one-line error naming --targets, exit 2."""
    try:
        code = gnn_main(["edit", str(tmp_path / "missing.pt"), "--dataset", "toy",
                         "--targets", target])
    except SystemExit as exc:  # argparse's usage error (past int64)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "--targets" in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [["train", "--seed", "10000000000000000000000"],
                                  ["edit", "ck.pt", "--misclassified", "3", "--seed",
                                   "-10000000000000000000000"]])
def test_integer_options_past_int64_are_usage_errors(tmp_path, capsys, argv):
    """An integer option past int64 (torch's 'Overflow when unpacking long', found by the CLI
    fuzz with seed 330430518) is an argparse usage error: exit 2, one message, no traceback."""
    with pytest.raises(SystemExit) as exc:
        gnn_main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "64-bit" in err and "Traceback" not in err, err
