"""Runs as units of work: selecting them, locking their folders, and reading their state.

A sweep expands into runs (`ExperimentConfig.expand`); each run trains into
its own folder, so runs can be spread over processes, GPUs and hosts that
share a filesystem (``vqkeras train --run``, ``vqkeras sweep``, a Slurm
array: docs/sweeps.md). Three files in the run folder make that safe and
observable, and `run_status` reads only them (and the training's own files):

``.lock``
    Held (``fcntl.flock``) by the process training the run; it names that
    process's host and pid. The OS frees it when the holder dies, however it
    dies, so a crashed run never blocks the next one.
``run.json``
    Who trains or trained the run: host, pid, backend, device, start and end
    times, and ``state`` (``running``, ``finished`` or ``failed`` with the
    error line). Written atomically when training starts and when it ends.
``done``
    Written last by `vqkeras.experiments.training.train`.

A run's state, as `vqkeras status` shows it:

- ``finished``: ``done`` and ``model.keras`` exist.
- ``running``: some process holds ``.lock``.
- ``failed``: ``run.json`` records a failure (an exception, Ctrl-C), or says
  ``running`` while nobody holds the lock (the process was killed or its
  host died). A failed run resumes from its last checkpoint when trained again.
- ``not started``: none of the above (no training has begun).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fnmatch
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vqkeras.errors import ConfigError, VQKerasError
from vqkeras.files import atomic_write_text

__all__ = ["RunBusyError", "RunStatus", "device_description", "record_run", "run_lock", "run_status",
           "select_runs", "status_table"]

LOCK_FILE = ".lock"
RECORD_FILE = "run.json"
STATES = ("finished", "running", "failed", "not started")
# A `vqkeras status` probe holds the lock (shared) for microseconds; a writer
# that meets it tries again for this long before refusing.
_CONTENTION_SECONDS = 2.0


class RunBusyError(VQKerasError, RuntimeError):
    """Another process is training this run (it holds the run folder's lock)."""


# --------------------------------------------------------------------------- selection
def select_runs(runs: Sequence, names: Sequence[str] | None = None, index: int | None = None) -> list:
    """The runs that ``--run`` patterns or ``--run-index`` pick, in sweep order.

    Parameters
    ----------
    runs : sequence of ExperimentConfig
        ``config.expand()``.
    names : sequence of str, optional
        Run names or shell-style globs (``vq-*``); a run matching several is
        picked once. Every pattern must match at least one run.
    index : int, optional
        The 0-based position in ``runs`` (``vqkeras train --list-runs`` order),
        e.g. ``$SLURM_ARRAY_TASK_ID``.

    Returns
    -------
    list of ExperimentConfig
        All runs when neither is given.

    Raises
    ------
    ConfigError
        A pattern matches no run, or the index is out of range; the message
        lists the run names.
    """
    runs = list(runs)
    all_names = [r.run_name for r in runs]
    shown = ", ".join(all_names[:12]) + (f", ... ({len(all_names)} in all)" if len(all_names) > 12 else "")
    if index is not None:
        if not 0 <= index < len(runs):
            raise ConfigError(f"--run-index {index}: the experiment has {len(runs)} run(s), "
                              f"indices 0-{len(runs) - 1} ({shown})")
        return [runs[index]]
    if not names:
        return runs
    for pattern in names:
        if not fnmatch.filter(all_names, pattern):
            raise ConfigError(f"--run {pattern}: no run of the experiment matches; its runs: {shown}")
    return [r for r in runs if any(fnmatch.fnmatchcase(r.run_name, p) for p in names)]


# --------------------------------------------------------------------------- lock
def _holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another process"
    return f"pid {info['pid']} on host {info.get('host', '?')} (since {info.get('started', '?')})"


@contextlib.contextmanager
def run_lock(run_dir: str | Path, *, wait: bool = False) -> Iterator[Path]:
    """Hold the run folder's ``.lock`` for the block: one writer per run.

    Parameters
    ----------
    run_dir : str or Path
        Created if missing.
    wait : bool
        Block until the holder lets go, instead of refusing.

    Yields
    ------
    Path
        The lock file, which names this process (host, pid) while it is held.

    Raises
    ------
    RunBusyError
        Another process holds the lock (and ``wait`` is False); the message
        names it.
    """
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _CONTENTION_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    if err.errno in (errno.EAGAIN, errno.EACCES):
                        raise RunBusyError(f"{run_dir}: already being trained by {_holder(path)}; "
                                           f"wait for it (--wait) or train another run") from None
                    raise
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                  "started": _now()}).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race a new holder)


def _lock_held(run_dir: Path) -> bool:
    """Whether a process holds ``run_dir/.lock`` (a shared, non-blocking probe; never waits)."""
    import fcntl

    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the probe's shared lock


