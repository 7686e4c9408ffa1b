"""The command line's boundary policy, table-driven (issue 9).

Every row runs ``vqkeras.cli.main`` in this process on real files and checks:
the exit code; for a failure, exactly one line on stderr naming the problem
and no traceback; that the files the row protects are byte-for-byte unchanged;
and that no temporary or half-written file is left in the working folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras
import pytest
import soundfile as sf
import yaml

from vqkeras.cli import main

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Case:
    """One row: set up files in ``tmp``, run ``argv``, expect ``rc`` and ``message`` on stderr."""

    id: str
    argv: list[str]
    rc: int
    message: str = ""
    protect: tuple[str, ...] = ("x.wav", "x.vqz")
    setup: Callable[[Path, dict], None] | None = None
    check: Callable[[Path], None] | None = None
    cwd: bool = False
    needs: tuple[str, ...] = field(default_factory=tuple)  # fixtures: "run", "soundfont"


def _link(name: str, target: str, hard: bool = False):
    def setup(tmp: Path, ctx: dict) -> None:
        (os.link if hard else os.symlink)(tmp / target, tmp / name)
    return setup


def _mkdir(name: str):
    return lambda tmp, ctx: (tmp / name).mkdir()


def _touch(name: str, text: str = "mine"):
    return lambda tmp, ctx: (tmp / name).write_text(text)


def _user_folder(tmp: Path, ctx: dict) -> None:
    (tmp / "mydata").mkdir()
    (tmp / "mydata" / "thesis.tex").write_text("months of work")
    (tmp / "mydata" / "notes").mkdir()
    (tmp / "mydata" / "notes" / "a.txt").write_text("keep")


def _rendered_plus_user_file(tmp: Path, ctx: dict) -> None:
    shutil.copytree(ctx["rendered"], tmp / "set")
    (tmp / "set" / "nsynth-train" / "my-notes.txt").write_text("keep me")


def _torn_codec_bundle(tmp: Path, ctx: dict) -> None:
    from vqkeras.codec.codec_model import default_model_dir

    bundle = tmp / "bundle"
    shutil.copytree(default_model_dir(), bundle)
    data = (bundle / "codec.keras").read_bytes()
    (bundle / "codec.keras").write_bytes(data[: len(data) // 2])


def _torn_run(tmp: Path, ctx: dict) -> None:
    run = tmp / "run"
    shutil.copytree(ctx["run"], run)
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 3])


def _copy_run(tmp: Path, ctx: dict) -> None:
    shutil.copytree(ctx["run"], tmp / "run")


def _kazoo_yaml(tmp: Path, ctx: dict) -> None:
    data = yaml.safe_load((REPO / "experiments" / "nsynth-tiny.yaml").read_text())
    data["dataset"]["families"] = ["kazoo"]
    data["dataset"]["root"] = str(tmp / "nowhere")
    (tmp / "kazoo.yaml").write_text(yaml.safe_dump(data))


def _is_format(name: str, fmt: str):
    def check(tmp: Path) -> None:
        assert sf.info(str(tmp / name)).format == fmt
    return check


def container_header(path: Path):
    from vqkeras.codec import container

    return container.unpack(path.read_bytes())[0]


def _vqz_replaced(tmp: Path) -> None:
    assert (tmp / "y.vqz").read_bytes()[:4] != b"mine"


def _all_there(folder: str, *names: str):
    def check(tmp: Path) -> None:
        for name in names:
            assert (tmp / folder / name).is_file(), f"{folder}/{name} was deleted"
    return check


SF = "{soundfont}"
CASES = [
    # --- the table -------------------------------------------------------------
    Case("compress-output-is-input", ["compress", "x.wav", "x.wav"], 2, "is the input"),
    Case("decompress-output-is-input", ["decompress", "x.vqz", "x.vqz"], 2, "is the input"),
    Case("predict-output-is-input", ["predict", "x.wav", "-o", "x.wav", "--model", "run"], 2,
         "is the input", setup=_copy_run, needs=("run",)),
    Case("render-overwrite-user-folder",
         ["data", "render", "--out", "mydata", "--overwrite", "--soundfont", SF, "--pitch-step", "64",
          "--quiet"], 2, "thesis.tex", setup=_user_folder,
         check=_all_there("mydata", "thesis.tex", "notes/a.txt"), needs=("soundfont",)),
    Case("output-is-a-folder", ["predict", "x.wav", "-o", "out", "--model", "nothing"], 2,
         "is an existing folder", setup=_mkdir("out")),
    Case("output-parent-is-a-file", ["decompress", "x.vqz", "f/out.wav"], 2, "is a file, not a folder",
         setup=_touch("f")),
    Case("bitrate-0", ["compress", "x.wav", "y.vqz", "--bitrate", "0"], 2, "argument --bitrate"),
    Case("bitrate-negative", ["compress", "x.wav", "y.vqz", "--bitrate", "-1"], 2, "argument --bitrate"),
    Case("bitrate-nan", ["compress", "x.wav", "y.vqz", "--bitrate", "nan"], 2, "argument --bitrate"),
    Case("bitrate-inf", ["compress", "x.wav", "y.vqz", "--bitrate", "inf"], 2, "argument --bitrate"),
    Case("decompress-iterations-negative", ["decompress", "x.vqz", "y.wav", "--iterations", "-1"], 2,
         "argument --iterations"),
    Case("predict-iterations-negative", ["predict", "x.wav", "-o", "y.wav", "--model", "run",
                                         "--iterations", "-5"], 2, "argument --iterations",
         setup=_copy_run, needs=("run",)),
    Case("codec-model-truncated", ["compress", "x.wav", "y.vqz", "--model", "bundle"], 2,
         "does not load", setup=_torn_codec_bundle),
    Case("config-unknown-family", ["train", "-f", "kazoo.yaml"], 2, "dataset.families[0]: 'kazoo'",
         setup=_kazoo_yaml),
    # --- our own additions -------------------------------------------------------------
    Case("compress-output-is-input-dot-slash", ["compress", "x.wav", "./x.wav"], 2, "is the input",
         cwd=True),
    Case("compress-output-is-symlink-to-input", ["compress", "x.wav", "link.wav"], 2, "is the input",
         setup=_link("link.wav", "x.wav")),
    Case("compress-output-is-hard-link-to-input", ["compress", "x.wav", "hard.wav"], 2, "is the input",
         setup=_link("hard.wav", "x.wav", hard=True)),
    Case("decompress-output-is-symlink-to-input", ["decompress", "x.vqz", "l.vqz"], 2, "is the input",
         setup=_link("l.vqz", "x.vqz")),
    Case("compress-empty-file", ["compress", "empty.wav", "y.vqz"], 2, "file is empty (0 bytes)",
         setup=_touch("empty.wav", "")),
    Case("compress-missing-input", ["compress", "missing.wav", "y.vqz"], 2, "missing.wav: file not found"),
    Case("decompress-missing-input", ["decompress", "missing.vqz", "y.wav"], 2,
         "missing.vqz: file not found"),
    Case("compress-input-is-empty-folder", ["compress", "in", "y.vqz"], 2, "in: folder holds no",
         setup=_mkdir("in")),
    Case("compress-into-existing-folder", ["compress", "x.wav", "out"], 0, setup=_mkdir("out"),
         check=lambda tmp: container_header(tmp / "out" / "x.vqz")),
    Case("compress-not-audio", ["compress", "text.wav", "y.vqz"], 2, "text.wav",
         setup=_touch("text.wav", "hello, not a RIFF file")),
    Case("decompress-input-is-empty-folder", ["decompress", "in", "y.wav"], 2, "in: folder holds no",
         setup=_mkdir("in")),
    Case("decompress-damaged", ["decompress", "x.wav", "y.wav"], 2, "magic"),
    Case("decompress-unknown-extension", ["decompress", "x.vqz", "y.aac"], 2, "cannot write '.aac'"),
    Case("decompress-to-flac", ["decompress", "x.vqz", "y.flac", "--iterations", "2"], 0,
         check=_is_format("y.flac", "FLAC")),
    Case("decompress-to-mp3", ["decompress", "x.vqz", "y.mp3", "--iterations", "2"], 0,
         check=_is_format("y.mp3", "MP3")),
    Case("overwrite-other-output-allowed", ["compress", "x.wav", "y.vqz"], 0,
         setup=_touch("y.vqz", "mine: old output"), check=_vqz_replaced),
    Case("unknown-flag", ["compress", "x.wav", "y.vqz", "--bitrates", "2"], 2, "unrecognized arguments"),
    Case("pitch-step-0", ["data", "render", "--out", "set", "--pitch-step", "0"], 2,
         "argument --pitch-step"),
    Case("render-overwrite-rendered-folder-with-user-file",
         ["data", "render", "--out", "set", "--overwrite", "--soundfont", SF, "--quiet"], 2,
         "nsynth-train/my-notes.txt", setup=_rendered_plus_user_file,
         check=_all_there("set", "nsynth-train/my-notes.txt", ".vqkeras-render.json"),
         needs=("soundfont",)),
    Case("train-missing-yaml", ["train", "-f", "missing.yaml"], 2, "not found"),
    Case("predict-missing-model", ["predict", "x.wav", "-o", "y.wav", "--model", "nothing"], 2,
         "no such model"),
    Case("predict-model-truncated", ["predict", "x.wav", "-o", "y.wav", "--model", "run"], 2,
         "does not load", setup=_torn_run, needs=("run",)),
]


@pytest.fixture(scope="module")
def x_files(tmp_path_factory, notes):
    """A real 4-s note as x.wav and its x.vqz (made with the shipped codec)."""
    from vqkeras.audio_io import write_wav
    from vqkeras.codec import compress

    folder = tmp_path_factory.mktemp("x")
    write_wav(folder / "x.wav", notes[0], 16000)
    compress(folder / "x.wav", folder / "x.vqz", progress=False)
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_cli_boundary(case, x_files, tmp_path, monkeypatch, capsys, request, timgm_soundfont,
                      rendered_dataset):
    ctx = {"soundfont": str(timgm_soundfont), "rendered": rendered_dataset}
    if "run" in case.needs:
        ctx["run"] = request.getfixturevalue("tiny_run")[1]
    for name in ("x.wav", "x.vqz"):
        shutil.copy(x_files / name, tmp_path / name)
    if case.setup is not None:
        case.setup(tmp_path, ctx)
    protected = {name: _digest(tmp_path / name) for name in case.protect}
    before = {p for p in tmp_path.rglob("*")}
    monkeypatch.chdir(tmp_path)  # rows use relative paths, like a user at a shell
    monkeypatch.setenv("KERAS_BACKEND", keras.backend.backend())  # main() sets it
    argv = [a.format(**ctx) for a in case.argv]
    if "run" in case.needs or case.argv[0] == "train":
        argv = ["--backend", keras.backend.backend(), *argv]

    rc = main(argv)

    err = capsys.readouterr().err
    assert rc == case.rc, err
    assert "Traceback" not in err
    if case.rc != 0:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("vqkeras"), err
        assert case.message in lines[0], lines[0]
    for name, digest in protected.items():
        assert _digest(tmp_path / name) == digest, f"{name} was changed"
    new = {p for p in tmp_path.rglob("*")} - before
    assert not [p for p in new if ".tmp" in p.name or ".partial" in p.name], new
    if case.rc != 0:
        assert not new, f"a failed command left {sorted(map(str, new))}"
    if case.check is not None:
        case.check(tmp_path)


def test_missing_backend_package_is_one_line(monkeypatch, capsys):
    """``--backend torch`` where torch is not installed (the venv has it: hide it)."""
    import importlib.util

    from vqkeras.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert main(["--backend", "torch", "compress", "x.wav", "y.vqz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("vqkeras compress: error: --backend torch: the torch package is not installed "
                   "(pip install torch, or use --backend jax)"), err


def test_internal_error_is_one_line_with_hint_and_traceback_with_debug(x_files, tmp_path,
                                                                      monkeypatch, capsys):
    import vqkeras.codec

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug deep inside")

    monkeypatch.setattr(vqkeras.codec, "compress", broken)
    monkeypatch.chdir(x_files)
    assert main(["compress", "x.wav", str(tmp_path / "y.vqz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error: ZeroDivisionError: a bug deep inside" in err and "--debug" in err
    assert main(["--debug", "compress", "x.wav", str(tmp_path / "y.vqz")]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("VQKERAS_DEBUG", "1")
    assert main(["compress", "x.wav", str(tmp_path / "y.vqz")]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.backend
def test_train_resumes_from_the_newest_checkpoint_that_loads(tiny_config, tmp_path, caplog):
    """A torn newest checkpoint: `vqkeras train` falls back to the previous one and says so."""
    from vqkeras.experiments.training import train

    config = tiny_config.with_overrides({"training.epochs": 2, "training.keep_checkpoints": 2,
                                         "training.validation": False, "runs_root": str(tmp_path)},
                                        run_name="torn")
    run_dir = train(config)
    # As if killed right after epoch 2's checkpoint, with that checkpoint torn on disk.
    (run_dir / "done").unlink()
    (run_dir / "model.keras").unlink()
    newest = run_dir / "checkpoints" / "epoch-0002.keras"
    newest.write_bytes(newest.read_bytes()[:1000])
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert [e["checkpoint"] for e in state["checkpoints"]] == ["epoch-0001.keras", "epoch-0002.keras"]
    yaml_path = tmp_path / "torn.yaml"
    yaml_path.write_text(yaml.safe_dump(config.to_dict()))

    with caplog.at_level(logging.WARNING):
        assert main(["--backend", keras.backend.backend(), "train", "-f", str(yaml_path)]) == 0
    assert "resuming from epoch-0001.keras because epoch-0002.keras is damaged" in caplog.text
    assert (run_dir / "done").is_file() and (run_dir / "model.keras").is_file()
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    assert state["completed_epochs"] == 2
    for entry in state["checkpoints"]:  # the redone epoch-0002 is recorded as it is on disk
        assert (run_dir / "checkpoints" / entry["checkpoint"]).stat().st_size == entry["bytes"]

    # Damaged state.json and no loadable checkpoint at all: start over, saying so.
    (run_dir / "done").unlink()
    (run_dir / "model.keras").unlink()
    (run_dir / "checkpoints" / "state.json").write_text("{ torn")
    for path in (run_dir / "checkpoints").glob("epoch-*.keras"):
        path.write_bytes(b"PK\x03\x04 torn")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["--backend", keras.backend.backend(), "train", "-f", str(yaml_path)]) == 0
    assert "state.json is damaged" in caplog.text
    assert "no usable checkpoint" in caplog.text and "starting the run from scratch" in caplog.text
    assert (run_dir / "done").is_file()
