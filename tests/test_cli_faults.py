"""A full disk and a read-only folder under the commands (issue 9).

Runs the commands in a private mount namespace (``unshare --mount``, as root):
a 64 KiB tmpfs stands for a full disk and a read-only bind mount for a
read-only file system. Each must give exit code 2, one line naming the cause,
and leave nothing behind. Skipped, with the reason, where namespaces are not
available (not root, no ``unshare``, or a container that forbids it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path

    work = Path(sys.argv[1])
    full, ro = work / "full", work / "ro"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], check=True)
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)

    from vqkeras.cli import main
    import contextlib, io

    results = {}
    def run(name, argv, folder):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(argv)
        results[name] = {"rc": rc, "err": err.getvalue(),
                         "left": sorted(p.name for p in folder.iterdir() if p.name != "filler")}

    run("decompress-disk-full", ["decompress", str(work / "x.vqz"), str(full / "out.wav"),
                                 "--iterations", "2"], full)
    with open(full / "filler", "wb", buffering=0) as f:  # fill the rest of the tmpfs
        try:
            while True:
                f.write(b"\\0" * 1024)
        except OSError:
            pass
    run("compress-disk-full", ["compress", str(work / "x.wav"), str(full / "out.vqz")], full)
    run("compress-read-only", ["compress", str(work / "x.wav"), str(ro / "out.vqz")], ro)
    run("decompress-read-only", ["decompress", str(work / "x.vqz"), str(ro / "sub" / "out.flac"),
                                 "--iterations", "2"], ro)
    print("RESULTS" + json.dumps(results))
""")


def _namespaces_available() -> str | None:
    """None if we can make a private mount namespace, else the reason why not."""
    if os.geteuid() != 0:
        return "needs root for mount namespaces"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount not installed"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare --mount is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def fault_results(tmp_path_factory, notes):
    reason = _namespaces_available()
    if reason:
        pytest.skip(reason)
    from vqkeras.audio_io import write_wav
    from vqkeras.codec import compress

    work = tmp_path_factory.mktemp("faults")
    write_wav(work / "x.wav", notes[0], 16000)
    compress(work / "x.wav", work / "x.vqz", progress=False)
    (work / "full").mkdir()
    (work / "ro").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(["unshare", "--mount", sys.executable, "-c", _SCRIPT, str(work)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULTS"))
    return json.loads(line[len("RESULTS"):])


@pytest.mark.parametrize("case, cause", [
    ("decompress-disk-full", "no space left on device"),
    ("compress-disk-full", "no space left on device"),
    ("compress-read-only", "read-only file system"),
    ("decompress-read-only", "read-only file system"),
])
def test_full_or_read_only_disk_is_one_line_and_leaves_nothing(fault_results, case, cause):
    result = fault_results[case]
    assert result["rc"] == 2, result["err"]
    lines = result["err"].strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result["err"], result["err"]
    assert lines[0].startswith("vqkeras") and cause in lines[0], lines[0]
    assert result["left"] == [], f"left behind: {result['left']}"
