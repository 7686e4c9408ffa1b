"""Benchmark: phase reconstruction quality vs time on rendered notes.

Renders `--num-notes` 4-s, 16 kHz notes from the default soundfont, takes their
STFT magnitude (frame 1024, hop 256, Hann, centred) and recovers waveforms with

- `librosa.griffinlim(momentum=0.99)` (numpy, random start): the baseline,
- vqkeras `invert_magnitude` with its default start (PGHI, then Adam) on JAX,
- vqkeras `invert_magnitude` from 16 fast Griffin-Lim iterations (the previous default),
- vqkeras `griffin_lim` (fast Griffin-Lim, compiled) from random phase and from PGHI,
- PGHI alone (`pghi_phase`, no iterations),
- `invert_magnitude` (default) on TensorFlow (this script again, in a subprocess),

all on the same batch, for several iteration counts. The methods run
interleaved (the i-th point of every method, then the (i+1)-th), so a change of
load on a shared machine hits all of them alike; each point records wall time
and process CPU time. Quality is the mean spectral convergence (dB, lower is
better) between the target magnitude and the STFT magnitude of the recovered
audio, and ViSQOL (audio mode, 48 kHz) for the points nearest the 5-s and 10-s
budgets (CPU time; on the first ``--visqol-notes`` notes). Wall time is the
steady-state time of one batched call (the first call, which compiles, is
timed separately).

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
BUDGETS_S = (5.0, 10.0)  # the equal-time comparison points (wall seconds for the batch)
BASELINE = "librosa griffinlim"
OURS = "invert_magnitude (PGHI start, default)"
# Iteration counts per method, chosen so every curve spans the 5-10 s budgets for 32 notes.
HYBRID = "invert_magnitude (PGHI + 16 GL start)"
ITERS = {
    BASELINE: (16, 32, 64, 128),
    OURS: (10, 25, 50, 100, 150),
    HYBRID: (25, 50, 100),
    "invert_magnitude (GL16 start, previous default)": (25, 50, 100),
    "griffin_lim (PGHI start)": (8, 16, 32, 64, 128),
    "griffin_lim (random start)": (16, 32, 64, 128),
    "PGHI only": (0,),
}


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


def _timed(fn) -> tuple[float, float, np.ndarray]:
    """Wall and process-CPU seconds (all threads) of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def methods(target: np.ndarray, backend: str, *, all_methods: bool = True) -> dict:
    """Method name -> ``run(n_iter) -> waves`` on the active Keras backend (and librosa)."""
    from vqkeras.phase import griffin_lim, invert_magnitude

    kw = dict(frame_length=FRAME, frame_step=HOP)
    runs = {OURS: lambda n: invert_magnitude(target, n_iter=n, **kw)}
    if not all_methods:
        return runs
    length = (target.shape[1] - 1) * HOP

    def librosa_gl(n):
        import librosa

        return librosa.griffinlim(np.swapaxes(target, 1, 2), n_iter=n, hop_length=HOP, n_fft=FRAME,
                                  momentum=0.99, init="random", random_state=0, center=True,
                                  pad_mode="reflect", length=length)

    runs.update({
        BASELINE: librosa_gl,
        HYBRID: lambda n: invert_magnitude(target, n_iter=n, init="pghi", init_iter=16, **kw),
        "invert_magnitude (GL16 start, previous default)":
            lambda n: invert_magnitude(target, n_iter=n, init="griffin_lim", init_iter=16, **kw),
        "griffin_lim (PGHI start)": lambda n: griffin_lim(target, n_iter=n, init="pghi", **kw),
        "griffin_lim (random start)": lambda n: griffin_lim(target, n_iter=n, **kw),
        "PGHI only": lambda n: griffin_lim(target, n_iter=0, init="pghi", **kw),
    })
    return runs


