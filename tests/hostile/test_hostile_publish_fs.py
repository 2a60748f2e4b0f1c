"""What users keep in ``--out`` survives publishing (issue 27, item 1): files another
process creates during a publish, a 0700 + setgid folder owned by someone else with extended
attributes, folders named like staging folders; a mount point works as ``--out`` (with a
sub-mount inside); concurrent publishers never show a reader (``verify_set``) a mix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rewire.io import SetError, read_set, verify_set

from _publish_sets import publish, raw, seen, snapshot, user_things

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

_WRITER = textwrap.dedent("""
    import os, sys, time
    out, stop = sys.argv[1], sys.argv[2]
    n = 0
    while not os.path.exists(stop):
        with open(os.path.join(out, f"w-{n:05d}.txt"), "w") as f:
            f.write(str(n))
        n += 1
        time.sleep(0.002)
    print(n)
""")


def _writer(out: Path, stop: Path) -> subprocess.Popen:
    """A process creating ``out/w-NNNNN.txt`` every 2 ms until ``stop`` exists."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(stop)],
                            stdout=subprocess.PIPE)
    while not (out / "w-00000.txt").exists():
        time.sleep(0.001)
    return proc


def _lost(out: Path, stop: Path, proc: subprocess.Popen) -> int:
    stop.touch()
    made = int(proc.communicate(timeout=60)[0])
    lost = sum(not (out / f"w-{i:05d}.txt").exists() for i in range(made))
    print(f"writer: {made} files made, {lost} lost")
    return lost


@pytest.mark.parametrize("run", range(3))
def test_concurrent_writer_loses_no_file(tmp_path, run):
    """A writer creates a file every 2 ms in --out while 10 sets are published there,
    alternating old and new: every one of its files survives, with its bytes."""
    out = tmp_path / "out"
    user_things(out)
    before = snapshot(out)
    proc = _writer(out, tmp_path / "stop")
    t0 = time.perf_counter()
    for i in range(10):
        publish(out, ("old", "new")[i % 2])
    elapsed = time.perf_counter() - t0
    assert _lost(out, tmp_path / "stop", proc) == 0
    assert all((out / f"w-{i:05d}.txt").read_text() == str(i) for i in range(5))
    for p in out.glob("w-*.txt"):
        p.unlink()
    assert raw(out) == "new" and snapshot(out) == before
    print(f"10 publishes in {elapsed:.3f} s with a writer")


def test_user_folders_keep_mode_owner_setgid_and_xattrs(tmp_path):
    """A 0700 + setgid folder (owned by uid 1234 where this runs as root) with an xattr,
    a user's .staging-* folder and look-alikes of rewire's staging folders: after
    publishing twice, each is the same inode with the same mode, owner, mtime, xattrs and
    bytes; ``--out`` keeps its inode and mode (0751)."""
    out = tmp_path / "out"
    why = user_things(out)
    os.chmod(out, 0o751)
    before = snapshot(out)
    publish(out, "old")
    publish(out, "new")
    after = snapshot(out)
    assert after == before
    secret = after["secret"]
    assert secret[0] & 0o7777 == 0o2700
    if why:
        pytest.skip(f"mode, owner and setgid checked; {why}")
    assert secret[5] == {"user.rewire_test": b"kept"}
    assert after["notes.txt"][5] == {"user.rewire_test": b"kept too"}


_MOUNTED = textwrap.dedent("""
    import json, os, sys
    sys.path.insert(0, sys.argv[2])
    from pathlib import Path
    from _publish_sets import publish, raw, seen, snapshot, user_things
    out = Path(sys.argv[1])
    assert os.path.ismount(out) and os.path.ismount(out / "sub")
    (out / "sub" / "on-the-sub-mount.txt").write_text("sub")
    why = user_things(out)
    publish(out, "old")
    before = snapshot(out)
    publish(out, "new")
    print(json.dumps({"seen": seen(out), "raw": raw(out), "same": snapshot(out) == before,
                      "mount": os.path.ismount(out), "why": why,
                      "entries": sorted(p.name for p in out.iterdir())}))
""")


