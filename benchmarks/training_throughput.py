"""Benchmark: training steps per second of the convolutional models, JAX vs TensorFlow (and torch) on CPU.

Models (random inputs of the right shape; the data pipeline is not timed):

- ``thesis-minimal``: the VQ-VAE of ``experiments/nsynth-minimal.yaml`` (500x128
  spectrogram images, 32 hidden channels, batch 16);
- ``thesis-full``: the VQ-VAE of ``experiments/nsynth-full.yaml`` (512x512 images,
  256 hidden channels, D=256, K=1024) with a small batch (``--full-batch``, default 2);
- ``keras-io``: the keras.io "Vector-Quantized Variational Autoencoders" example
  architecture on 28x28 MNIST-shaped images (two 3x3 stride-2 convolutions, a 1x1
  to D=16, K=64, three transposed convolutions back; batch 128), written here with
  `vqkeras.VectorQuantizer`.

Each model is built with its resampling layers as in the thesis (``strided`` /
``transpose``) and with the replacements of
`vqkeras.experiments.models.blocks` (``space_to_depth`` / ``subpixel``), then
trained with ``train_on_batch`` (Adam; ``--loop fit``: ``model.fit`` over numpy arrays,
as `vqkeras train` runs) on JAX, on JAX with
`vqkeras.xla_flags.FAST_CPU_CONVOLUTIONS` ("jax-fastconv"), on TensorFlow and on
torch (eager, as Keras runs it by default; ``--backends`` picks),
each (backend, model, variant) in its own subprocess, interleaved. The first steps (compilation)
are timed apart; steps/s is over the following ``--steps`` steps, with wall
and process CPU time. ``--ops`` adds a per-op profile: one layer's forward +
backward + Adam step at the minimal model's size, which is where the JAX/CPU
slowness was found (transposed and strided convolutions).

Writes ``training_throughput.{md,csv,png}`` under ``--out``.

    python benchmarks/training_throughput.py --ops
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

try:  # run from a checkout without `pip install -e .`
    import vqkeras  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
# "jax-fastconv": JAX with `vqkeras.xla_flags.FAST_CPU_CONVOLUTIONS` (convolutions on
# XLA's Eigen kernels instead of YNNPACK; element-wise and reduction fusions on YNNPACK).
BACKENDS = ("jax", "jax-fastconv", "tensorflow", "torch")
# (upsampling, downsampling) variants per model. thesis-full with the thesis's layers
# is left out: on JAX it took > 420 s for 3 steps (timed out) in earlier runs.
VARIANTS = {
    "thesis-minimal": (("transpose", "strided"), ("subpixel", "space_to_depth")),
    "thesis-full": (("subpixel", "space_to_depth"),),
    "keras-io": (("transpose", "strided"), ("subpixel", "space_to_depth")),
}
OPS = ("conv2d_transpose 4x4 s2", "subpixel: conv 2x2 + depth_to_space", "resize + conv 4x4",
       "conv 4x4 s2", "space_to_depth + conv 2x2", "conv 3x3 s1")


def _thesis_model(experiment: str, upsampling: str, downsampling: str):
    from vqkeras.experiments.config import input_shape, load_config
    from vqkeras.experiments.models import build_model, compile_model

    config = load_config(ROOT / "experiments" / experiment)
    config.model.upsampling, config.model.downsampling = upsampling, downsampling
    shape = input_shape(config)
    model = build_model(config.model, shape)
    compile_model(model, learning_rate=config.training.learning_rate)
    return model, shape, config.training.batch_size


def keras_io_vqvae(upsampling: str = "transpose", downsampling: str = "strided"):
    """The keras.io VQ-VAE example's layout (28x28x1 -> 7x7x16 -> 28x28x1, K=64)."""
    import keras

    from vqkeras.experiments.models.blocks import downsample, upsample
    from vqkeras.layers import VectorQuantizer

    inputs = keras.Input((28, 28, 1))
    x = downsample(inputs, 32, (2, 2), downsampling, kernel=3, name="enc_0")
    x = downsample(x, 64, (2, 2), downsampling, kernel=3, name="enc_1")
    x = keras.layers.Conv2D(16, 1, padding="same", name="to_latent")(x)
    x = VectorQuantizer(64, 16, beta=0.25, name="vq")(x)
    x = upsample(x, 64, (2, 2), upsampling, kernel=3, activation="relu", name="dec_0")
    x = upsample(x, 32, (2, 2), upsampling, kernel=3, activation="relu", name="dec_1")
    # The example's last layer is a stride-1 3x3 transposed convolution: a plain conv.
    x = keras.layers.Conv2D(1, 3, padding="same", name="dec_out")(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model, (28, 28, 1), 128


def build(model_name: str, upsampling: str, downsampling: str, full_batch: int):
    if model_name == "thesis-minimal":
        return _thesis_model("nsynth-minimal.yaml", upsampling, downsampling)
    if model_name == "thesis-full":
        model, shape, _ = _thesis_model("nsynth-full.yaml", upsampling, downsampling)
        return model, shape, full_batch
    return keras_io_vqvae(upsampling, downsampling)


def _time_steps(model, x, y, warmup: int, steps: int) -> dict:
    start = time.perf_counter()
    for _ in range(warmup):
        model.train_on_batch(x, y)
    first_s = time.perf_counter() - start
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        model.train_on_batch(x, y)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(first_steps_s=first_s, step_wall_s=wall / steps, step_cpu_s=cpu / steps,
                steps_per_s=steps / wall)


def _time_fit(model, batch: int, shape: tuple, steps: int) -> dict:
    """Steps of ``model.fit`` over numpy data in memory (what `vqkeras train` runs)."""
    import numpy as np

    x = np.random.default_rng(0).random((batch * steps, *shape)).astype("float32")
    start = time.perf_counter()
    model.fit(x[:2 * batch], x[:2 * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    first_s = time.perf_counter() - start
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(x, x, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(first_steps_s=first_s, step_wall_s=wall / steps, step_cpu_s=cpu / steps,
                steps_per_s=steps / wall)


def worker_model(model_name: str, upsampling: str, downsampling: str, steps: int,
                 full_batch: int, loop: str = "train_on_batch") -> dict:
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model, shape, batch = build(model_name, upsampling, downsampling, full_batch)
    if loop == "fit":
        timing = _time_fit(model, batch, shape, steps)
    else:
        x = np.random.default_rng(0).random((batch, *shape)).astype("float32")
        timing = _time_steps(model, x, x, warmup=2, steps=steps)
    return dict(kind="model", model=model_name, upsampling=upsampling, downsampling=downsampling,
                batch=batch, params=int(model.count_params()), loop=loop,
                jit_compile=bool(getattr(model, "jit_compile", False)), **timing)


def _op_layer(name: str, channels: int):
    import keras

    from vqkeras.experiments.models.blocks import downsample, upsample

    if name == "conv2d_transpose 4x4 s2":
        return lambda x: upsample(x, channels, (2, 2), "transpose", name="op")
    if name == "subpixel: conv 2x2 + depth_to_space":
        return lambda x: upsample(x, channels, (2, 2), "subpixel", name="op")
    if name == "resize + conv 4x4":
        return lambda x: upsample(x, channels, (2, 2), "resize", name="op")
    if name == "conv 4x4 s2":
        return lambda x: downsample(keras.layers.Conv2D(channels, 1)(x), channels, (2, 2), "strided",
                                    name="op")
    if name == "space_to_depth + conv 2x2":
        return lambda x: downsample(keras.layers.Conv2D(channels, 1)(x), channels, (2, 2),
                                    "space_to_depth", name="op")
    return lambda x: keras.layers.Conv2D(channels, 3, padding="same", name="op")(x)


def worker_op(name: str, steps: int) -> dict:
    """One layer (at the minimal model's decoder size) trained alone: fwd + bwd + Adam."""
    import keras
    import numpy as np

    channels, batch = 32, 8
    in_shape = (500, 128, channels) if name in ("conv 4x4 s2", "space_to_depth + conv 2x2") \
        else (250, 64, channels)
    inputs = keras.Input(in_shape)
    model = keras.Model(inputs, _op_layer(name, channels)(inputs))
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.random((batch, *in_shape)).astype("float32")
    y = rng.random((batch, *model.output_shape[1:])).astype("float32")
    return dict(kind="op", model=name, upsampling="", downsampling="", batch=batch,
                params=int(model.count_params()), jit_compile=bool(getattr(model, "jit_compile", False)),
                **_time_steps(model, x, y, warmup=2, steps=steps))


def run_worker(backend: str, args: list[str], timeout: float) -> dict | None:
    env = dict(os.environ, KERAS_BACKEND=backend.split("-")[0], TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("XLA_FLAGS", None)  # each JAX row gets exactly its own flags
    if backend == "jax-fastconv":
        from vqkeras.xla_flags import FAST_CPU_CONVOLUTIONS

        env["XLA_FLAGS"] = FAST_CPU_CONVOLUTIONS
    try:
        proc = subprocess.run([sys.executable, __file__, "--worker", *args], env=env, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        print(f"  worker failed ({backend} {args}): exit {proc.returncode}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_report(rows: list[dict], out: Path, load: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df["variant"] = np.where(df.kind == "model", df.upsampling + " / " + df.downsampling, "")
    df.to_csv(out / "training_throughput.csv", index=False)

    lines = ["| model | up / down | backend | batch | params | compile + 2 steps (s) | "
             "step wall (s) | step CPU (s) | steps/s | JAX/TF wall | JAX/TF CPU |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (kind, model, variant), group in df.groupby(["kind", "model", "variant"], sort=False):
        by_backend = {r.backend: r for r in group.itertuples()}
        tf = by_backend.get("tensorflow")
        for r in group.itertuples():
            ratio = " | "
            if tf is not None and not np.isnan(tf.step_wall_s) and not np.isnan(r.step_wall_s):
                ratio = f"{r.step_wall_s / tf.step_wall_s:.2f} | {r.step_cpu_s / tf.step_cpu_s:.2f}"
            if np.isnan(r.step_wall_s):
                lines.append(f"| {model} | {variant} | {r.backend} | | | > {r.first_steps_s:.0f} "
                             "(timed out) | | | | | |")
                continue
            lines.append(f"| {model} | {variant} | {r.backend} | {r.batch} | {r.params} | "
                         f"{r.first_steps_s:.1f} | {r.step_wall_s:.3f} | {r.step_cpu_s:.3f} | "
                         f"{r.steps_per_s:.2f} | {ratio if r.backend != 'tensorflow' else ' | '} |")

    models = df[(df.kind == "model") & df.step_wall_s.notna()]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels = [f"{m}\n{v.replace(' / ', chr(10))}"
              for m, v in dict.fromkeys(zip(models.model, models.variant))]
    pos = np.arange(len(labels))
    backends = list(dict.fromkeys(df.backend))
    width = 0.8 / len(backends)
    for j, backend in enumerate(backends):
        vals = []
        for m, v in dict.fromkeys(zip(models.model, models.variant)):
            sel = models[(models.model == m) & (models.variant == v) & (models.backend == backend)]
            # Per CPU-second: on a shared machine wall time measures the other jobs too.
            vals.append(1.0 / float(sel.step_cpu_s.iloc[0]) if len(sel) else 0.0)
        ax.bar(pos + (j - (len(backends) - 1) / 2) * width, vals, width=width, label=backend)
    ax.set_xticks(pos, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("training steps per CPU second (log)")
    ax.set_title(f"Training throughput on {os.cpu_count()} CPU cores (load {load[0]:.1f}-{load[1]:.1f})")
    ax.legend()
    ax.grid(True, axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "training_throughput.png", dpi=120)
    plt.close(fig)

    text = ["# Training throughput benchmark", "",
            f"{os.cpu_count()} CPU cores, no GPU; 1-minute load average {load[0]:.1f} at the start "
            f"and {load[1]:.1f} at the end (a shared machine: wall times are inflated; CPU is the "
            "process CPU time per step, all threads). "
            + ("`model.fit` over numpy arrays in memory (what `vqkeras train` runs)"
               if "loop" in df and (df.loop == "fit").any() else "`train_on_batch` on one batch")
            + " with Adam on random inputs; "
            "each (backend, model, variant) in its own process; steps/s after two warm-up steps "
            "(compilation). Variants are `upsampling / downsampling` "
            "(`vqkeras.experiments.models.blocks`). `jax-fastconv`: JAX with "
            "`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=individual_dot,eltwise,reduce` "
            "(`vqkeras.xla_flags`). Ratios are against TensorFlow's row. Op rows: one layer trained alone at the "
            "minimal model's decoder size (batch 8, 32 channels, 250x64 -> 500x128).", "",
            *lines, "", "![steps per second](training_throughput.png)", ""]
    (out / "training_throughput.md").write_text("\n".join(text))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--full-batch", type=int, default=2, help="batch size of thesis-full")
    parser.add_argument("--full-steps", type=int, default=2, help="timed steps of thesis-full")
    parser.add_argument("--ops", action="store_true", help="also profile single ops")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--loop", choices=["train_on_batch", "fit"], default="train_on_batch",
                        help="time train_on_batch calls on one batch, or model.fit over numpy data")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per (backend, model, variant) process")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        what = args.worker
        if what[0] == "op":
            row = worker_op(what[1], int(what[2]))
        else:
            row = worker_model(what[1], what[2], what[3], int(what[4]), int(what[5]), what[6])
        import keras

        row["backend"] = keras.backend.backend()
        print(json.dumps(row))
        return 0

    load_start = os.getloadavg()[0]
    jobs = []
    for model in args.models:
        steps = args.full_steps if model == "thesis-full" else args.steps
        jobs += [["model", model, up, down, str(steps), str(args.full_batch), args.loop]
                 for up, down in VARIANTS[model]]
    if args.ops:
        jobs += [["op", name, str(args.steps)] for name in OPS]
    rows = []
    for job in jobs:
        for backend in args.backends:  # interleaved, so all backends see similar load
            start = time.perf_counter()
            row = run_worker(backend, job, args.timeout)
            if row is not None:
                row["backend"] = backend  # the worker only knows Keras's name ("jax")
            if row is None:
                row = dict(kind=job[0], model=job[1], upsampling=job[2] if job[0] == "model" else "",
                           downsampling=job[3] if job[0] == "model" else "", batch=0, params=0,
                           jit_compile=False, first_steps_s=time.perf_counter() - start,
                           step_wall_s=float("nan"), step_cpu_s=float("nan"),
                           steps_per_s=float("nan"), backend=backend)
            rows.append(row)
            print(f"  {backend:<10} {' '.join(job[1:4]):<55} step {row['step_wall_s']:.3f} s wall, "
                  f"{row['step_cpu_s']:.3f} s CPU  load {os.getloadavg()[0]:.1f}",
                  file=sys.stderr, flush=True)
    write_report(rows, args.out, (load_start, os.getloadavg()[0]))
    print(args.out / "training_throughput.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
