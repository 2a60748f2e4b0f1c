"""Integrity of ``--out`` (issue 17, items 6-9): a kill at each step of publishing leaves the
old set or the new set; stale files of the previous export go, the user's files stay;
SIGTERM, SIGKILL and Ctrl-C leave no staging folder a later run does not remove; concurrent
publishers never show a reader a mix; a full disk is a clean error."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rewire.job import publish
from rewire.job.publish import Staging, remove_stale

ROOT = Path(__file__).resolve().parents[2]
OLD = {"model.net": b"old net", "model.nir": b"old nir", "cores.json": b"old cores"}
NEW = {"model_step.onnx": b"new onnx", "cores.json": b"new cores"}  # a TrueNorth-like set
FOREIGN = {"notes.txt": b"mine", ".gitignore": b"*"}


def _report(files: dict, tag: str) -> bytes:
    return json.dumps({"tag": tag, "files": {k: f"/x/{k}" for k in files}}).encode()


def _old_folder(out: Path, foreign: bool = True) -> None:
    out.mkdir(parents=True)
    for name, raw in OLD.items():
        (out / name).write_bytes(raw)
    (out / "report.json").write_bytes(_report(OLD, "old"))
    if foreign:
        for name, raw in FOREIGN.items():
            (out / name).write_bytes(raw)
        (out / "sub").mkdir()
        (out / "sub" / "keep.txt").write_bytes(b"deep")


def _state(out: Path) -> str:
    """'old', 'new' or a description of the mix found in ``out``."""
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    foreign = {k: files.pop(k, None) for k in FOREIGN}
    assert foreign == FOREIGN, f"the user's files changed: {foreign}"
    assert (out / "sub" / "keep.txt").read_bytes() == b"deep"
    report = json.loads(files.pop("report.json"))
    if report["tag"] == "old" and files == OLD:
        return "old"
    if report["tag"] == "new" and files == NEW:
        return "new"
    return f"mix: report {report['tag']}, files {sorted(files)}"


def _publish_new(out: Path, hook=None) -> None:
    with Staging(out, hook) as stage:
        for name, raw in NEW.items():
            (stage.path / name).write_bytes(raw)
            if hook:
                hook(f"wrote {name}")
        (stage.path / "report.json").write_bytes(_report(NEW, "new"))
        stage.publish()


STEPS = ["staged", "wrote model_step.onnx", "wrote cores.json", "linked", "swapped", "cleaned"]


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_leaves_old_or_new_set(tmp_path, step):
    """A real SIGKILL at each step of publishing (a child process kills itself there): the
    folder holds the old set (before the swap) or the new set (after), the user's files in
    both; the next run removes the dead run's staging folder."""
    out = tmp_path / "out"
    _old_folder(out)
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_hostile_publish import _publish_new
        from pathlib import Path

        def hook(name):
            if name == {step!r}:
                os.kill(os.getpid(), signal.SIGKILL)

        _publish_new(Path({str(out)!r}), hook)
    """)
    res = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]
    expected = "old" if STEPS.index(step) < STEPS.index("swapped") else "new"
    assert _state(out) == expected
    leftovers = [p for p in tmp_path.iterdir() if p.name != "out"]
    assert leftovers or step == "cleaned"
    remove_stale(out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert _state(out) == expected
    _publish_new(out)  # and the next export still works
    assert _state(out) == "new"


def test_stale_files_of_the_previous_export_are_removed_and_only_those(tmp_path):
    """Item 7: a Loihi 2 export (model.net, model.nir) then a TrueNorth-like one (ONNX only):
    the old model files go; the user's notes.txt, .gitignore and sub/ stay."""
    out = tmp_path / "out"
    _old_folder(out)
    _publish_new(out)
    assert _state(out) == "new"
    assert not (out / "model.net").exists() and not (out / "model.nir").exists()


