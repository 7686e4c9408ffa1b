"""What produced a report: commit, machine, backend, and where each run was trained.

`run_provenance` describes the report's own run (commit, backend, machine,
wall time), `runs_provenance` each training run from its ``run.json`` (runs
of one report may come from many hosts), and `provenance` what one notebook
ran with (the last cell of every report notebook prints it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _git(*args: str) -> str | None:
    import subprocess

    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_description() -> str:
    """CPU model and core count, memory, and GPUs when any (``nvidia-smi``)."""
    import platform
    import shutil
    import subprocess

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cores} CPU cores ({cpu})"
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        text += f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    gpus = None
    if shutil.which("nvidia-smi"):
        try:
            gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            gpus = None
    return text + (f", GPU: {gpus.replace(chr(10), ', ')}" if gpus else ", no GPU")


def run_provenance(*, backend: str, wall_seconds: float, reused_runs: int = 0,
                   total_runs: int | None = None) -> dict[str, str]:
    """What produced a report: commit (``+uncommitted`` if the tree differs), backend, machine, time.

    ``reused_runs`` of ``total_runs`` were already trained before the report
    started (their training time is not in the wall time).
    """
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown (not a git checkout)"
    if _git("status", "--porcelain", "--untracked-files=no", "--", "vqkeras", "notebooks", "experiments"):
        commit += " + uncommitted changes"
    import datetime

    return {"commit": commit, "backend": backend, "machine": machine_description(),
            "wall time": f"{wall_seconds / 60:.1f} min (training, evaluation and notebooks"
                         + (f"; {reused_runs} of {total_runs} runs were already trained and reused)"
                            if reused_runs else ", every run trained from scratch)"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def runs_provenance(runs: Sequence[Any]) -> dict[str, str]:
    """Where each run was trained (host, device, backend, time), from its ``run.json``.

    Runs of one report may come from many hosts (``vqkeras sweep``, a Slurm
    array); the report machine is then only where the notebooks ran.
    """
    import json

    from vqkeras.experiments.runs import read_record

    facts, hosts = {}, set()
    for run in runs:
        record = read_record(run.run_dir())
        if record.get("host"):
            hosts.add(record["host"])
            minutes = record.get("wall_seconds")
            facts[f"run {run.run_name}"] = (
                f"host {record['host']}, device {record.get('device', '?')}, backend "
                f"{record.get('backend', '?')}" + (f", {minutes / 60:.1f} min" if minutes else "")
                + (f", {record['state']}" if record.get("state") != "finished" else ""))
            continue
        try:  # trained before run.json existed: `done` still names the backend
            done = json.loads((run.run_dir() / "done").read_text())
            facts[f"run {run.run_name}"] = f"host and device not recorded, backend {done.get('backend', '?')}"
        except (OSError, ValueError, AttributeError):
            facts[f"run {run.run_name}"] = "not trained"
    if hosts:
        facts = {"training hosts": f"{len(hosts)} ({', '.join(sorted(hosts))})", **facts}
    return facts


def provenance(**parameters: Any) -> dict[str, Any]:
    """What a notebook ran with: its parameters, the git commit, library versions.

    The last cell of every report notebook prints this, so an executed copy
    says which code produced it.
    """
    import platform
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown (not a git checkout)"
    info: dict[str, Any] = dict(parameters)
    info["git_commit"] = commit
    info["python"] = platform.python_version()
    for module in ("keras", "jax", "tensorflow", "torch"):
        if module in sys.modules:
            info[module] = getattr(sys.modules[module], "__version__", "?")
    return info
