"""Benchmark: training and phase reconstruction on a GPU (JAX), against librosa on the CPU.

Two steps, so that the GPU machine only runs what needs it:

``run`` (on the GPU machine, ``KERAS_BACKEND=jax``) measures

- **training**: the models of ``training_throughput.py`` (thesis-minimal,
  thesis-full, keras-io; the thesis's strided / transposed convolutions and
  the CPU-friendly space-to-depth / sub-pixel variant) at their CPU batch
  size and at a larger one. Each is timed twice: ``train_on_batch`` on a batch
  already on the GPU (the model alone), and ``model.fit`` on numpy images in
  host memory (what ``vqkeras train`` does: Keras's array adapter copies each
  batch to the GPU). The inputs are real: spectrogram images of rendered notes
  (the experiments' own front end) and Fashion-MNIST digits. A thread samples
  the GPU's utilisation and memory with NVML every 20 ms; fit's steps/s close
  to the resident steps/s, with the GPU as busy, means the input pipeline does
  not starve it.
- **phase reconstruction**: `invert_magnitude` (PGHI start, Adam) and
  `griffin_lim` (PGHI and random starts) on the GPU for 32 notes and for
  256 (the 32 tiled), and ``librosa.griffinlim(momentum=0.99)`` on the CPU:
  in one process (batched numpy) and split over every core with a process
  pool. Throughput is clips per second of a warm call (the first call, which
  compiles, is timed apart); quality is the mean spectral convergence.
  PGHI runs on the CPU (numba) and is timed alone too.

Rows are appended to ``gpu_rows.jsonl`` as they come, so a run cut short
keeps what it measured; the first 8 notes of each reconstruction go to
``gpu_waves.npz``.

``report`` (anywhere) adds ViSQOL for those reconstructions (visqol-python)
and writes ``gpu.md``, ``gpu.csv`` and ``gpu.png``.

    KERAS_BACKEND=jax python benchmarks/gpu.py run --notes notes.npy --fmnist fmnist.npy --out DIR
    python benchmarks/gpu.py report --results DIR --out reports/benchmarks

``--quick`` shrinks everything for a dry run on a CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
try:  # run from a checkout without `pip install -e .`
    import vqkeras  # noqa: F401
except ImportError:
    sys.path.insert(0, str(BENCH.parent))

FRAME, HOP = 1024, 256
ROWS, WAVES = "gpu_rows.jsonl", "gpu_waves.npz"
KEEP_NOTES = 8  # reconstructions kept for ViSQOL
# (model, upsampling, downsampling, batch), most wanted first (a time budget may cut the
# tail): the thesis's layers at the CPU benchmark's batches, the CPU-friendly variant,
# then larger batches.
TRAIN_JOBS = (
    ("thesis-minimal", "transpose", "strided", 16),
    ("keras-io", "transpose", "strided", 128),
    ("thesis-full", "transpose", "strided", 16),
    ("thesis-minimal", "subpixel", "space_to_depth", 16),
    ("keras-io", "subpixel", "space_to_depth", 128),
    ("thesis-full", "subpixel", "space_to_depth", 2),
    ("thesis-full", "transpose", "strided", 2),
    ("thesis-minimal", "transpose", "strided", 128),
    ("keras-io", "transpose", "strided", 1024),
)

class GpuSampler:
    """Samples GPU utilisation (%) and memory used (MiB) with NVML in a thread.

    Without NVML (no GPU, or the library missing) every reading is NaN.
    """

    def __init__(self, period_s: float = 0.02):
        self.period_s = period_s
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # noqa: BLE001  (no GPU here: readings are NaN)
            self._nvml = None
        self._samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> tuple[float, float]:
        util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
        mem = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        return float(util.gpu), mem.used / 2**20

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._samples.append(self._read())
            time.sleep(self.period_s)

    def __enter__(self) -> GpuSampler:
        self._samples = []
        self._stop.clear()
        if self._handle is not None:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict:
        if not self._samples:
            return dict(gpu_util_pct=float("nan"), gpu_mem_peak_mib=float("nan"), samples=0)
        util, mem = np.array(self._samples).T
        return dict(gpu_util_pct=float(util.mean()), gpu_mem_peak_mib=float(mem.max()),
                    samples=len(util))

    def name(self) -> str:
        if self._handle is None:
            return "none"
        name = self._nvml.nvmlDeviceGetName(self._handle)
        return name.decode() if isinstance(name, bytes) else str(name)


class Results:
    """Appends result rows to ``gpu_rows.jsonl`` and keeps reconstructions for ViSQOL."""

    def __init__(self, out: Path):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.path = out / ROWS
        self.path.write_text("")
        self.waves: dict[str, np.ndarray] = {}

    def add(self, row: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print("  ", shown, flush=True)

    def keep(self, key: str, waves: np.ndarray) -> None:
        self.waves[key] = np.asarray(waves[:KEEP_NOTES], dtype="float16")
        np.savez(self.out / WAVES, **self.waves)


# ---------------------------------------------------------------- environment

def environment(sampler: GpuSampler) -> dict:
    import jax
    import keras

    info = dict(kind="env", gpu=sampler.name(), jax=jax.__version__, keras=keras.__version__,
                python=platform.python_version(), cpu_count=os.cpu_count(),
                devices=[str(d) for d in jax.devices()], platform=jax.devices()[0].platform)
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        info["nvidia_smi"] = ""
    return info


# ---------------------------------------------------------------- training

def training_images(model_name: str, notes: np.ndarray, fmnist: np.ndarray) -> np.ndarray:
    """Real inputs of the model's shape: spectrogram images of the notes, or the digits."""
    if model_name == "keras-io":
        return (fmnist.astype("float32") / 255.0)[..., None]
    from vqkeras.experiments.config import load_config
    from vqkeras.features import SpectrogramConfig, waveform_to_image

    experiment = "nsynth-minimal.yaml" if model_name == "thesis-minimal" else "nsynth-full.yaml"
    config = load_config(BENCH.parent / "experiments" / experiment)
    spec = SpectrogramConfig(**{k: getattr(config.spectrogram, k)
                                for k in config.spectrogram.__dataclass_fields__})
    samples = int(round(spec.duration * spec.sample_rate))
    waves = np.zeros((len(notes), samples), "float32")
    waves[:, :min(samples, notes.shape[1])] = notes[:, :samples]
    return waveform_to_image(waves, spec, time_multiple=config.model.time_stride,
                             freq_multiple=config.model.freq_stride)


