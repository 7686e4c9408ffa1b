"""Fan an experiment's runs out over a Ray cluster: one Ray task per run (``vqkeras sweep``).

Ray does the scheduling (resources per run, placement on GPUs and hosts);
this module only plans which runs to start and reports what became of them.
Each task starts ``python -m vqkeras train -f EXP --run NAME`` as a child
process: the very code path of a hand-started run, with its lock, its
``run.json`` and bit-identical resumption, and no Keras or backend state
shared between runs in a long-lived Ray worker. The child's output goes to
``<run folder>/train.log``. See docs/sweeps.md.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vqkeras.errors import VQKerasError
from vqkeras.experiments.runs import format_table, read_record, run_status, select_runs

__all__ = ["SweepError", "SweepResult", "run_sweep", "sweep_table"]

log = logging.getLogger(__name__)

LOG_FILE = "train.log"
# How long cancelled tasks get to stop their training (SIGINT: run.json says
# "interrupted") before Ray kills their workers.
_CANCEL_GRACE_SECONDS = 20.0


class SweepError(VQKerasError, RuntimeError):
    """Ray is missing or unreachable, or runs of the sweep failed."""


@dataclass
class SweepResult:
    """What became of one run: ``status`` is finished, failed, cancelled, or skipped (...)."""

    run: str
    status: str
    wall_seconds: float | None = None
    host: str | None = None
    device: str | None = None
    detail: str = ""


def _child_signals() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The training child hears Ctrl-C, and (Linux) gets SIGTERM if its Ray worker is killed."""
    import ctypes
    import signal

    # Ray workers block SIGINT, and a signal mask survives exec: the child would never see it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _error_line(log_path: Path) -> str:
    """The child's one-line error (the CLI's boundary guarantees one), from the end of its log."""
    try:
        with log_path.open("rb") as f:
            f.seek(max(0, log_path.stat().st_size - 20000))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.startswith("vqkeras train: ") or line.startswith("interrupted"):
            return line.removeprefix("vqkeras train: ").removeprefix("error: ").strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def train_in_child(run: str, argv: Sequence[str], cwd: str, env: dict[str, str], run_dir: str) -> dict:
    """Body of one Ray task: train ``run`` in a child process and describe the outcome.

    A cancel (KeyboardInterrupt from ``ray.cancel``) is passed on to the child
    as SIGINT, so the run records itself as interrupted and stays resumable.
    """
    import signal
    import socket
    import subprocess

    folder = Path(cwd, run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG_FILE
    started = time.monotonic()
    with log_path.open("ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}: "
                  f"{' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen([sys.executable, *argv], cwd=cwd, env={**os.environ, **env}, stdout=out,
                                stderr=subprocess.STDOUT, preexec_fn=_child_signals)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=_CANCEL_GRACE_SECONDS - 5)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    record = read_record(folder)
    return {"run": run, "returncode": proc.returncode, "wall_seconds": time.monotonic() - started,
            "host": socket.gethostname(), "device": record.get("device"),
            "error": "" if proc.returncode == 0 else _error_line(log_path)}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError("vqkeras sweep runs on Ray, which is not installed here: "
                         "pip install 'vqkeras[cluster]' (or pip install 'ray==2.60.*')") from None
    return ray


