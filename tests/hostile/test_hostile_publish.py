"""Integrity of ``--out`` (issues 17 and 27): a kill at each step of publishing leaves a
reader the old set or the new set (by the report's SHA-256s), and the next run finishes or
undoes it; stale files of the previous export go, nothing else does; SIGTERM, SIGKILL and
Ctrl-C leave no staging folder a later run does not remove; a full disk is a clean error.
What users keep in ``--out`` is checked in test_hostile_publish_fs.py."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rewire.io import SetError, Staging, recover, sha256, verify_set
from rewire.io import publish as io_publish

from _publish_sets import NEW, OLD, publish, raw, seen, snapshot, user_things

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
STEPS = ["staged", "wrote model_step.onnx", "wrote cores.json", "planned", "renamed cores.json",
         "renamed model_step.onnx", "committed", "cleaned", "removed"]


#: The user's look-alike folders of _publish_sets.user_things (never a run's staging).
FAKE_STAGING = {f".rewire-staging-{2**22 + 7}-abc", f".rewire-staging-{2**22 + 8}-abc"}


def _staging(out: Path) -> list[str]:
    # by exact name: a run's random token (12 hex digits) may itself contain "abc"
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".rewire-staging-")
                  and (p / ".rewire-staging").exists() and p.name not in FAKE_STAGING)


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_leaves_old_or_new_set(tmp_path, step):
    """A real SIGKILL at each step of publishing (a child process kills itself there): a
    reader (verify_set) sees the old set before the commit and the new one after, the user's
    things untouched; the next run undoes or finishes the publish and removes the dead
    run's staging folder, and the folder itself then holds that set."""
    out = tmp_path / "out"
    user_things(out)
    publish(out, "old")
    before = snapshot(out)
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(HERE)!r})
        from pathlib import Path
        from _publish_sets import publish

        def hook(name):
            if name == {step!r}:
                os.kill(os.getpid(), signal.SIGKILL)

        publish(Path({str(out)!r}), "new", hook)
    """)
    res = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                         timeout=60, env=ENV)
    assert res.returncode == -signal.SIGKILL, res.stderr.decode()[-2000:]
    expected = "old" if STEPS.index(step) < STEPS.index("committed") else "new"
    assert seen(out) == expected
    if step.startswith("renamed"):  # the folder itself is a mix: the journal gives the old set
        assert raw(out).startswith("mix")
    assert bool(_staging(out)) == (step != "removed")
    assert snapshot(out) == before
    assert len(recover(out)) == (step != "removed")  # what the next run does first
    assert _staging(out) == [] and raw(out) == expected and seen(out) == expected
    assert snapshot(out) == before
    publish(out, "new")  # and the next export works
    assert raw(out) == "new" and snapshot(out) == before


def test_stale_files_of_the_previous_export_are_removed_and_only_those(tmp_path):
    """A Loihi 2 export (model.net, model.nir) then a TrueNorth-like one: the old model
    files go; a listed file the user changed since (model.nir) stays, as does all else."""
    out = tmp_path / "out"
    user_things(out)
    publish(out, "old")
    (out / "model.nir").write_bytes(b"edited by the user")
    before = snapshot(out)
    publish(out, "new")
    assert not (out / "model.net").exists()
    assert (out / "model.nir").read_bytes() == b"edited by the user"
    assert seen(out) == "new" and snapshot(out) == before


def test_record_of_the_other_kind_is_superseded(tmp_path):
    """export.write's manifest.json then the job's report.json: the manifest (stale, it
    lists files that changed) goes once the report is in place."""
    out = tmp_path / "out"
    with Staging(out) as st:
        (st.path / "model.net").write_bytes(b"lib")
        st.publish()
    assert set(verify_set(out, "manifest.json")) == {"model.net"}
    publish(out, "new")
    assert not (out / "manifest.json").exists() and not (out / "model.net").exists()


def test_failure_before_or_during_publish_leaves_the_old_set(tmp_path, monkeypatch):
    """An error while staging, and an error between two renames (the second rename
    fails): the old set is whole, in the folder itself, and no staging folder is left."""
    out = tmp_path / "out"
    user_things(out)
    publish(out, "old")
    before = snapshot(out)
    with pytest.raises(OSError):
        with Staging(out) as st:
            (st.path / "model.net").write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    real, calls = os.replace, []

    def flaky(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(b))
        return real(a, b)

    monkeypatch.setattr(io_publish.os, "replace", flaky)
    with pytest.raises(OSError, match="Input/output"):
        publish(out, "new")
    monkeypatch.undo()
    assert raw(out) == "old" and _staging(out) == [] and snapshot(out) == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_between_renames_waits_for_the_commit(tmp_path, sig):
    """SIGTERM or Ctrl-C arriving between two renames (the child signals itself there, with
    the CLI's handlers) takes effect only after the record is in place: the child exits by
    the signal's exception, the folder holds the whole new set, no staging folder is left."""
    out = tmp_path / "out"
    publish(out, "old")
    child = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(HERE)!r})
        from pathlib import Path
        from _publish_sets import publish

        def term(signum, frame):
            raise SystemExit(143)

        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, signal.default_int_handler)

        def hook(name):
            if name == "renamed cores.json":
                os.kill(os.getpid(), {int(sig)})
            print(name, flush=True)

        try:
            publish(Path({str(out)!r}), "new", hook)
        except KeyboardInterrupt:
            sys.exit(130)
    """)
    res = subprocess.run([sys.executable, "-c", child], cwd=ROOT, capture_output=True,
                         timeout=60, env=ENV)
    assert res.returncode == (143 if sig == signal.SIGTERM else 130), res.stderr.decode()
    steps = res.stdout.decode().split("\n")
    assert "committed" in steps and "removed" in steps, steps
    assert raw(out) == "new" and _staging(out) == []


def test_a_folder_named_like_a_file_of_the_set_is_an_error_before_any_move(tmp_path):
    """A user's folder named cores.json: ExportError naming it; nothing moved, nothing left."""
    from rewire.errors import ExportError

    out = tmp_path / "out"
    publish(out, "old", files={"model.net": b"old net"})
    (out / "cores.json").mkdir()
    before = snapshot(out)
    with pytest.raises(ExportError, match="cores.json is a folder"):
        publish(out, "new")
    assert verify_set(out) == {"model.net": out / "model.net"} and _staging(out) == []
    assert (out / "cores.json").is_dir()
    assert snapshot(out) == before


