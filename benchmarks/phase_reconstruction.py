"""Benchmark: phase reconstruction quality vs wall time on rendered notes.

Renders `--num-notes` 4-s, 16 kHz notes from the default soundfont, takes their
STFT magnitude (frame 1024, hop 256, Hann, centred) and recovers waveforms with

- vqkeras `invert_magnitude` (gradient inversion, Griffin-Lim start) on JAX,
- the same on TensorFlow (this script again, in a subprocess),
- vqkeras `griffin_lim` (fast Griffin-Lim, compiled) on JAX,
- `librosa.griffinlim(momentum=0.99)` (numpy),

all on the same batch, for several iteration counts. Quality is the mean
spectral convergence (dB, lower is better) between the target magnitude and
the STFT magnitude of the recovered audio. Wall time is the steady-state time
of one batched call (the first call, which compiles, is timed separately).

Writes ``phase_reconstruction.{md,csv,png}`` under ``--out``.

    KERAS_BACKEND=jax python benchmarks/phase_reconstruction.py --num-notes 32
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

import numpy as np

try:  # run from a checkout without `pip install -e .`
    import vqkeras  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME, HOP, SAMPLE_RATE = 1024, 256, 16000
# Kept short so the default run (32 notes, both backends) stays around 5 minutes on 2 cores.
GI_ITERS = (10, 25, 50, 100)
GL_ITERS = (16, 32, 64, 128)
LIBROSA_ITERS = (16, 32, 64, 128)


def render_notes(num_notes: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Render `num_notes` 4-s notes: spread over GM programs, pitches 40..84, several velocities."""
    from vqkeras.data.render import default_soundfont, render_note

    soundfont = default_soundfont()
    rng = np.random.default_rng(seed)
    # Melodic GM programs (0-103), skipping sound effects and percussion-like ones.
    programs = rng.permutation(104)[:num_notes]
    specs = [(int(p), int(rng.integers(40, 85)), int(rng.choice([50, 75, 100, 127])))
             for p in programs]
    waves = [render_note(soundfont, p, k, v, sample_rate=SAMPLE_RATE) for p, k, v in specs]
    return np.stack(waves).astype("float32"), specs


def _sc(target: np.ndarray, waves: np.ndarray) -> np.ndarray:
    from vqkeras.metrics import spectral_convergence_db, stft_magnitude

    return spectral_convergence_db(target, stft_magnitude(waves, FRAME, HOP))