def _start_ray(ray, address: str | None, num_cpus: int | None) -> None:
    kwargs = {"logging_level": logging.WARNING, "log_to_driver": False}
    # Ray warns that it turned on token authentication, its default, for every new instance.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # "local": always a new instance of our own, never another user's cluster on this host.
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=200 * 2**20, **kwargs)  # tasks pass only small dicts
    except (ConnectionError, ValueError, RuntimeError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SweepError(f"cannot start or reach {where}: {' '.join(str(err).split())[:300]}") from None


def run_sweep(experiment: str | Path, *, names: Sequence[str] | None = None, index: int | None = None,
              address: str | None = None, gpus_per_run: float | None = None, cpus_per_run: float = 1.0,
              num_cpus: int | None = None, backend: str | None = None,
              echo: Callable[[str], None] | None = None) -> list[SweepResult]:
    """Train every unfinished (selected) run of an experiment as one Ray task each.

    Parameters
    ----------
    experiment : str or Path
        The experiment YAML; its paths (``runs_root``, ``dataset.root``) must
        mean the same on every host (a shared filesystem, same working folder).
    names, index
        Run selectors, as for ``vqkeras train`` (`select_runs`).
    address : str, optional
        A running Ray cluster (``ray://head:10001`` or ``head:6379``, or ``auto``).
        Default: a local Ray instance started for this call and stopped after it.
    gpus_per_run : float, optional
        GPUs each run asks Ray for. Default: 1 if the cluster has GPUs, else 0.
    cpus_per_run : float
        CPUs each run asks Ray for.
    num_cpus : int, optional
        CPUs of the local Ray instance (default: all); ignored with ``address``.
    backend : str, optional
        Keras backend of the runs (default: the YAML's).
    echo : callable, optional
        Receives one progress line per finished run (default: print them at once).

    Returns
    -------
    list of SweepResult
        One per selected run, in sweep order. Finished runs and runs another
        process is training are skipped, not started.

    Raises
    ------
    SweepError
        Ray is missing or unreachable. (Failed runs are results, not errors.)
    ConfigError
        The YAML is invalid, or a selector matches no run.
    """
    from vqkeras.experiments.config import load_config

    echo = echo or functools.partial(print, flush=True)  # progress, also into a log file
    experiment = Path(experiment).resolve()
    config = load_config(experiment)
    runs = select_runs(config.expand(), names, index)
    backend = backend or config.backend
    results = {run.run_name: None for run in runs}
    todo = []
    skipped = {"finished": "skipped (already finished)", "running": "skipped (running elsewhere)"}
    for run in runs:
        state = run_status(run).state
        if state in skipped:
            results[run.run_name] = SweepResult(run.run_name, skipped[state])
        else:
            todo.append(run)
    if not todo:
        return list(results.values())

    ray = _import_ray()
    _start_ray(ray, address, num_cpus)
    try:
        if gpus_per_run is None:
            gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        env = {"KERAS_BACKEND": backend}
        if os.environ.get("PYTHONPATH"):  # a source checkout: the workers import the same vqkeras
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        task = ray.remote(train_in_child)
        pending = {}
        for run in todo:
            argv = ["-m", "vqkeras", "--backend", backend, "train", "-f", str(experiment),
                    "--run", run.run_name]
            ref = task.options(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0,
                               name=f"vqkeras-train-{run.run_name}").remote(
                run.run_name, argv, os.getcwd(), env, str(run.run_dir()))
            pending[ref] = run.run_name
        echo(f"sweep {config.name}: {len(todo)} run(s) submitted ({cpus_per_run:g} CPU, "
             f"{gpus_per_run:g} GPU each); {len(runs) - len(todo)} skipped")
        finished = 0
        try:
            while pending:
                # A timeout, so that Ctrl-C is seen at once, not when the next run ends.
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if not ready:
                    continue
                name = pending.pop(ready[0])
                results[name] = _result(ray, ready[0], name)
                finished += 1
                r = results[name]
                where = f" on {r.host} ({r.device})" if r.host else ""
                echo(f"[{finished}/{len(todo)}] {name}: {r.status} after {_minutes(r.wall_seconds)}{where}"
                     + (f": {r.detail}" if r.detail else ""))
        except KeyboardInterrupt:
            _cancel(ray, pending)
            for name in pending.values():
                results[name] = SweepResult(name, "cancelled")
            echo(sweep_table(list(results.values())))
            raise
    finally:
        ray.shutdown()
    return list(results.values())


def _result(ray, ref, name: str) -> SweepResult:
    try:
        out = ray.get(ref)
    except ray.exceptions.RayError as err:  # the worker died (OOM, node lost) or the task was cancelled
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return SweepResult(name, "failed", detail=f"{type(err).__name__}: {first}"[:300])
    status = "finished" if out["returncode"] == 0 else "failed"
    return SweepResult(name, status, out["wall_seconds"], out["host"], out["device"],
                       out["error"] or (f"exit status {out['returncode']}" if status == "failed" else ""))


def _cancel(ray, pending: dict) -> None:
    """Ctrl-C: interrupt the started runs (they record it and stay resumable), then kill stragglers."""
    refs = list(pending)
    for ref in refs:
        ray.cancel(ref, force=False)
    _, alive = ray.wait(refs, num_returns=len(refs), timeout=_CANCEL_GRACE_SECONDS)
    for ref in alive:
        ray.cancel(ref, force=True)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def sweep_table(results: Sequence[SweepResult]) -> str:
    """The closing table: run, status, wall time, host, device, and the error of a failed run."""
    rows = [(r.run, r.status, _minutes(r.wall_seconds) if r.wall_seconds is not None else None,
             r.host, r.device, r.detail) for r in results]
    return format_table(("run", "status", "wall", "host", "device", "detail"), rows)
