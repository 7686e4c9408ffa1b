"""Runs as the unit of work (issue 21): selectors, the run lock, `vqkeras status`, `vqkeras sweep` on Ray."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import keras
import pandas as pd
import pytest
import yaml

from vqkeras.cli import main
from vqkeras.experiments.config import load_config
from vqkeras.experiments.runs import RunBusyError, run_lock, select_runs

REPO = Path(__file__).resolve().parent.parent
SELECTOR_SWEEP = [{"name": "vq", "model.num_embeddings": [8, 16, 32]},
                  {"name": "ae", "model.kind": "autoencoder", "model.embedding_dim": [1, 2]}]


def _write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _selector_yaml(tmp_path: Path) -> Path:
    return _write_yaml(tmp_path / "sel.yaml", {"name": "sel", "backend": keras.backend.backend(),
                                               "runs_root": str(tmp_path / "runs"), "sweep": SELECTOR_SWEEP})


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": keras.backend.backend()}


# --------------------------------------------------------------------------- selectors
def test_selectors_pick_runs_by_name_glob_and_index():
    runs = load_config({"name": "sel", "sweep": SELECTOR_SWEEP}).expand()
    names = lambda picked: [r.run_name for r in picked]  # noqa: E731
    assert names(runs) == ["vq-K8", "vq-K16", "vq-K32", "ae-D1", "ae-D2"]
    assert names(select_runs(runs)) == names(runs)
    assert names(select_runs(runs, ["vq-K16"])) == ["vq-K16"]
    assert names(select_runs(runs, ["vq-K1*"])) == ["vq-K16"]  # a glob, not a prefix: K8 and K32 stay out
    # Several patterns: each run once, in sweep order.
    assert names(select_runs(runs, ["ae-*", "vq-K8", "ae-D1"])) == ["vq-K8", "ae-D1", "ae-D2"]
    assert names(select_runs(runs, index=3)) == ["ae-D1"]
    with pytest.raises(ValueError, match=r"--run vq-K64: no run .* vq-K8, vq-K16"):
        select_runs(runs, ["vq-K8", "vq-K64"])
    with pytest.raises(ValueError, match=r"--run-index 5: the experiment has 5 run\(s\), indices 0-4"):
        select_runs(runs, index=5)


def test_cli_selectors_list_runs_and_refuse_bad_ones(tmp_path, capsys):
    path = _selector_yaml(tmp_path)
    assert main(["train", "-f", str(path), "--list-runs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["vq-K8", "vq-K16", "vq-K32", "ae-D1", "ae-D2"]
    assert main(["train", "-f", str(path), "--run", "ae-*", "--run", "vq-K32", "--list-runs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["vq-K32", "ae-D1", "ae-D2"]
    assert main(["train", "-f", str(path), "--run-index", "1", "--list-runs"]) == 0
    assert capsys.readouterr().out.splitlines() == ["vq-K16"]
    for argv, message in (
            (["train", "--run", "vq-K9"], "vqkeras train: error: --run vq-K9: no run of the experiment matches"),
            (["evaluate", "--run", "nope"], "vqkeras evaluate: error: --run nope: no run"),
            (["status", "--run-index", "7"], "vqkeras status: error: --run-index 7: the experiment has 5"),
            (["train", "--run", "vq-K8", "--run-index", "0"], "not allowed with argument"),
            (["train", "--run-index", "-1"], "expected an integer >= 0")):
        assert main([argv[0], "-f", str(path), *argv[1:]]) == 2, argv
        assert message in _one_error_line(capsys.readouterr().err), argv
    assert not (tmp_path / "runs").exists()  # selecting trains nothing and writes nothing


# --------------------------------------------------------------------------- lock and status
_HOLDER = textwrap.dedent("""
    import sys
    from vqkeras.experiments.runs import record_run, run_lock
    with run_lock(sys.argv[1]), record_run(__import__("pathlib").Path(sys.argv[1]), backend="jax"):
        print("holding", flush=True)
        sys.stdin.read()  # until the test kills us