def measure(target: np.ndarray, backend: str, runs: dict, keep_waves: bool) -> tuple[list, dict]:
    """Every method at every iteration count, interleaved across methods.

    Returns the rows and, if `keep_waves`, ``{(method, n_iter): waves}``.
    """
    rows, waves_by_point = [], {}
    depth = max(len(ITERS[m]) for m in runs)
    for level in range(depth):
        for method, run in runs.items():
            if level >= len(ITERS[method]):
                continue
            n = ITERS[method][level]
            first_s, _, _ = _timed(lambda: run(n))  # compiles (or warms caches)
            wall_s, cpu_s, waves = _timed(lambda: run(n))
            sc = _sc(target, waves)
            be = "numpy" if method == BASELINE else backend
            rows.append(dict(method=method, backend=be, iterations=n, wall_s=wall_s, cpu_s=cpu_s,
                             first_call_s=first_s, sc_db_mean=float(sc.mean()),
                             sc_db_std=float(sc.std()), load_1min=os.getloadavg()[0]))
            if keep_waves:
                waves_by_point[(method, n)] = waves
            print(f"  {method:<48} {be:<10} iters={n:<4} wall={wall_s:6.2f}s cpu={cpu_s:6.2f}s "
                  f"SC={sc.mean():6.2f} dB  load={os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return rows, waves_by_point


def run_other_backend(target: np.ndarray, backend: str) -> list[dict]:
    """Run our default on `backend` in a subprocess (a Keras backend is fixed per process)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "target.npy"
        np.save(path, target)
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run(
            [sys.executable, __file__, "--backend", backend, "--json", "--magnitudes", str(path)],
            env=env, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def at_time(df, method: str, seconds: float, clock: str = "wall_s") -> float:
    """SC of `method` interpolated (in log time) at `seconds`; NaN outside its measured range."""
    curve = df[(df.method == method) & (df.backend != "tensorflow")].sort_values(clock)
    if len(curve) < 2 or not curve[clock].min() <= seconds <= curve[clock].max():
        return float("nan")
    return float(np.interp(np.log(seconds), np.log(curve[clock]), curve.sc_db_mean))


def nearest_points(df, seconds: float, clock: str = "cpu_s") -> list[tuple[str, int]]:
    """Per method (JAX/numpy rows), the iteration count whose time is nearest `seconds`."""
    picks = []
    for method, group in df[df.backend != "tensorflow"].groupby("method", sort=False):
        row = group.iloc[int(np.argmin(np.abs(np.log(group[clock] / seconds))))]
        picks.append((method, int(row.iterations)))
    return picks


def visqol_scores(waves_by_point, picks, reference: np.ndarray) -> dict:
    """Mean ViSQOL (audio mode, 48 kHz) of the chosen points against the rendered notes."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rate_distortion import Visqol

    visqol = Visqol()
    scores = {}
    for point in dict.fromkeys(picks):
        est = waves_by_point[point][: len(reference)]
        scores[point] = float(np.mean([visqol(r, e) for r, e in zip(reference, est)]))
        print(f"  ViSQOL {point[0]} @ {point[1]}: {scores[point]:.3f}", file=sys.stderr, flush=True)
    return scores


def write_report(rows: list[dict], out: Path, num_notes: int, specs, visqol: dict,
                 load: tuple[float, float], visqol_notes: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df["label"] = df.method + " (" + df.backend + ")"
    df["visqol"] = [visqol.get((m, int(n)), float("nan"))
                    if b != "tensorflow" else float("nan")
                    for m, n, b in zip(df.method, df.iterations, df.backend)]
    df.to_csv(out / "phase_reconstruction.csv", index=False)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for ax, clock, what in ((axes[0], "wall_s", "wall time"), (axes[1], "cpu_s", "process CPU time")):
        for label, group in df.groupby("label", sort=False):
            group = group.sort_values(clock)
            ax.plot(group[clock], group.sc_db_mean, marker="o", label=label,
                    linewidth=2.5 if label.startswith(OURS) or label.startswith(BASELINE) else 1.2)
        for budget in BUDGETS_S:
            ax.axvline(budget, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel(f"{what} for {num_notes} 4-s notes (s, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("spectral convergence (dB, lower is better)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Phase reconstruction, STFT {FRAME}/{HOP}, {os.cpu_count()} CPU cores "
                 f"(load {load[0]:.1f} at start, {load[1]:.1f} at end)")
    fig.tight_layout()
    fig.savefig(out / "phase_reconstruction.png", dpi=120)
    plt.close(fig)

    table = ["| method | backend | iterations | wall (s) | CPU (s) | first call (s) | SC mean (dB) | "
             "SC std (dB) | ViSQOL |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for _, r in df.iterrows():
        vq = "" if np.isnan(r.visqol) else f"{r.visqol:.3f}"
        table.append(f"| {r.method} | {r.backend} | {r.iterations} | {r.wall_s:.2f} | {r.cpu_s:.2f} | "
                     f"{r.first_call_s:.2f} | {r.sc_db_mean:.2f} | {r.sc_db_std:.2f} | {vq} |")
    budget_rows = []
    for clock in ("wall_s", "cpu_s"):
        for budget in BUDGETS_S:
            cells = [at_time(df, m, budget, clock) for m in df.method.unique()]
            base, ours = at_time(df, BASELINE, budget, clock), at_time(df, OURS, budget, clock)
            budget_rows.append(f"| {clock[:-2]} | {budget:.0f} | {base:.2f} | {ours:.2f} | "
                               f"{base - ours:+.2f} | "
                               + " | ".join(f"{c:.2f}" for c in cells) + " |")
    methods_header = " | ".join(df.method.unique())
    text = [
        "# Phase reconstruction benchmark",
        "",
        f"{num_notes} rendered 4-s notes at {SAMPLE_RATE} Hz (default soundfont), STFT frame "
        f"{FRAME}, hop {HOP}, Hann, centred; one batched call per row; {os.cpu_count()} CPU cores, "
        f"1-minute load average {load[0]:.1f} at the start and {load[1]:.1f} at the end (the "
        "machine was shared: wall times are inflated, and the methods ran interleaved so that "
        "they share the load alike). SC = spectral convergence between the target magnitude and "
        "the STFT magnitude of the recovered audio, mean over notes (lower is better). Wall time "
        "is the second call (the first compiles); CPU is the process CPU time of that call, all "
        "threads. `invert_magnitude` iterations are Adam steps after the start; `griffin_lim` "
        "iterations are fast Griffin-Lim (momentum 0.99) steps. ViSQOL (audio mode, 48 kHz, mean "
        f"over the first {visqol_notes} notes) for each method's points nearest the budgets in CPU "
        "time.",
        "",
        "## At equal time (SC interpolated in log time; NaN: outside the measured range)",
        "",
        f"| clock | budget (s) | librosa SC (dB) | ours (default) SC (dB) | ours better by (dB) | "
        f"{methods_header} |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(df.method.unique()),
        *budget_rows,
        "",
        "## All points",
        "",
        *table,
        "",
        "![SC vs time](phase_reconstruction.png)",
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
    parser.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (faster)")
    parser.add_argument("--visqol-notes", type=int, default=32,
                        help="ViSQOL on the first N notes only (about 1 s per note and point)")
    parser.add_argument("--json", action="store_true",
                        help="worker mode: print the rows of this backend as JSON and exit")
    parser.add_argument("--magnitudes", type=Path, help="(worker mode) .npy of target magnitudes")
    args = parser.parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend  # before anything imports keras

    if args.json:
        target = np.load(args.magnitudes)
        rows, _ = measure(target, args.backend, methods(target, args.backend, all_methods=False),
                          keep_waves=False)
        print(json.dumps(rows))
        return 0

    from vqkeras.metrics import stft_magnitude

    load_start = os.getloadavg()[0]
    waves, specs = render_notes(args.num_notes, args.seed)
    target = stft_magnitude(waves, FRAME, HOP)
    print(f"{len(waves)} notes, magnitude {target.shape}; backend {args.backend}; "
          f"load {load_start:.1f}", file=sys.stderr)
    rows, waves_by_point = measure(target, args.backend, methods(target, args.backend),
                                   keep_waves=not args.no_visqol)
    load_end = os.getloadavg()[0]
    other = "tensorflow" if args.backend == "jax" else "jax"
    if not args.skip_other_backend:
        rows += run_other_backend(target, other)
    scores = {}
    if not args.no_visqol:
        import pandas as pd

        df = pd.DataFrame(rows)
        picks = [p for budget in BUDGETS_S for p in nearest_points(df, budget, "cpu_s")]
        scores = visqol_scores(waves_by_point, picks, waves[: args.visqol_notes])
    write_report(rows, args.out, len(waves), specs, scores, (load_start, load_end),
                 min(args.visqol_notes, len(waves)))
    print(args.out / "phase_reconstruction.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
