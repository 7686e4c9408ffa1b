"""Atomic output: a file is complete or absent, never half written."""

import os

import pytest

from vqkeras.files import atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "model.keras"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".keras" and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    from vqkeras.files import atomic_folder

    out = tmp_path / "set"
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    with pytest.raises(RuntimeError, match="stop"):
        with atomic_folder(out) as tmp:
            (tmp / "b.txt").write_text("second")
            raise RuntimeError("stop")
    # The failed build left the old folder as it was, and no temporary folder.
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    with atomic_folder(out) as tmp:
        (tmp / "c.txt").write_text("third")
    assert sorted(p.name for p in out.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