def _time(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _measure(method: str, backend: str, iters, run, target) -> list[dict]:
    rows = []
    for n in iters:
        compile_s, _ = _time(lambda: run(n))  # first call compiles (or warms caches)
        wall_s, waves = _time(lambda: run(n))
        sc = _sc(target, waves)
        rows.append(dict(method=method, backend=backend, iterations=n, wall_s=wall_s,
                         first_call_s=compile_s, sc_db_mean=float(sc.mean()),
                         sc_db_std=float(sc.std())))
        print(f"  {method:<22} {backend:<10} iters={n:<4} wall={wall_s:7.2f}s "
              f"SC={sc.mean():6.2f} dB", file=sys.stderr, flush=True)
    return rows


def run_keras_methods(target: np.ndarray, backend: str, with_griffin_lim: bool) -> list[dict]:
    """Our methods on the active Keras backend."""
    from vqkeras.phase import griffin_lim, invert_magnitude

    kw = dict(frame_length=FRAME, frame_step=HOP)
    rows = _measure("vqkeras invert_magnitude", backend, GI_ITERS,
                    lambda n: invert_magnitude(target, n_iter=n, init_iter=16, **kw), target)
    if with_griffin_lim:
        rows += _measure("vqkeras griffin_lim", backend, GL_ITERS,
                         lambda n: griffin_lim(target, n_iter=n, **kw), target)
    return rows


def run_librosa(target: np.ndarray) -> list[dict]:
    import librosa

    spec = np.swapaxes(target, 1, 2)  # librosa is frequency-first

    def run(n):
        return librosa.griffinlim(spec, n_iter=n, hop_length=HOP, n_fft=FRAME, momentum=0.99,
                                  init="random", random_state=0, center=True,
                                  pad_mode="reflect", length=(target.shape[1] - 1) * HOP)

    run(1)  # warm up librosa's lazy imports and FFT caches
    rows = []
    for n in LIBROSA_ITERS:  # numpy: nothing to compile, so time a single call
        wall_s, waves = _time(lambda: run(n))
        sc = _sc(target, waves)
        rows.append(dict(method="librosa griffinlim", backend="numpy", iterations=n,
                         wall_s=wall_s, first_call_s=wall_s, sc_db_mean=float(sc.mean()),
                         sc_db_std=float(sc.std())))
        print(f"  {'librosa griffinlim':<22} {'numpy':<10} iters={n:<4} wall={wall_s:7.2f}s "
              f"SC={sc.mean():6.2f} dB", file=sys.stderr, flush=True)
    return rows


def run_other_backend(target: np.ndarray, backend: str) -> list[dict]:
    """Run this script on `backend` in a subprocess (a Keras backend is fixed per process)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "target.npy"
        np.save(path, target)
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, __file__, "--backend", backend, "--json", "--magnitudes", str(path)],
            env=env, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def equal_time_comparison(df) -> list[str]:
    """For each librosa point, our gradient inversion's SC at the same wall time (interpolated)."""
    ours = df[(df.method == "vqkeras invert_magnitude") & (df.backend == "jax")].sort_values("wall_s")
    lines = []
    for _, row in df[df.method == "librosa griffinlim"].sort_values("wall_s").iterrows():
        if row.wall_s < ours.wall_s.min():
            lines.append(f"| {row.iterations} | {row.wall_s:.2f} | {row.sc_db_mean:.2f} | "
                         f"(faster than our shortest run) | |")
            continue
        if row.wall_s > ours.wall_s.max():
            lines.append(f"| {row.iterations} | {row.wall_s:.2f} | {row.sc_db_mean:.2f} | "
                         f"(longer than our longest run, {ours.sc_db_mean.iloc[-1]:.2f} dB "
                         f"in {ours.wall_s.iloc[-1]:.2f} s) | |")
            continue
        ours_sc = float(np.interp(np.log(row.wall_s), np.log(ours.wall_s), ours.sc_db_mean))
        lines.append(f"| {row.iterations} | {row.wall_s:.2f} | {row.sc_db_mean:.2f} | "
                     f"{ours_sc:.2f} | {row.sc_db_mean - ours_sc:+.2f} |")
    return lines


def write_report(rows: list[dict], out: Path, num_notes: int, specs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df["label"] = df.method + " (" + df.backend + ")"
    df.to_csv(out / "phase_reconstruction.csv", index=False)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sns.lineplot(data=df, x="wall_s", y="sc_db_mean", hue="label", marker="o", ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel(f"wall time for {num_notes} 4-s notes (s, log scale)")
    ax.set_ylabel("spectral convergence (dB, lower is better)")
    ax.set_title(f"Phase reconstruction, STFT {FRAME}/{HOP}, {os.cpu_count()} CPU cores")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "phase_reconstruction.png", dpi=120)
    plt.close(fig)

    table = ["| method | backend | iterations | wall time (s) | first call (s) | SC mean (dB) | SC std (dB) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for _, r in df.iterrows():
        table.append(f"| {r.method} | {r.backend} | {r.iterations} | {r.wall_s:.2f} | "
                     f"{r.first_call_s:.2f} | {r.sc_db_mean:.2f} | {r.sc_db_std:.2f} |")
    text = [
        "# Phase reconstruction benchmark",
        "",
        f"{num_notes} rendered 4-s notes at {SAMPLE_RATE} Hz (default soundfont), STFT frame "
        f"{FRAME}, hop {HOP}, Hann, centred; one batched call per row; {os.cpu_count()} CPU cores. "
        "SC = spectral convergence between the target magnitude and the STFT magnitude of the "
        "recovered audio, mean over notes (lower is better). Wall time is the second call "
        "(the first compiles). `invert_magnitude` iterations are Adam steps after a 16-iteration "
        "Griffin-Lim start.",
        "",
        *table,
        "",
        "## At equal wall time: librosa fast Griffin-Lim vs vqkeras invert_magnitude (JAX)",
        "",
        "| librosa iterations | wall time (s) | librosa SC (dB) | ours at that time (dB) | ours better by (dB) |",
        "|---:|---:|---:|---:|---:|",
        *equal_time_comparison(df),
        "",
        "![SC vs wall time](phase_reconstruction.png)",
        "",
        "Notes (program, pitch, velocity): " + ", ".join(f"{p}/{k}/{v}" for p, k, v in specs),
        "",
    ]
    (out / "phase_reconstruction.md").write_text("\n".join(text))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-notes", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=["jax", "tensorflow"],
                        default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument("--skip-other-backend", action="store_true",
                        help="do not run the other Keras backend in a subprocess")
    parser.add_argument("--json", action="store_true",
                        help="worker mode: print the rows of this backend as JSON and exit")
    parser.add_argument("--magnitudes", type=Path, help="(worker mode) .npy of target magnitudes")
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend  # before anything imports keras

    if args.json:
        target = np.load(args.magnitudes)
        rows = run_keras_methods(target, args.backend, with_griffin_lim=False)
        print(json.dumps(rows))
        return 0

    from vqkeras.metrics import stft_magnitude

    waves, specs = render_notes(args.num_notes, args.seed)
    target = stft_magnitude(waves, FRAME, HOP)
    print(f"{len(waves)} notes, magnitude {target.shape}; backend {args.backend}",
          file=sys.stderr)
    rows = run_keras_methods(target, args.backend, with_griffin_lim=True)
    rows += run_librosa(target)
    other = "tensorflow" if args.backend == "jax" else "jax"
    if not args.skip_other_backend:
        rows += run_other_backend(target, other)
    write_report(rows, args.out, len(waves), specs)
    print(args.out / "phase_reconstruction.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