def _tiled(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    index = np.random.default_rng(seed).integers(0, len(images), count)
    return images[index]


def time_training(job: tuple, images: np.ndarray, steps: int, fit_seconds: float,
                  sampler: GpuSampler, host_budget_bytes: int) -> dict:
    """Resident ``train_on_batch`` steps/s, then ``fit`` on host numpy, with GPU readings."""
    import jax
    import keras

    import training_throughput as tt

    model_name, up, down, batch = job
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model, shape, _ = tt.build(model_name, up, down, full_batch=batch)
    x = _tiled(images, batch, seed=1)
    assert x.shape[1:] == tuple(shape), (x.shape, shape)
    x_dev = jax.device_put(x)

    start = time.perf_counter()
    for _ in range(2):  # compiles the train step
        model.train_on_batch(x_dev, x_dev)
    compile_s = time.perf_counter() - start
    with sampler:
        start = time.perf_counter()
        for _ in range(steps):
            logs = model.train_on_batch(x_dev, x_dev)  # returns numpy: synchronises
        resident_s = (time.perf_counter() - start) / steps
    resident = sampler.summary()

    # fit: enough host data for >= fit_seconds, within the host-memory budget.
    per_step_bytes = x.nbytes
    steps_per_epoch = max(4, min(int(math.ceil(fit_seconds / resident_s)),
                                 host_budget_bytes // per_step_bytes))
    epochs = max(1, int(math.ceil(fit_seconds / (resident_s * steps_per_epoch))))
    data = _tiled(images, batch * steps_per_epoch, seed=2)
    model.fit(data[:batch * 2], data[:batch * 2], batch_size=batch, epochs=1, verbose=0,
              shuffle=False)  # warm the fit path (same train step)
    with sampler:
        start = time.perf_counter()
        model.fit(data, data, batch_size=batch, epochs=epochs, verbose=0, shuffle=False)
        fit_s = (time.perf_counter() - start) / (epochs * steps_per_epoch)
    fitted = sampler.summary()
    return dict(kind="train", model=model_name, upsampling=up, downsampling=down, batch=batch,
                params=int(model.count_params()), compile_2_steps_s=compile_s,
                resident_step_s=resident_s, resident_steps_per_s=1.0 / resident_s,
                resident_gpu_util_pct=resident["gpu_util_pct"],
                fit_step_s=fit_s, fit_steps_per_s=1.0 / fit_s, fit_examples_per_s=batch / fit_s,
                fit_gpu_util_pct=fitted["gpu_util_pct"],
                fit_steps=epochs * steps_per_epoch, loss=float(np.asarray(logs).ravel()[0])
                if not isinstance(logs, dict) else float(next(iter(logs.values()))))


# ---------------------------------------------------------------- phase reconstruction

def _librosa_chunk(args: tuple) -> np.ndarray:
    target, n_iter, length = args
    import librosa

    return librosa.griffinlim(np.swapaxes(target, 1, 2), n_iter=n_iter, hop_length=HOP, n_fft=FRAME,
                              momentum=0.99, init="random", random_state=0, center=True,
                              pad_mode="reflect", length=length)


def phase_methods(target: np.ndarray, workers: int, pool) -> dict:
    """Name -> (device, run(n_iter) -> waves) on the active backend, librosa and PGHI."""
    from vqkeras.phase import griffin_lim, invert_magnitude, pghi_phase

    kw = dict(frame_length=FRAME, frame_step=HOP)
    length = (target.shape[1] - 1) * HOP

    def librosa_pool(n):
        chunks = np.array_split(np.arange(len(target)), workers)
        parts = pool.map(_librosa_chunk, [(target[c], n, length) for c in chunks if len(c)])
        return np.concatenate(list(parts))

    return {
        "invert_magnitude (PGHI start, default)":
            ("gpu", lambda n: invert_magnitude(target, n_iter=n, **kw)),
        "griffin_lim (PGHI start)": ("gpu", lambda n: griffin_lim(target, n_iter=n, init="pghi", **kw)),
        "griffin_lim (random start)": ("gpu", lambda n: griffin_lim(target, n_iter=n, **kw)),
        "PGHI only (numba, CPU)": ("cpu", lambda n: pghi_phase(target, **kw)),
        "librosa griffinlim (1 process)": ("cpu", lambda n: _librosa_chunk((target, n, length))),
        f"librosa griffinlim ({workers} processes)": ("cpu", librosa_pool),
    }


def time_phase(results: Results, notes: np.ndarray, batches: tuple[int, ...], iters: dict,
               sampler: GpuSampler, workers: int) -> None:
    from concurrent.futures import ProcessPoolExecutor

    from vqkeras.metrics import spectral_convergence_db, stft_magnitude

    import multiprocessing as mp

    base = stft_magnitude(notes, FRAME, HOP)
    # "spawn": the workers must not inherit the parent's GPU context.
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_librosa_chunk, [(base[:1], 1, (base.shape[1] - 1) * HOP)] * workers))  # import
        for batch in batches:
            target = np.concatenate([base] * math.ceil(batch / len(base)))[:batch]
            for method, (device, run) in phase_methods(target, workers, pool).items():
                counts = iters.get(method, {}).get(batch, ())
                for n in counts:
                    first_s = float("nan")
                    if device == "gpu":  # the first call compiles
                        start = time.perf_counter()
                        run(n)
                        first_s = time.perf_counter() - start
                    with sampler:
                        start = time.perf_counter()
                        out = run(n)
                        wall_s = time.perf_counter() - start
                    if method.startswith("PGHI"):
                        sc = float("nan")
                    else:
                        sc = float(np.mean(spectral_convergence_db(target, stft_magnitude(out, FRAME, HOP))))
                        if batch == batches[0]:
                            results.keep(f"{method}|{n}", out)
                    results.add(dict(kind="phase", method=method, device=device, batch=batch,
                                     iterations=n, first_call_s=first_s, wall_s=wall_s,
                                     clips_per_s=batch / wall_s, sc_db=sc,
                                     gpu_util_pct=sampler.summary()["gpu_util_pct"]))


# ---------------------------------------------------------------- run / report

def run(args) -> int:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # memory readings mean use
    os.environ.setdefault("VQKERAS_CACHE_DIR", "off")  # plain jax.jit: nothing saved or loaded
    sampler = GpuSampler()
    env = environment(sampler)
    if env["platform"] != "gpu" and not args.quick:
        print("no GPU visible to JAX: use --quick for a CPU dry run", file=sys.stderr)
        return 1
    results = Results(args.out)
    results.add(env)
    notes = np.load(args.notes).astype("float32")
    start = time.perf_counter()

    workers = 2 if args.quick else (os.cpu_count() or 1)
    if args.quick:
        batches, iters = (4,), {
            "invert_magnitude (PGHI start, default)": {4: (5,)}, "griffin_lim (PGHI start)": {4: (4,)},
            "griffin_lim (random start)": {4: (4,)}, "PGHI only (numba, CPU)": {4: (0,)},
            "librosa griffinlim (1 process)": {4: (4,)}, "librosa griffinlim (2 processes)": {4: (4,)}}
        notes = notes[:4]
    else:
        batches = (32, 256)
        iters = {"invert_magnitude (PGHI start, default)": {32: (100, 200), 256: (100,)},
                 "griffin_lim (PGHI start)": {32: (32, 64), 256: (32,)},
                 "griffin_lim (random start)": {32: (128,), 256: (128,)},
                 "PGHI only (numba, CPU)": {32: (0,), 256: (0,)},
                 "librosa griffinlim (1 process)": {32: (32,)},
                 f"librosa griffinlim ({workers} processes)": {32: (32, 64), 256: (32,)}}
    print("phase reconstruction", flush=True)
    try:
        time_phase(results, notes, batches, iters, sampler, workers)
    except Exception as err:  # noqa: BLE001  (keep the training part)
        results.add(dict(kind="error", section="phase", error=repr(err)))

    print("training", flush=True)
    jobs = () if args.skip_training else TRAIN_JOBS[:2] if args.quick else TRAIN_JOBS
    for job in jobs:
        if time.perf_counter() - start > args.budget_s:
            results.add(dict(kind="skipped", model=job[0], batch=job[3], why="time budget"))
            continue
        # One process per model: clean GPU-memory readings, and a failure stays local.
        command = [sys.executable, __file__, "train-job", "--notes", str(args.notes), "--fmnist",
                   str(args.fmnist), "--job", *map(str, job)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode == 0 and lines:
            results.add(json.loads(lines[-1]))
        else:
            results.add(dict(kind="error", section="train", model=job[0], batch=job[3],
                             error=f"exit {proc.returncode}"))
    print(f"done in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


# Packages a bare GPU image (JAX, numba, scipy, pandas... but no Keras or librosa) lacks.
WHEELS = ("keras==3.15.1 namex==0.1.0 optree==0.20.0 librosa==0.11.0 soxr==1.1.0 audioread==3.1.0 "
          "pooch==1.9.0 platformdirs==4.14.8 decorator==5.3.1 soundfile==0.14.0 cffi==2.1.1 "
          "pycparser==3.12 constriction==0.5.0")


def prepare(args) -> int:
    """Write the inputs a GPU machine without the data sets needs, into one folder."""
    import shutil

    from phase_reconstruction import render_notes

    from vqkeras.data.mnist import load_mnist

    out = args.out
    (out / "clips").mkdir(parents=True, exist_ok=True)
    waves, _ = render_notes(32, 0)  # phase_reconstruction.py's 32 notes
    np.save(out / "notes.npy", waves.astype("float32"))
    np.save(out / "fmnist.npy", np.asarray(load_mnist(args.fmnist_root, "train")[0][:2048]))
    clips = sorted((BENCH.parent / "data" / "nsynth-rendered" / "nsynth-test" / "audio").glob("*.wav"))
    for clip in clips[:8]:  # cli_startup.py's default notes
        shutil.copy(clip, out / "clips" / clip.name)
    print(f"wrote {out}/notes.npy, fmnist.npy, clips/ ({len(clips[:8])} WAVs). Wheels for the GPU "
          f"image's Python 3.12:\n  python -m pip download --no-deps --only-binary=:all: "
          f"--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 "
          f"--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d {out}/whl {WHEELS}")
    return 0


def train_job(args) -> int:
    """One training measurement (a subprocess of `run`); prints its row as JSON."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    model_name, up, down, batch = args.job[0], args.job[1], args.job[2], int(args.job[3])
    notes = np.load(args.notes).astype("float32")
    images = training_images(model_name, notes[:4] if args.quick else notes, np.load(args.fmnist))
    steps = 2 if args.quick else (10 if model_name == "thesis-full" else 30)
    row = time_training((model_name, up, down, batch), images, steps, 0.2 if args.quick else 2.0,
                        GpuSampler(), host_budget_bytes=1 << 30)
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    row["jax_peak_mib"] = stats.get("peak_bytes_in_use", float("nan")) / 2**20
    print(json.dumps(row), flush=True)
    return 0


def _visqol(results_dir: Path, notes: np.ndarray) -> dict:
    path = results_dir / WAVES
    if not path.is_file():
        return {}
    from rate_distortion import Visqol

    visqol = Visqol()
    scores = {}
    with np.load(path) as saved:
        for key in saved.files:
            est = saved[key].astype("float32")
            ref = notes[: len(est)]
            scores[key] = float(np.mean([visqol(r, e[: len(r)]) for r, e in zip(ref, est)]))
            print(f"  ViSQOL {key}: {scores[key]:.3f}", file=sys.stderr, flush=True)
    return scores


def report(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    # Several runs: each kind of row (and the reconstructions) comes from the last run that has it.
    runs = [[json.loads(line) for line in (folder / ROWS).read_text().splitlines() if line]
            for folder in args.results]
    env = next((r for r in runs[0] if r["kind"] == "env"), {})
    picked = {}
    for folder, rows in zip(args.results, runs):
        for kind in ("train", "phase"):
            if any(r["kind"] == kind for r in rows):
                picked[kind] = (folder, [r for r in rows if r["kind"] == kind])
    notes = np.load(args.notes).astype("float32")
    scores = {} if args.no_visqol or "phase" not in picked else _visqol(picked["phase"][0], notes)
    args.out.mkdir(parents=True, exist_ok=True)
    train = pd.DataFrame(picked.get("train", (None, []))[1])
    phase = pd.DataFrame(picked.get("phase", (None, []))[1])
    problems = [r for rows in runs for r in rows if r["kind"] in ("error", "skipped")]
    if len(phase):
        phase["visqol"] = [scores.get(f"{m}|{n}", float("nan")) if b == phase.batch.min() else float("nan")
                           for m, n, b in zip(phase.method, phase.iterations, phase.batch)]
    pd.concat([train.assign(kind="train"), phase.assign(kind="phase")]).to_csv(
        args.out / "gpu.csv", index=False)

    lines = ["# GPU benchmark", "",
             f"GPU: {env.get('nvidia_smi') or env.get('gpu')}; JAX {env.get('jax')}, Keras "
             f"{env.get('keras')}, Python {env.get('python')}, {env.get('cpu_count')} CPU cores "
             "(librosa and PGHI run on them). Results of `benchmarks/gpu.py run` "
             f"({', '.join(f'`{k}`: {v[0].name}' for k, v in picked.items())}); ViSQOL computed "
             "afterwards (`report`) on the first 8 notes of each batch-32 reconstruction.", ""]
    if len(train):
        lines += ["## Training (JAX on the GPU)", "",
                  "`train_on_batch`: a batch already on the GPU, one call per step (each call "
                  "waits for its step and returns the loss to the host, so it is slower than `fit`, "
                  "which queues steps). `fit`: `model.fit` on numpy images in host memory (the "
                  "experiments' path: each batch is copied to the GPU). GPU busy: mean NVML "
                  "utilisation (share of time a kernel ran) while timing.", "",
                  "| model | up / down | batch | params | compile + 2 steps (s) | train_on_batch steps/s | "
                  "GPU busy | fit steps/s | fit examples/s | GPU busy (fit) | JAX peak memory (MiB) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in train.itertuples():
            lines.append(f"| {r.model} | {r.upsampling} / {r.downsampling} | {r.batch} | {r.params} | "
                         f"{r.compile_2_steps_s:.1f} | {r.resident_steps_per_s:.1f} | "
                         f"{r.resident_gpu_util_pct:.0f} % | {r.fit_steps_per_s:.1f} | "
                         f"{r.fit_examples_per_s:.0f} | {r.fit_gpu_util_pct:.0f} % | "
                         f"{r.jax_peak_mib:.0f} |")
        lines.append("")
    if len(phase):
        lines += ["## Phase reconstruction (4-s notes, STFT 1024/256)", "",
                  "Warm call; clips/s = batch / wall seconds. SC: mean spectral convergence "
                  "(lower is better). ViSQOL: first 8 notes, batch 32 only.", "",
                  "| method | device | batch | iterations | first call (s) | wall (s) | clips/s | "
                  "SC (dB) | ViSQOL |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in phase.itertuples():
            lines.append(f"| {r.method} | {r.device} | {r.batch} | {r.iterations} | "
                         f"{r.first_call_s:.2f} | {r.wall_s:.3f} | {r.clips_per_s:.1f} | "
                         f"{r.sc_db:.2f} | {r.visqol:.3f} |".replace("nan", "-"))
        lines.append("")
    if problems:
        lines += ["## Not measured", ""] + [f"- {json.dumps(p)}" for p in problems] + [""]
    lines += ["![GPU benchmark](gpu.png)", ""]
    (args.out / "gpu.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, 2, figsize=(15, 5.2))
    if len(train):
        labels = [f"{r.model}\n{r.upsampling}\nbatch {r.batch}" for r in train.itertuples()]
        pos = np.arange(len(train))
        axes[0].bar(pos - 0.2, train.batch * train.resident_steps_per_s, 0.4, label="train_on_batch, batch on the GPU")
        axes[0].bar(pos + 0.2, train.fit_examples_per_s, 0.4, label="model.fit from host numpy")
        for p, (util, ex) in enumerate(zip(train.fit_gpu_util_pct, train.fit_examples_per_s)):
            axes[0].annotate(f"{util:.0f}%", (p + 0.2, ex), ha="center", va="bottom", fontsize=7)
        axes[0].set_xticks(pos, labels, fontsize=6)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("training examples per second (log)")
        axes[0].set_title("Training on the GPU (labels: GPU busy during fit)")
        axes[0].legend(fontsize=8)
    if len(phase):
        quality = phase[phase.sc_db.notna()]
        for (method, batch), group in quality.groupby(["method", "batch"], sort=False):
            group = group.sort_values("clips_per_s")
            marker = "o" if batch == quality.batch.min() else "s"
            axes[1].plot(group.clips_per_s, group.sc_db, marker=marker, label=f"{method}, batch {batch}")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("clips per second (log)")
        axes[1].set_ylabel("spectral convergence (dB, lower is better)")
        axes[1].set_title("Phase reconstruction: quality against throughput")
        axes[1].legend(fontsize=6)
        axes[1].grid(True, alpha=0.3)
    fig.suptitle(f"{env.get('gpu', 'GPU')}, JAX {env.get('jax')}")
    fig.tight_layout()
    fig.savefig(args.out / "gpu.png", dpi=120)
    plt.close(fig)
    print(args.out / "gpu.md")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_prep = sub.add_parser("prepare", help="write the inputs (notes, digits, clips) into a folder")
    p_prep.add_argument("--out", type=Path, required=True)
    p_prep.add_argument("--fmnist-root", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p_run = sub.add_parser("run", help="measure (on the GPU machine)")
    p_run.add_argument("--notes", type=Path, required=True,
                       help=".npy of 4-s 16-kHz notes (phase_reconstruction.render_notes(32, 0))")
    p_run.add_argument("--fmnist", type=Path, required=True, help=".npy of 28x28 uint8 digits")
    p_run.add_argument("--out", type=Path, required=True)
    p_run.add_argument("--budget-s", type=float, default=360.0,
                       help="start no training model after this many seconds")
    p_run.add_argument("--quick", action="store_true", help="tiny sizes: a dry run on a CPU")
    p_run.add_argument("--skip-training", action="store_true", help="phase reconstruction only")
    p_job = sub.add_parser("train-job", help=argparse.SUPPRESS)
    p_job.add_argument("--notes", type=Path, required=True)
    p_job.add_argument("--fmnist", type=Path, required=True)
    p_job.add_argument("--job", nargs=4, required=True)
    p_job.add_argument("--quick", action="store_true")
    p_rep = sub.add_parser("report", help="ViSQOL, table and plot from a run's results")
    p_rep.add_argument("--results", type=Path, nargs="+", required=True,
                       help="run folders; each kind of row comes from the last one that has it")
    p_rep.add_argument("--notes", type=Path, required=True)
    p_rep.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    p_rep.add_argument("--no-visqol", action="store_true")
    args = parser.parse_args(argv)
    # Bad paths: one line before anything is measured or written.
    for name in ("notes", "fmnist"):
        path = getattr(args, name, None)
        if path is not None and not path.is_file():
            parser.error(f"--{name} {path}: file not found")
    for folder in getattr(args, "results", None) or ():
        if not (folder / ROWS).is_file():
            parser.error(f"--results {folder}: no {ROWS} in it (the output of `gpu.py run`)")
    out = getattr(args, "out", None)  # train-job writes no files
    if out is not None and out.exists() and not out.is_dir():
        parser.error(f"--out {out}: is a file, not a folder")
    return {"prepare": prepare, "run": run, "train-job": train_job, "report": report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
