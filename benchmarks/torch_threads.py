"""Torch's intra-op threads on a small CPU: vqkeras work at 1 thread and at torch's default.

Each setting runs in a fresh process (``KERAS_BACKEND=torch``); the table gives
the median wall time of a few repeats per workload:

- a 64x64 matrix product (the size of a quantiser's distance table),
- one training step of the nsynth-tiny VQ-VAE (batch 4, 124x128 images),
- `vqkeras.griffin_lim` on a 4-s note's magnitude (32 iterations).

Usage::

    python benchmarks/torch_threads.py [--repeats 5] [--out reports/benchmarks]

Writes ``torch_threads.md`` and ``torch_threads.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

_WORKER = r"""
import json, os, sys, time
import numpy as np
import torch
threads = int(sys.argv[1]); repeats = int(sys.argv[2])
if threads > 0:
    torch.set_num_threads(threads)
import keras
import vqkeras
from vqkeras.experiments.models import VQVAE, compile_model

def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter(); fn(); times.append(time.perf_counter() - start)
    return float(np.median(times))

rng = np.random.default_rng(0)
a = torch.from_numpy(rng.standard_normal((64, 64), dtype=np.float32))
rows = {"threads": torch.get_num_threads()}
rows["matmul_64_us"] = median_time(lambda: [a @ a for _ in range(100)], repeats) / 100 * 1e6
model = VQVAE((124, 128, 1), num_hiddens=16, num_residual_layers=1, num_residual_hiddens=8,
              strides=[[2, 2], [2, 2]], embedding_dim=8, num_embeddings=32, ema=True)
compile_model(model, learning_rate=1e-3)
x = rng.random((4, 124, 128, 1), dtype=np.float32)
rows["train_step_ms"] = median_time(lambda: model.train_on_batch(x, x), repeats) * 1e3
t = np.arange(64000) / 16000
wave = (0.5 * np.sin(2 * np.pi * 220 * t) * np.exp(-t)).astype(np.float32)[None]
re, im = keras.ops.stft(wave, 1024, 256, 1024)
mag = np.hypot(keras.ops.convert_to_numpy(re), keras.ops.convert_to_numpy(im))
rows["griffin_lim_ms"] = median_time(
    lambda: vqkeras.griffin_lim(mag, frame_length=1024, frame_step=256, n_iter=32), repeats) * 1e3
print(json.dumps(rows))
"""


def measure(threads: int, repeats: int) -> dict:
    """One fresh torch process at ``threads`` intra-op threads (0: torch's default)."""
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", _WORKER, str(threads), str(repeats)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"torch_threads: worker failed: {proc.stderr.strip()[-2000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["setting"] = "torch default" if threads == 0 else f"{threads} thread"
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = parser.parse_args(argv)
    import pandas as pd

    from vqkeras.experiments.plots import markdown_table

    rows = [measure(t, args.repeats) for t in (1, 0)]
    table = pd.DataFrame(rows)[["setting", "threads", "matmul_64_us", "train_step_ms", "griffin_lim_ms"]]
    load = os.getloadavg()[0]
    text = (f"Torch intra-op threads, {os.cpu_count()} CPUs, load {load:.1f} at the end "
            f"(median of {args.repeats}):\n\n" + markdown_table(table, float_format="{:.1f}") + "\n")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "torch_threads.csv", index=False)
    (args.out / "torch_threads.md").write_text(text)


if __name__ == "__main__":
    main()
