"""Benchmark: what mixed precision costs: test error and training speed, float32 vs 16-bit.

For each experiment (default ``nsynth-minimal``, its base run: the VQ-VAE with
K=64) and each precision (default ``float32`` and ``mixed_bfloat16``) the
script trains one run with ``training.precision`` set, same seed and epochs,
in its own subprocess (the backend is fixed at import), evaluates it on the
test split (spectrogram-image metrics; no phase reconstruction) and prints a
table:

- ``test mse`` / ``test sse``: `vqkeras.experiments.evaluation.evaluate` on
  the test split of the float32 reload of the trained model (what
  ``vqkeras evaluate`` does after a mixed-precision run);
- ``steps/s``: training steps per second after the first epoch (which
  includes compilation), ``first epoch s`` apart;
- ``code agreement``: fraction of test latents whose code is the same when the
  saved model runs under its training policy and under float32.

On the CPU (TensorFlow, as `experiments/nsynth-minimal.yaml` asks)::

    vqkeras data render --soundfont TimGM6mb --out /tmp/prec-data
    python benchmarks/mixed_precision.py --data /tmp/prec-data --epochs 4

On a GPU, JAX (steps/s is the number to look at there; both experiments)::

    python benchmarks/mixed_precision.py --backend jax --data data/nsynth-rendered \\
        --experiments nsynth-minimal nsynth-full --out reports/mixed-precision-gpu

Writes ``mixed_precision.{md,csv}`` under ``--out`` (default a temporary
folder) and keeps the run folders there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

_CHILD = r'''
import json, sys, time
import numpy as np
import keras
from vqkeras.experiments.config import load_config
from vqkeras.experiments.datasets import load_split
from vqkeras.experiments.evaluation import evaluate
from vqkeras.experiments.models import load_model
from vqkeras.experiments.training import MODEL_FILE, train

config = load_config(json.loads(sys.argv[1]))
epochs = []

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.steps = time.perf_counter(), 0
    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
    def on_epoch_end(self, epoch, logs=None):
        epochs.append((time.perf_counter() - self.start, self.steps))

run_dir = train(config, resume=False, callbacks=[Timer()])
result = evaluate(config, run_dir=run_dir, split="test", phase_iterations=0)
images = load_split(config, "test").images
codes32 = load_model(run_dir / MODEL_FILE).encode(images)
keras.mixed_precision.set_global_policy(config.training.precision)
codes = load_model(run_dir / MODEL_FILE).encode(images)
later = epochs[1:] or epochs
print("RESULT " + json.dumps({
    "mse": result.summary["mse"], "sse": result.summary["sse"],
    "first_epoch_s": epochs[0][0],
    "steps_per_s": sum(s for _, s in later) / sum(t for t, _ in later),
    "code_agreement": float(np.mean(codes == codes32)),
    "status": result.status}))
'''


def run_one(experiment: str, precision: str, args) -> dict:
    """Train and evaluate one (experiment, precision) run in a subprocess; its RESULT line."""
    sys.path.insert(0, str(ROOT))
    from vqkeras.experiments.config import load_config

    overrides = {"backend": args.backend, "training.precision": precision, "training.verbose": 0,
                 "training.tensorboard": False, "runs_root": str(args.out / "runs")}
    if args.data:
        overrides["dataset.root"] = str(args.data)
    if args.epochs:
        overrides["training.epochs"] = args.epochs
    config = load_config(ROOT / "experiments" / f"{experiment}.yaml").with_overrides(
        overrides, run_name=precision)
    env = {**os.environ, "KERAS_BACKEND": args.backend,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(config.to_dict())], env=env,
                          capture_output=True, text=True, timeout=args.timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{experiment} {precision}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
    return {"experiment": experiment, "precision": precision, "epochs": config.training.epochs,
            "wall_s": time.perf_counter() - start, **json.loads(lines[-1][len("RESULT "):])}


def table(rows: list[dict]) -> str:
    """Markdown table of the results, float32 first within each experiment."""
    head = ("| experiment | precision | epochs | test mse | test sse | steps/s | first epoch s | "
            "code agreement | status |\n|---|---|---|---|---|---|---|---|---|")
    body = [f"| {r['experiment']} | {r['precision']} | {r['epochs']} | {r['mse']:.5f} | {r['sse']:.1f} | "
            f"{r['steps_per_s']:.2f} | {r['first_epoch_s']:.1f} | "
            f"{'-' if r['precision'] == 'float32' else format(r['code_agreement'], '.4f')} | {r['status']} |"
            for r in rows]
    return "\n".join([head, *body])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiments", nargs="+", default=["nsynth-minimal"],
                        help="experiments/<name>.yaml (the base run, sweep dropped)")
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"], choices=PRECISIONS)
    parser.add_argument("--backend", default="tensorflow", choices=["jax", "tensorflow"])
    parser.add_argument("--data", type=Path, help="dataset.root (default: the experiment's)")
    parser.add_argument("--epochs", type=int, help="training.epochs for every run (default: the experiment's)")
    parser.add_argument("--out", type=Path, help="folder for runs and tables (default: a temporary one)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    args = parser.parse_args(argv)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="mixed-precision-"))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for experiment in args.experiments:
        for precision in args.precisions:
            rows.append(run_one(experiment, precision, args))
            print(f"{experiment} {precision}: test mse {rows[-1]['mse']:.5f}, "
                  f"{rows[-1]['steps_per_s']:.2f} steps/s ({rows[-1]['wall_s']:.0f} s)", flush=True)
    text = table(rows)
    print(text)
    (args.out / "mixed_precision.md").write_text(text + "\n")
    import csv

    with (args.out / "mixed_precision.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written: {args.out}/mixed_precision.md, .csv")


if __name__ == "__main__":
    main()