""")


def test_lock_refuses_a_second_writer_and_status_sees_running_then_crashed(tmp_path, capsys):
    path = _selector_yaml(tmp_path)
    run_dir = tmp_path / "runs" / "sel" / "vq-K8"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir)], env=_env(), text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "holding"
        # A second writer, through the command line: one line naming the holder, nothing written.
        assert main(["train", "-f", str(path), "--run", "vq-K8"]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert line.startswith(f"vqkeras train: error: {run_dir}: already being trained by "
                               f"pid {holder.pid} on host {socket.gethostname()}"), line
        assert not (run_dir / "config.yaml").exists() and not (run_dir / "checkpoints").exists()
        with pytest.raises(RunBusyError), run_lock(run_dir):
            pass

        assert main(["status", "-f", str(path), "--run", "vq-K8"]) == 0
        row = capsys.readouterr().out.splitlines()[1].split()
        assert row[:5] == ["vq-K8", "running", "0/10", "-", socket.gethostname()]

        # --wait blocks until the holder lets go (here: dies), then gets the lock.
        got = threading.Event()

        def waiter():
            with run_lock(run_dir, wait=True):
                got.set()

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert not got.wait(1.0)
        holder.send_signal(signal.SIGKILL)  # no chance to write run.json: the OS frees the lock
        holder.wait(30)
        assert got.wait(10)
        thread.join(10)
    finally:
        holder.kill()
        holder.wait(30)
    assert main(["status", "-f", str(path), "--run", "vq-K8"]) == 0
    out = capsys.readouterr().out
    assert "vq-K8  failed" in out and "stopped without a word" in out, out


def _fake_run(run_dir: Path, *, epochs: int, val_mse: list[float], record: dict | None = None,
              done: bool = False) -> None:
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "state.json").write_text(json.dumps({"completed_epochs": epochs}))
    pd.DataFrame({"epoch": range(len(val_mse)), "loss": val_mse, "val_mse": val_mse}).to_csv(
        run_dir / "history.csv", index=False)
    if record is not None:
        (run_dir / "run.json").write_text(json.dumps(record))
    if done:
        (run_dir / "model.keras").write_bytes(b"")
        (run_dir / "done").write_text("{}")


def test_status_reads_each_state_from_the_run_folders(tmp_path, capsys):
    path = _selector_yaml(tmp_path)
    root = tmp_path / "runs" / "sel"
    _fake_run(root / "vq-K8", epochs=10, val_mse=[0.5, 0.0123], done=True,
              record={"state": "finished", "host": "node7", "device": "NVIDIA H200", "backend": "jax"})
    _fake_run(root / "vq-K16", epochs=3, val_mse=[0.5, 0.4, 0.3],
              record={"state": "failed", "host": "node2", "device": "cpu", "error": "DatasetError: no notes"})
    _fake_run(root / "vq-K32", epochs=1, val_mse=[0.7])  # killed before run.json existed
    (root / "ae-D1").mkdir()  # a folder, nothing trained
    assert main(["status", "-f", str(path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert rows["vq-K8"][:6] == ["vq-K8", "finished", "10/10", "0.0123", "node7", "NVIDIA"]
    assert rows["vq-K16"][:5] == ["vq-K16", "failed", "3/10", "0.3", "node2"]
    assert "DatasetError: no notes" in " ".join(rows["vq-K16"])
    assert rows["vq-K32"][:4] == ["vq-K32", "failed", "1/10", "0.7"]
    assert rows["ae-D1"][:4] == ["ae-D1", "not", "started", "0/10"]
    assert rows["ae-D2"][:4] == ["ae-D2", "not", "started", "0/10"]
    assert not (root / "ae-D2").exists()  # status only reads


def test_sweep_without_ray_is_one_line_naming_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", "-f", str(_selector_yaml(tmp_path)), "--run", "vq-K8"]) == 2
    assert "pip install 'vqkeras[cluster]'" in _one_error_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- Ray end to end
def _overlap(a: dict, b: dict) -> bool:
    start = [datetime.datetime.fromisoformat(r["started"]) for r in (a, b)]
    end = [datetime.datetime.fromisoformat(r["ended"]) for r in (a, b)]
    return start[0] <= end[1] and start[1] <= end[0]


@pytest.mark.slow
def test_sweep_on_local_ray_trains_runs_in_parallel_reports_a_failure_and_feeds_the_report(
        tiny_config, tmp_path):
    pytest.importorskip("ray")
    base = tiny_config.with_overrides({"runs_root": str(tmp_path / "runs"), "training.epochs": 2,
                                       "phase_reconstruction.max_clips": 2}).to_dict()
    good = [{"name": "vq-a", "model.num_embeddings": 16}, {"name": "vq-b", "model.num_embeddings": 32}]
    broken = {"name": "broken", "dataset.root": str(tmp_path / "no-such-dataset")}
    sweep_yaml = _write_yaml(tmp_path / "sweep.yaml", {**base, "name": "tiny-sweep", "sweep": [*good, broken]})
    # Two Ray workers of one CPU each; the broken run is submitted last.
    proc = subprocess.run([sys.executable, "-m", "vqkeras", "sweep", "-f", str(sweep_yaml),
                           "--num-cpus", "2", "--cpus-per-run", "1"], env=_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert _one_error_line(proc.stderr) == ("vqkeras sweep: error: 1 of 3 runs failed: broken (see the "
                                            "table above, and train.log in their run folders)")
    table = proc.stdout[proc.stdout.index("run "):].splitlines()
    assert table[0].split() == ["run", "status", "wall", "host", "device", "detail"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert set(rows) == {"vq-a", "vq-b", "broken"}
    host = socket.gethostname()
    for name in ("vq-a", "vq-b"):
        assert rows[name].split()[1] == "finished" and rows[name].split()[-3:] == [host, "cpu", "-"], rows[name]
    assert rows["broken"].split()[1] == "failed" and "no-such-dataset" in rows["broken"], rows["broken"]

    runs_dir = tmp_path / "runs" / "tiny-sweep"
    records = {}
    for name in ("vq-a", "vq-b"):
        history = pd.read_csv(runs_dir / name / "history.csv")
        assert list(history["epoch"]) == [0, 1] and history["loss"].iloc[1] < history["loss"].iloc[0], name
        assert (runs_dir / name / "model.keras").is_file() and (runs_dir / name / "done").is_file()
        records[name] = json.loads((runs_dir / name / "run.json").read_text())
        assert records[name]["state"] == "finished" and records[name]["host"] == host
        assert records[name]["device"] == "cpu" and records[name]["backend"] == keras.backend.backend()
    assert records["vq-a"]["pid"] != records["vq-b"]["pid"]
    assert _overlap(records["vq-a"], records["vq-b"]), records  # they trained at the same time
    broken_record = json.loads((runs_dir / "broken" / "run.json").read_text())
    assert broken_record["state"] == "failed" and "no-such-dataset" in broken_record["error"]

    status = subprocess.run([sys.executable, "-m", "vqkeras", "status", "-f", str(sweep_yaml)], env=_env(),
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stderr
    states = {line.split()[0]: line.split()[1:3] for line in status.stdout.splitlines()[1:-1]}
    assert states == {"vq-a": ["finished", "2/2"], "vq-b": ["finished", "2/2"], "broken": ["failed", "0/2"]}

    # The report of the good runs reuses what the Ray workers trained (same run folders).
    report_yaml = _write_yaml(tmp_path / "report.yaml", {**base, "name": "tiny-sweep", "sweep": good})
    stamp = (runs_dir / "vq-a" / "model.keras").stat().st_mtime_ns
    assert main(["report", str(report_yaml), "--reports-root", str(tmp_path / "reports")]) == 0
    assert (runs_dir / "vq-a" / "model.keras").stat().st_mtime_ns == stamp  # not retrained
    index = (tmp_path / "reports" / "tiny-sweep" / "index.md").read_text()
    assert f"- training hosts: 1 ({host})" in index
    for name in ("vq-a", "vq-b"):
        assert f"- run {name}: host {host}, device cpu, backend {keras.backend.backend()}, " in index
    evaluation = pd.read_csv(tmp_path / "reports" / "tiny-sweep" / "tables" / "evaluation.csv")
    assert sorted(evaluation["run"]) == ["vq-a", "vq-b"]