# --------------------------------------------------------------------------- record
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def device_description(backend: str) -> str:
    """The accelerator this process trains on: ``"NVIDIA H200"``, ``"2 x NVIDIA H100"``, or ``"cpu"``.

    Asks the (already imported) backend, so call it from the training process.
    """
    names: list[str] = []
    try:
        if backend == "jax":
            import jax

            names = [d.device_kind for d in jax.devices() if d.platform != "cpu"]
        elif backend == "tensorflow":
            import tensorflow as tf

            names = [tf.config.experimental.get_device_details(d).get("device_name", "GPU")
                     for d in tf.config.list_physical_devices("GPU")]
        elif backend == "torch":
            import torch

            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # a broken driver must not stop training; the record says so
        return "unknown"
    if not names:
        return "cpu"
    return names[0] if len(names) == 1 else f"{len(names)} x {names[0]}"


@contextlib.contextmanager
def record_run(run_dir: Path, *, backend: str) -> Iterator[None]:
    """Write ``run.json`` (``running``) now and ``finished`` / ``failed`` when the block ends."""
    started = time.time()
    record = {"state": "running", "host": socket.gethostname(), "pid": os.getpid(), "backend": backend,
              "device": device_description(backend), "started": _now(), "ended": None,
              "wall_seconds": None, "error": None}
    path = run_dir / RECORD_FILE
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")

    def end(state: str, error: str | None = None) -> None:
        import signal
        import threading

        record.update(state=state, ended=_now(), wall_seconds=round(time.time() - started, 1), error=error)
        # A second Ctrl-C (a terminal sends it to the whole process group, Ray to its
        # worker's) must not cost the record of the first.
        guard = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if guard else None
        try:
            atomic_write_text(path, json.dumps(record, indent=1) + "\n")
        finally:
            if guard:
                signal.signal(signal.SIGINT, previous)

    try:
        yield
    except BaseException as err:
        message = "interrupted" if isinstance(err, KeyboardInterrupt) else (
            f"{type(err).__name__}: {' '.join(str(err).split())}"[:500])
        end("failed", message)
        raise
    end("finished")


def read_record(run_dir: str | Path) -> dict:
    """``run.json`` of a run folder, or ``{}`` if it is missing or unreadable."""
    try:
        data = json.loads((Path(run_dir) / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- status
@dataclass
class RunStatus:
    """What the files of one run folder say about it (see the module docstring for ``state``)."""

    run: str
    state: str
    epochs_done: int
    epochs_total: int
    val_error: float | None  # last epoch's val_mse (else val_loss); None without validation
    host: str | None
    device: str | None
    backend: str | None
    wall_seconds: float | None
    detail: str  # the error of a failed run, or why it counts as failed


def _last_history_row(path: Path) -> dict:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error):
        return {}
    return rows[-1] if rows else {}


def run_status(config) -> RunStatus:
    """The state of one expanded run, from its folder's files only (safe while it trains elsewhere)."""
    run_dir = config.run_dir()
    record = read_record(run_dir)
    detail = ""
    if (run_dir / "done").is_file() and (run_dir / "model.keras").is_file():
        state = "finished"
    elif _lock_held(run_dir):
        state = "running"
    elif record.get("state") == "failed":
        state, detail = "failed", str(record.get("error") or "")
    elif record.get("state") == "running":
        state, detail = "failed", "stopped without a word (killed, or its host went down); resumable"
    elif (run_dir / "checkpoints" / "state.json").is_file():
        state, detail = "failed", "interrupted; resumable"
    else:
        state = "not started"
    history = _last_history_row(run_dir / "history.csv")
    try:
        state_json = json.loads((run_dir / "checkpoints" / "state.json").read_text())
        epochs_done = int(state_json["completed_epochs"])
    except (OSError, ValueError, KeyError, TypeError):
        epochs_done = int(history["epoch"]) + 1 if history.get("epoch", "").isdigit() else 0
    if state == "finished":
        epochs_done = config.training.epochs
    value = history.get("val_mse") or history.get("val_loss")
    try:
        val_error = float(value) if value not in (None, "") else None
    except ValueError:
        val_error = None
    return RunStatus(run=config.run_name, state=state, epochs_done=epochs_done,
                     epochs_total=config.training.epochs, val_error=val_error, host=record.get("host"),
                     device=record.get("device"), backend=record.get("backend"),
                     wall_seconds=record.get("wall_seconds"), detail=detail)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Plain aligned columns (for terminals and log files); the last column is not padded."""
    cells = [[str(c) for c in header]] + [["-" if c is None or c == "" else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def status_table(statuses: Sequence[RunStatus]) -> str:
    """The `vqkeras status` table: one row per run, then a count per state."""
    rows = [(s.run, s.state, f"{s.epochs_done}/{s.epochs_total}",
             None if s.val_error is None else f"{s.val_error:.4g}", s.host, s.device, s.detail)
            for s in statuses]
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    summary = ", ".join(f"{n} {state}" for state, n in counts.items() if n)
    return (format_table(("run", "state", "epochs", "val_mse", "host", "device", "detail"), rows)
            + f"\n{len(statuses)} runs: {summary}")