@pytest.mark.parametrize("record", [b"[" * 100_000, b'{"sha256": {"../x": "' + b"0" * 64 + b'"}}',
                                    b'{"sha256": {"a": 1}}', b"\xff\xfe", b"null"])
def test_hostile_records_are_no_record(tmp_path, record):
    """A report.json nested 100,000 deep, naming a file outside the folder, with a digest
    that is not one, not UTF-8 or not an object: verify_set says there is no record (no
    RecursionError), a publish removes nothing it lists and replaces it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "x").write_bytes(b"outside")
    (out / "report.json").write_bytes(record)
    with pytest.raises(SetError, match="no record"):
        verify_set(out, tries=1)
    publish(out, "new")
    assert seen(out) == "new" and (out / "x").read_bytes() == b"outside"


def test_first_export_into_a_new_folder(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    publish(out, "new")
    assert sorted(p.name for p in out.iterdir()) == sorted([*NEW, "report.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask


def test_only_dead_marked_staging_folders_are_removed(tmp_path):
    """recover() removes a dead run's folder (its marker names it, nobody holds its lock),
    never a live run's, nor folders without a matching marker (user_things)."""
    out = tmp_path / "out"
    user_things(out)
    before = snapshot(out)
    dead = out / f".rewire-staging-{2**22 + 9}-tok"
    dead.mkdir()
    (dead / ".rewire-staging").write_text(json.dumps({"pid": 2**22 + 9, "token": "tok"}))
    os.symlink(out / "secret", dead / "new")  # a forged folder: links are never followed
    (tmp_path / "victim").write_bytes(b"v")
    (dead / "plan.json").write_text(json.dumps({  # nor names outside the folder acted on
        "record": "report.json", "record_sha256": "0", "existed": [],
        "files": {"../victim": sha256(tmp_path / "victim")}, "stale": {}}))
    with Staging(out) as st:  # entering removes the dead one
        assert not dead.exists() and st.path.is_dir()
        assert recover(out) == [] and st.path.is_dir()
        child = f"from rewire.io import recover; print(len(recover({str(out)!r})))"
        res = subprocess.run([sys.executable, "-c", child], capture_output=True, env=ENV)
        assert res.stdout.strip() == b"0" and st.path.is_dir()  # live in another process
    assert _staging(out) == [] and snapshot(out) == before
    assert (tmp_path / "victim").read_bytes() == b"v"


def test_verify_set_names_a_changed_file(tmp_path):
    out = tmp_path / "out"
    publish(out, "old")
    assert set(verify_set(out)) == set(OLD)
    (out / "cores.json").write_bytes(b"tampered")
    with pytest.raises(SetError, match="cores.json") as exc:
        verify_set(out, tries=2)
    assert exc.value.name == "cores.json"
    with pytest.raises(SetError, match="no record"):
        verify_set(tmp_path)


# ----------------------------------------------------------------------------- the CLI

_CHILD = textwrap.dedent("""
    import signal, sys, time
    from pathlib import Path
    from rewire.export import __main__ as cli
    from rewire.job import runner
    from rewire.io import Staging

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
    publish(out, "old")
    proc = _child_in_export(out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == code, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "Prophesee" not in ln
             and "prophesee" not in ln and "CUDA" not in ln and not ln.startswith(" ")]
    assert len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert {p.name for p in out.iterdir()} == {*OLD, "report.json"} and raw(out) == "old"


def test_sigkill_staging_removed_by_the_next_run(tmp_path):
    out = tmp_path / "out"
    publish(out, "old")
    proc = _child_in_export(out)
    proc.kill()
    proc.wait(timeout=60)
    assert len(_staging(out)) == 1 and seen(out) == "old"  # the dead run's staging folder
    publish(out, "new")
    assert _staging(out) == [] and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_full_disk_while_staging_is_a_clean_error(tmp_path, monkeypatch, capsys):
    """Item 9 through the CLI: ENOSPC from a writer is one ``error: No space left on
    device`` line, exit 2, the previous export whole."""
    from rewire.export import __main__ as cli
    from rewire.job import runner

    out = tmp_path / "out"
    publish(out, "old")

    def run(spec, log=print):
        with Staging(Path(spec.out)) as st:
            (st.path / "model.net").write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device", str(st.path / "model.nir"))

    monkeypatch.setattr(runner, "prepare", lambda spec: spec)
    monkeypatch.setattr(runner, "run", run)
    assert cli.main(["--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No space left on device") and err.count("\n") == 1
    assert {p.name for p in out.iterdir()} == {*OLD, "report.json"} and raw(out) == "old"
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
