"""`vqkeras compress` / `decompress` on many files in one process (issue 10, goal 2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import soundfile as sf

from vqkeras.cli import main
from vqkeras.codec import batch, container
from vqkeras.errors import AudioFileError, OutputPathError


@pytest.fixture
def notes_dir(tmp_path, notes) -> Path:
    """in/a.wav, in/b.wav, in/sub/c.wav (1-s real notes) and in/readme.txt."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name, note in (("a", notes[0]), ("b", notes[1]), ("sub/c", notes[2])):
        sf.write(folder / f"{name}.wav", note[:16000], 16000)
    (folder / "readme.txt").write_text("not audio")
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_compress_files_folders_and_globs_into_a_folder_then_decompress(notes_dir, tmp_path, capsys):
    out = tmp_path / "out"
    # A folder (its audio files), a quoted glob, and a file named twice: each coded once.
    rc = main(["compress", str(notes_dir), str(notes_dir / "sub" / "*.wav"), str(notes_dir / "a.wav"),
               str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a.vqz", "b.vqz", "c.vqz"]
    assert sorted(captured.out.split()) == sorted(str(out / n) for n in ("a.vqz", "b.vqz", "c.vqz"))
    for name in ("a", "b", "c"):
        header = container.unpack((out / f"{name}.vqz").read_bytes())[0]
        assert header.num_samples == 16000 and header.sample_rate == 16000

    decoded = tmp_path / "decoded"
    rc = main(["decompress", str(out), str(decoded), "--format", "flac", "--iterations", "2"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in decoded.iterdir()) == ["a.flac", "b.flac", "c.flac"]
    for path in decoded.iterdir():
        info = sf.info(str(path))
        assert info.format == "FLAC" and info.frames == 16000


def test_one_bad_file_is_reported_and_the_others_are_written(notes_dir, tmp_path, capsys):
    (notes_dir / "broken.wav").write_bytes(b"RIFF\x00\x00")
    out = tmp_path / "out"
    rc = main(["compress", str(notes_dir / "*.wav"), str(out) + "/"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 2 and "broken.wav" in err[0] and "1 of 3 files failed" in err[1]
    assert sorted(p.name for p in out.iterdir()) == ["a.vqz", "b.vqz"]  # nothing for broken.wav


def test_the_plan_is_checked_before_any_work(notes_dir, tmp_path, capsys):
    # Two inputs with one stem would write one output: refused, nothing written.
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.wav").write_bytes((notes_dir / "a.wav").read_bytes())
    out = tmp_path / "out"
    assert main(["compress", str(notes_dir / "a.wav"), str(other / "a.wav"), str(out)]) == 2
    assert "would both be written to" in capsys.readouterr().err
    assert not out.exists()

    # Never an input as an output: in/a.vqz is given as an input and would be a.wav's output.
    (notes_dir / "a.vqz").write_bytes(b"user's file")
    before = _digest(notes_dir / "a.vqz")
    assert main(["compress", str(notes_dir / "b.wav"), str(notes_dir / "a.wav"),
                 str(notes_dir / "a.vqz"), str(notes_dir)]) == 2
    err = capsys.readouterr().err
    assert "is the input" in err and len(err.strip().splitlines()) == 1
    assert _digest(notes_dir / "a.vqz") == before and not (notes_dir / "b.vqz").exists()

    # An output "folder" that is a file.
    (tmp_path / "file").write_text("x")
    assert main(["compress", str(notes_dir / "a.wav"), str(notes_dir / "b.wav"), str(tmp_path / "file")]) == 2
    assert "this is a file" in capsys.readouterr().err


def test_single_file_form_is_unchanged(notes_dir, tmp_path, capsys):
    assert not batch.is_batch([str(notes_dir / "a.wav")], str(tmp_path / "x.vqz"))
    assert batch.is_batch([str(notes_dir / "a.wav")], str(tmp_path))           # existing folder
    assert batch.is_batch([str(notes_dir / "a.wav")], str(tmp_path / "new") + "/")
    assert batch.is_batch([str(notes_dir / "*.wav")], str(tmp_path / "x"))     # a glob
    assert batch.is_batch([str(notes_dir)], str(tmp_path / "x"))               # a folder
    assert main(["compress", str(notes_dir / "a.wav"), str(tmp_path / "x.vqz")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "x.vqz")


def test_expand_inputs_errors(notes_dir, tmp_path):
    with pytest.raises(AudioFileError, match="no file matches"):
        batch.expand_inputs([str(notes_dir / "*.flac")], batch.AUDIO_SUFFIXES)
    (tmp_path / "empty").mkdir()
    with pytest.raises(AudioFileError, match="folder holds no"):
        batch.expand_inputs([str(tmp_path / "empty")], batch.AUDIO_SUFFIXES)
    with pytest.raises(AudioFileError, match="file not found"):
        batch.expand_inputs([str(tmp_path / "missing.wav")], batch.AUDIO_SUFFIXES)
    files = batch.expand_inputs([str(notes_dir / "**" / "*.wav")], batch.AUDIO_SUFFIXES)
    assert sorted(f.name for f in files) == ["a.wav", "b.wav", "c.wav"]
    with pytest.raises(OutputPathError, match="would both be written"):
        batch.plan_outputs([notes_dir / "a.wav", notes_dir / "a.flac"], tmp_path / "o", ".vqz")


def test_import_vqkeras_and_cli_stay_light():
    """`import vqkeras` and `vqkeras --help` import no backend (they must start at once)."""
    import subprocess
    import sys

    code = ("import sys, vqkeras, vqkeras.cli, vqkeras.cache, vqkeras.codec.batch; "
            "heavy = [m for m in ('keras', 'jax', 'tensorflow', 'scipy', 'sklearn') if m in sys.modules]; "
            "print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ,
                               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from vqkeras.cache import cache_dir

    monkeypatch.delenv("VQKERAS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vqkeras"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "vqkeras"
    monkeypatch.setenv("VQKERAS_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv("VQKERAS_CACHE_DIR", "off")
    assert cache_dir() is None


def test_second_process_compiles_nothing_new(notes_dir, tmp_path):
    """The persistent compilation cache: a second `compress` finds every program on disk."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
           "KERAS_BACKEND": "jax", "VQKERAS_CACHE_DIR": str(cache)}
    cmd = [sys.executable, "-m", "vqkeras.cli", "compress", str(notes_dir / "a.wav")]
    first = subprocess.run([*cmd, str(tmp_path / "1.vqz")], capture_output=True, text=True, env=env,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in (cache / "jax").iterdir())
    assert entries, "the first run wrote no compiled program to the cache"
    second = subprocess.run([*cmd, str(tmp_path / "2.vqz")], capture_output=True, text=True, env=env,
                            timeout=300)
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in (cache / "jax").iterdir()) == entries  # nothing compiled anew
    # Encoder and decoder (for the loudness corrections), reused (the STFT is numpy).
    assert len(list((cache / "exported").glob("*.jaxexport"))) == 2
    # Exported programs give the very bytes of the plain Keras path (this process: cache off).
    main(["compress", str(notes_dir / "a.wav"), str(tmp_path / "keras.vqz")])
    assert (tmp_path / "1.vqz").read_bytes() == (tmp_path / "2.vqz").read_bytes() \
        == (tmp_path / "keras.vqz").read_bytes()
