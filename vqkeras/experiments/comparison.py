"""Quantizer comparison: the same encoder/decoder with VQ, RVQ, FSQ and LFQ at equal bits.

`compare` trains every run of a comparison experiment (its sweep names one
quantizer at one bit budget on one dataset per run) and measures, per run:
test MSE, codebook perplexity and usage of the test codes, and the training
steps needed to reach a fixed validation error (per dataset: the worst final
validation MSE of its runs, so every run reaches it and the count says how
fast). `measure_speed` times training steps on each backend in a fresh
process. The notebook ``notebooks/comparison/01_quantizer_comparison.ipynb``
turns the table into a figure of error against bits.

Command line (used for the per-backend timings)::

    python -m vqkeras.experiments.comparison speed experiments/quantizer-comparison.yaml --steps 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BACKENDS = ("jax", "tensorflow")


def quantizer_label(run) -> str:
    """``vq``, ``rvq``, ``fsq``, ``rfsq`` (FSQ stages on the residual) or ``lfq``."""
    model = run.model
    if model.quantizer == "fsq" and model.num_stages > 1:
        return "rfsq"
    return model.quantizer


def _steps_per_epoch(run) -> int:
    from vqkeras.experiments.datasets import load_split

    return math.ceil(len(load_split(run, "train")) / run.training.batch_size)


def evaluate_run(run) -> dict:
    """Test error and code statistics of one trained run, plus its validation curve.

    Returns
    -------
    dict with ``dataset``, ``quantizer``, ``bits_per_vector``, ``test_mse``,
    ``perplexity``, ``usage``, ``steps_per_epoch`` and ``val_mse_curve``
    (one value per epoch).
    """
    import keras

    from vqkeras.experiments.datasets import load_split
    from vqkeras.experiments.models import load_model
    from vqkeras.layers.quantizer_base import batch_statistics

    run_dir = run.run_dir()
    model = load_model(run_dir / "model.keras")
    test = load_split(run, "test").images
    batch = run.training.batch_size
    recon = np.concatenate([keras.ops.convert_to_numpy(model(test[i:i + batch], training=False))
                            for i in range(0, len(test), batch)])
    codes = model.encode(test, batch_size=batch)
    quantizer = model.quantizer
    perplexity, usage = batch_statistics(codes.reshape(-1), quantizer.codebook_size)
    history = pd.read_csv(run_dir / "history.csv")
    if "val_mse" not in history:
        raise RuntimeError(f"{run_dir / 'history.csv'} has no val_mse: train with a validation split")
    return {
        "dataset": run.dataset.name, "quantizer": quantizer_label(run), "run": run.run_name,
        "bits_per_vector": float(quantizer.bits_per_vector), "codebook_size": int(quantizer.codebook_size),
        "test_mse": float(np.mean((recon - test) ** 2)),
        "perplexity": float(keras.ops.convert_to_numpy(perplexity)),
        "usage": float(keras.ops.convert_to_numpy(usage)),
        "steps_per_epoch": _steps_per_epoch(run),
        "val_mse_curve": [float(v) for v in history["val_mse"]],
    }


def steps_to_target(results: pd.DataFrame) -> pd.DataFrame:
    """Add ``target_val_mse`` and ``steps_to_target`` (training steps to reach it, per run).

    The target of a dataset is the worst final validation MSE among its runs:
    every run reaches it, and the step count ranks how fast.
    """
    results = results.copy()
    final = results["val_mse_curve"].map(lambda c: c[-1])
    results["target_val_mse"] = final.groupby(results["dataset"]).transform("max")
    steps = []
    for curve, target, per_epoch in zip(results["val_mse_curve"], results["target_val_mse"],
                                        results["steps_per_epoch"]):
        epoch = next(i for i, v in enumerate(curve) if v <= target + 1e-12)
        steps.append((epoch + 1) * per_epoch)
    results["steps_to_target"] = steps
    return results


def measure_speed(experiment: str | Path, *, backends=BACKENDS, steps: int = 20,
                  timeout: int = 1800) -> pd.DataFrame:
    """Training steps per second of every run's model, per backend (another backend in a fresh process).

    Returns
    -------
    DataFrame with ``run``, ``backend``, ``steps_per_s`` (wall clock) and
    ``cpu_s_per_step`` (process CPU time; less sensitive to other load).
    """
    import keras

    rows = []
    root = str(Path(__file__).resolve().parents[2])
    for backend in backends:
        if backend == keras.backend.backend():  # the active one: no new process needed
            for run, (per_s, cpu) in _time_runs(experiment, steps).items():
                rows.append({"run": run, "backend": backend, "steps_per_s": per_s, "cpu_s_per_step": cpu})
            continue
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run([sys.executable, "-m", "vqkeras.experiments.comparison", "speed", str(experiment),
                               "--steps", str(steps)], env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"speed measurement on {backend} failed: {proc.stderr.strip()[-2000:]}")
        for run, (per_s, cpu) in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            rows.append({"run": run, "backend": backend, "steps_per_s": per_s, "cpu_s_per_step": cpu})
    return pd.DataFrame(rows)


def _time_runs(experiment: str | Path, steps: int) -> dict:
    """{run name: (steps/s, CPU s/step)} on the active backend, on a real training batch."""
    import keras

    from vqkeras.experiments.config import input_shape
    from vqkeras.experiments.datasets import load_split
    from vqkeras.experiments.models import build_model, compile_model
    from vqkeras.experiments.report import load_runs

    _, runs = load_runs(experiment, backend=keras.backend.backend())
    out = {}
    for run in runs:
        keras.utils.set_random_seed(run.seed)
        model = build_model(run.model, input_shape(run))
        compile_model(model, learning_rate=run.training.learning_rate)
        train_images = load_split(run, "train").images
        batch = train_images[:run.training.batch_size]
        n = max(1, min(steps, math.ceil(len(train_images) / run.training.batch_size)))  # at most an epoch
        for _ in range(2):  # compile and warm up
            model.train_on_batch(batch, batch)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            model.train_on_batch(batch, batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        out[run.run_name] = (n / wall, cpu / n)
    return out


def compare(experiment: str | Path, *, backend: str, speed_backends=BACKENDS, speed_steps: int = 20
            ) -> pd.DataFrame:
    """Train (or reuse) every run, evaluate it and time it: one row per run.

    Parameters
    ----------
    experiment : str or Path
        A comparison YAML (e.g. ``experiments/quantizer-comparison.yaml``).
    backend : str
        The backend that trains (the active one).
    speed_backends : sequence of str
        Backends to time training steps on (empty: no timing).
    speed_steps : int
        Timed steps per run and backend (at most one epoch's worth).
    """
    from vqkeras.experiments.report import load_runs
    from vqkeras.experiments.training import train

    _, runs = load_runs(experiment, backend=backend)
    rows = []
    for run in runs:
        train(run)
        rows.append(evaluate_run(run))
    results = steps_to_target(pd.DataFrame(rows))
    if speed_backends:
        speed = measure_speed(experiment, backends=speed_backends, steps=speed_steps)
        wide = speed.pivot(index="run", columns="backend", values="steps_per_s")
        for b in wide.columns:
            results[f"steps_per_s_{b}"] = results["run"].map(wide[b])
    return results


def winners(results: pd.DataFrame) -> pd.DataFrame:
    """The lowest test MSE per dataset and bit budget, with the runner-up's gap."""
    rows = []
    for (dataset, bits), group in results.groupby(["dataset", "bits_per_vector"]):
        ranked = group.sort_values("test_mse")
        best = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        rows.append({"dataset": dataset, "bits_per_vector": bits, "best": best["quantizer"],
                     "best_test_mse": best["test_mse"],
                     "runner_up": None if second is None else second["quantizer"],
                     "runner_up_ratio": None if second is None else second["test_mse"] / best["test_mse"]})
    return pd.DataFrame(rows)


def plot_error_vs_bits(results: pd.DataFrame, *, error: str = "test_mse"):
    """One panel per dataset: error against bits per latent vector, one line per quantizer."""
    import matplotlib.pyplot as plt

    datasets = sorted(results["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        data = results[results["dataset"] == dataset]
        for quantizer, group in data.groupby("quantizer"):
            group = group.sort_values("bits_per_vector")
            ax.plot(group["bits_per_vector"], group[error], marker="o", label=quantizer)
        ax.set_yscale("log")
        ax.set_xlabel("bits per latent vector")
        ax.set_ylabel(error.replace("_", " "))
        ax.set_title(dataset)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vqkeras.experiments.comparison")
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="time training steps of every run on the active backend (JSON)")
    speed.add_argument("experiment")
    speed.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)
    print(json.dumps(_time_runs(args.experiment, args.steps)))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