def test_failure_before_publish_leaves_everything(tmp_path):
    out = tmp_path / "out"
    _old_folder(out)
    with pytest.raises(OSError):
        with Staging(out) as stage:
            (stage.path / "model.net").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert _state(out) == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_first_export_into_a_new_folder(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    _publish_new(out)
    assert sorted(p.name for p in out.iterdir()) == sorted([*NEW, "report.json"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_fallback_without_exchange_replaces_and_cleans(tmp_path, monkeypatch):
    """Where renameat2 is missing, files are replaced one by one (report last) and the old
    export's files the new one lacks are removed."""
    monkeypatch.setattr(publish, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    _old_folder(out)
    _publish_new(out)
    assert _state(out) == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_live_runs_staging_is_not_removed(tmp_path):
    out = tmp_path / "out"
    _old_folder(out)
    with Staging(out) as stage:
        assert remove_stale(out) == [] and stage.path.exists()
    dead = tmp_path / f".out.rewire-{2**22 + 12345}-abc"  # a pid that does not exist
    dead.mkdir()
    inner = out / f".staging-{2**22 + 12345}-abc"  # the old layout's staging folder
    inner.mkdir()
    other = tmp_path / f".other.rewire-{2**22 + 1}-abc"  # another folder's: not ours
    other.mkdir()
    assert sorted(p.name for p in remove_stale(out)) == sorted([dead.name, inner.name])
    assert other.exists()


def test_concurrent_publishers_never_show_a_mix(tmp_path):
    """Two processes publish 15 sets each into one folder while this process reads it
    through a directory descriptor: every complete read is one set (all files carry one
    tag), and at the end no staging folder is left."""
    out = tmp_path / "out"
    out.mkdir()
    writer = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from rewire.job.publish import Staging
        tag = sys.argv[1]
        for i in range(15):
            with Staging(Path({str(out)!r})) as st:
                for name in ("a.bin", "b.bin", "c.bin"):
                    (st.path / name).write_text(f"{{tag}}{{i}}")
                (st.path / "report.json").write_text(
                    '{{"files": {{"a": "a.bin", "b": "b.bin", "c": "c.bin"}}}}')
                st.publish()
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", writer, tag], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE) for tag in ("x", "y")]
    reads, mixes = 0, []
    deadline = time.time() + 60
    while any(p.poll() is None for p in procs) and time.time() < deadline:
        try:
            fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            continue
        try:
            seen = set()
            for name in ("a.bin", "b.bin", "c.bin"):
                with open(os.open(name, os.O_RDONLY, dir_fd=fd)) as f:
                    seen.add(f.read())
        except FileNotFoundError:
            continue  # the folder was swapped away and removed while we read: read again
        finally:
            os.close(fd)
        reads += 1
        if len(seen) != 1:
            mixes.append(seen)
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read().decode()[-2000:]
    assert not mixes, mixes[:3]
    assert reads > 0
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert len({(out / n).read_text() for n in ("a.bin", "b.bin", "c.bin")}) == 1


# ----------------------------------------------------------------------------- the CLI

_CHILD = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from rewire.export import __main__ as cli
    from rewire.job import runner
    from rewire.job.publish import Staging

    def prepare(spec):
        return spec

    def run(spec, log=print):
        with Staging(Path(spec.out)) as st:
            (st.path / "model.net").write_text("half")
            print("ready", flush=True)
            time.sleep(60)

    runner.prepare, runner.run = prepare, run
    # a test run started in the background (nohup, no job control) inherits SIGINT ignored,
    # and Python then installs no KeyboardInterrupt handler: restore what a terminal gives
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(cli.main(["--out", sys.argv[1], "--no-progress"]))
""")


def _child_in_export(out):
    """The CLI in a child process, stopped in the middle of its export (staging written)."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(out)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    return proc


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"),
                                             (signal.SIGINT, 130, "interrupted")])
def test_signal_during_export_one_line_and_no_staging(tmp_path, sig, code, word):
    """Item 8: SIGTERM exits 143 and Ctrl-C (SIGINT) 130, each with one line and no
    traceback; the staging folder is gone and the previous export is whole."""
    out = tmp_path / "out"
    _old_folder(out, foreign=False)
    proc = _child_in_export(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "Prophesee" not in ln
             and "prophesee" not in ln and "CUDA" not in ln and not ln.startswith(" ")]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert {p.name for p in out.iterdir()} == {*OLD, "report.json"}


def test_sigkill_staging_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    _old_folder(out, foreign=False)
    proc = _child_in_export(out)
    proc.kill()
    proc.wait(timeout=60)
    assert len(list(tmp_path.iterdir())) == 2  # out and the dead run's staging folder
    _publish_new(out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_full_disk_while_staging_is_a_clean_error(tmp_path, monkeypatch, capsys):
    """Item 9 through the CLI: ENOSPC from a writer is one ``error: No space left on
    device`` line, exit 2, the previous export whole."""
    from rewire.export import __main__ as cli
    from rewire.job import runner

    out = tmp_path / "out"
    _old_folder(out, foreign=False)

    def run(spec, log=print):
        with Staging(Path(spec.out)) as st:
            (st.path / "model.net").write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(st.path / "model.nir"))

    monkeypatch.setattr(runner, "prepare", lambda spec: spec)
    monkeypatch.setattr(runner, "run", run)
    assert cli.main(["--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No space left on device") and err.count("\n") == 1
    assert {p.name for p in out.iterdir()} == {*OLD, "report.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_real_full_disk_netx_and_nir(tmp_path, small_net):
    """On a real full file system (a small tmpfs, where this runs as root) the HDF5 writers
    fail with OSError ENOSPC, never an h5py RuntimeError, and leave no temporary file."""
    from rewire.export import netx, nir_graph

    _, net = small_net
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "12k"):
        pytest.skip("cannot mount a tmpfs here (not root); test_full_disk_while_staging "
                    "covers the error path")
    try:
        for write, name in ((netx.write, "m.net"), (nir_graph.write, "m.nir")):
            (disk / "filler").write_bytes(b"x" * 8192)
            with pytest.raises(OSError) as exc:
                write(net, disk / name)
            assert exc.value.errno == errno.ENOSPC
            (disk / "filler").unlink()
            assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_published_folder_keeps_its_mode(tmp_path):
    out = tmp_path / "out"
    _old_folder(out, foreign=False)
    os.chmod(out, 0o751)
    _publish_new(out)
    assert out.stat().st_mode & 0o777 == 0o751
    fresh = tmp_path / "fresh"
    _publish_new(fresh)
    mask = os.umask(0)
    os.umask(mask)
    assert fresh.stat().st_mode & 0o777 == 0o777 & ~mask