def test_mount_point_as_out(tmp_path):
    """--out is a mount point (a tmpfs in a private mount namespace, with another tmpfs
    mounted on a folder inside it): publishing works, and nothing of the user's changes."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here to make a private mount namespace")
    out = tmp_path / "out"
    out.mkdir()
    script = ('mount -t tmpfs -o size=8m tmpfs "$1" && mkdir "$1/sub" && '
              'mount -t tmpfs -o size=1m tmpfs "$1/sub" && exec "$2" -c "$3" "$1" "$4"')
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(out),
           sys.executable, _MOUNTED, str(HERE)]
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode()[:200]}")
        cmd[1] = "-rm"
    res = subprocess.run(cmd, capture_output=True, timeout=120, env=ENV)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    got = json.loads(res.stdout.decode().strip().splitlines()[-1])
    assert got["seen"] == "new" and got["raw"] == "new" and got["same"] and got["mount"], got
    assert [e for e in got["entries"] if e.startswith(".rewire-staging-")
            and not e.endswith("-abc")] == [], got  # only the user's look-alikes


def test_concurrent_publishers_never_show_a_mix(tmp_path):
    """Two processes publish sets into one folder while this one reads it through read_set
    until it has read 30 sets: every read is one set (all files carry one tag); at the end
    no staging folder is left and the folder holds one whole set. The writers keep
    publishing until the reader has its reads (at most 2,000 sets each), so a loaded machine
    that schedules the reader late cannot end the test with nothing read."""
    out = tmp_path / "out"
    out.mkdir()
    stop = tmp_path / "stop"
    writer = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(HERE)!r})
        from pathlib import Path
        from _publish_sets import publish
        tag = sys.argv[1]
        for i in range(2000):
            if Path({str(stop)!r}).exists():
                break
            publish(Path({str(out)!r}), "t", files={{n: f"{{tag}}{{i}}".encode()
                                                   for n in ("a.bin", "b.bin", "c.bin")}})
    """)
    procs = [subprocess.Popen([sys.executable, "-c", writer, tag], cwd=ROOT, env=ENV,
                              stderr=subprocess.PIPE) for tag in ("x", "y")]
    reads, mixes, deadline = 0, [], time.time() + 60
    while reads < 30 and any(p.poll() is None for p in procs) and time.time() < deadline:
        try:
            got = set(read_set(out).values())
        except SetError:
            continue  # no record yet
        reads += 1
        if len(got) != 1:
            mixes.append(got)
    stop.touch()
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read().decode()[-2000:]
    assert not mixes, mixes[:3]
    assert reads > 0
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "b.bin", "c.bin", "report.json"]
    assert len({(out / n).read_bytes() for n in ("a.bin", "b.bin", "c.bin")}) == 1


TINY = ["--dataset", "digits", "--hidden", "16", "--steps", "4", "--epochs", "1",
        "--connectivity", "0.5", "--lava-samples", "0", "--no-progress", "--device", "cpu"]


@pytest.mark.slow
def test_real_export_with_a_concurrent_writer(tmp_path):
    """The main job (tiny config) publishes into a --out where a writer creates a file
    every 2 ms and the user keeps a 0700 + setgid folder: 0 files lost, the folder
    unchanged, and the published set verifies by report.json's hashes."""
    out = tmp_path / "out"
    user_things(out)
    before = snapshot(out)
    proc = _writer(out, tmp_path / "stop")
    res = subprocess.run([sys.executable, "-m", "rewire.export", *TINY, "--out", str(out)],
                         cwd=ROOT, env=ENV, capture_output=True, timeout=600)
    lost = _lost(out, tmp_path / "stop", proc)
    assert res.returncode == 0, res.stderr.decode()[-3000:]
    assert lost == 0
    for p in out.glob("w-*.txt"):
        p.unlink()
    assert snapshot(out) == before
    report = json.loads((out / "report.json").read_text())
    assert set(verify_set(out)) == set(report["sha256"]) >= {"model.net", "cores.json"}
    fake = {f".rewire-staging-{2**22 + 7}-abc", f".rewire-staging-{2**22 + 8}-abc"}
    assert not [p for p in out.iterdir() if p.name.startswith(".rewire-staging-")
                and (p / ".rewire-staging").exists() and p.name not in fake]
