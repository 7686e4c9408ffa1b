"""How long `vqkeras compress` / `decompress` take from command to file, against opusenc.

Every measurement is a fresh process, as a user runs it: ``python -m
vqkeras.cli compress ...``. Conditions:

- cold: an empty compilation cache (a first run after install);
- warm: the cache filled by an earlier run (`vqkeras.cache`);
- batch: N files in one process (warm); the per-extra-file cost is
  ``(t(N) - t(1)) / (N - 1)``.

The same files go through ``opusenc`` / ``opusdec`` (one process per file, as
they are used) for comparison. Wall and CPU time (user + system of the child)
are both reported: wall time depends on what else runs on the machine, so the
load average is printed with the table.

    python benchmarks/cli_startup.py --num-notes 8 --out reports/benchmarks
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _notes(clips: Path | None, count: int, folder: Path) -> list[Path]:
    """``count`` 4-s, 16 kHz WAVs copied into ``folder`` (rendered set, else rendered now)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = clips or REPO / "data" / "nsynth-rendered" / "nsynth-test" / "audio"
    files = sorted(source.glob("*.wav"))[:count] if source.is_dir() else []
    if len(files) < count:
        sys.path.insert(0, str(REPO))
        from vqkeras.audio_io import write_wav
        from vqkeras.data.render import default_soundfont, render_note

        font = default_soundfont()
        programs = [0, 24, 40, 56, 73, 32, 11, 19, 4, 48, 65, 81]
        for i in range(count):
            path = folder / f"note{i:02d}.wav"
            write_wav(path, render_note(font, programs[i % len(programs)], 48 + 3 * i, 100), 16000)
        return sorted(folder.glob("note*.wav"))
    copied = []
    for f in files:
        shutil.copy(f, folder / f.name)
        copied.append(folder / f.name)
    return copied


def _run(argv: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _median_run(argv: list[str], env: dict, repeats: int) -> tuple[float, float]:
    runs = [_run(argv, env) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-notes", type=int, default=8, help="files in the batch (>= 2)")
    parser.add_argument("--clips", type=Path, default=None, help="folder of WAVs (default: rendered test set)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per warm measurement (median)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks")
    args = parser.parse_args(argv)
    if args.num_notes < 2:
        parser.error("--num-notes must be >= 2")

    import pandas as pd

    work = Path(tempfile.mkdtemp(prefix="vqkeras-cli-bench-"))
    notes = _notes(args.clips, args.num_notes, work / "in")
    cache = work / "cache"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "KERAS_BACKEND": "jax", "VQKERAS_CACHE_DIR": str(cache)}
    py = [sys.executable, "-m", "vqkeras.cli"]
    rows = []

    def add(tool, op, condition, files, wall, cpu):
        rows.append({"tool": tool, "operation": op, "condition": condition, "files": files,
                     "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)})
        print(f"{tool:8s} {op:10s} {condition:6s} {files:3d} files  wall {wall:6.2f} s  cpu {cpu:6.2f} s",
              flush=True)

    add("python", "import", "-", 0, *_median_run([sys.executable, "-c", "import vqkeras"], env, args.repeats))
    one, one_vqz, one_wav = notes[0], work / "one.vqz", work / "one.wav"
    for op, inputs, out in (("compress", [one], one_vqz), ("decompress", [one_vqz], one_wav)):
        if op == "compress":
            shutil.rmtree(cache, ignore_errors=True)
        add("vqkeras", op, "cold", 1, *_run([*py, op, *map(str, inputs), str(out)], env))
        add("vqkeras", op, "warm", 1, *_median_run([*py, op, *map(str, inputs), str(out)], env, args.repeats))
    add("vqkeras", "compress", "batch", len(notes),
        *_median_run([*py, "compress", str(work / "in"), str(work / "vqz")], env, args.repeats))
    add("vqkeras", "decompress", "batch", len(notes),
        *_median_run([*py, "decompress", str(work / "vqz"), str(work / "dec")], env, args.repeats))

    if shutil.which("opusenc") and shutil.which("opusdec"):
        (work / "opus").mkdir()
        for op in ("compress", "decompress"):
            def one_file(note: Path, op=op) -> list[str]:
                opus = work / "opus" / f"{note.stem}.opus"
                if op == "compress":
                    return ["opusenc", "--quiet", "--bitrate", "6", str(note), str(opus)]
                return ["opusdec", "--quiet", str(opus), str(work / "opus" / f"{note.stem}.wav")]
            add("opusenc" if op == "compress" else "opusdec", op, "warm", 1,
                *_median_run(one_file(notes[0]), env, args.repeats))
            total_wall = total_cpu = 0.0
            for note in notes:  # one process per file, as opusenc is used
                wall, cpu = _run(one_file(note), env)
                total_wall, total_cpu = total_wall + wall, total_cpu + cpu
            add("opusenc" if op == "compress" else "opusdec", op, "batch", len(notes), total_wall, total_cpu)
    else:
        print("opusenc/opusdec not installed (Debian opus-tools): no baseline rows", file=sys.stderr)

    table = pd.DataFrame(rows)
    single = table[table.files == 1].set_index(["tool", "operation", "condition"])
    per_file = []
    for _, row in table[table.condition == "batch"].iterrows():
        base = single.loc[(row.tool, row.operation, "warm")]
        per_file.append({"tool": row.tool, "operation": row.operation,
                         "per_extra_file_wall_s": round((row.wall_s - base.wall_s) / (row.files - 1), 3),
                         "per_extra_file_cpu_s": round((row.cpu_s - base.cpu_s) / (row.files - 1), 3)})
    per_file = pd.DataFrame(per_file)
    load = os.getloadavg()
    header = (f"CPU cores: {os.cpu_count()}, load average at the end: {load[0]:.2f} / {load[1]:.2f} / "
              f"{load[2]:.2f} (1/5/15 min). {args.num_notes} notes of 4 s at 16 kHz; JAX backend; "
              f"median of {args.repeats} runs for warm rows.")
    print(header)
    print(table.to_string(index=False))
    print(per_file.to_string(index=False))

    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "cli_startup.csv", index=False)
    (args.out / "cli_startup.md").write_text(
        f"# CLI start-up and per-file cost\n\n{header}\n\n{_markdown(table)}\n\n"
        f"Per extra file in a batch, `(t(N) - t(1)) / (N - 1)`:\n\n{_markdown(per_file)}\n")
    _plot(table, per_file, args.out / "cli_startup.png", header)
    print(f"wrote {args.out / 'cli_startup.md'}, .csv, .png")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _markdown(frame) -> str:
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _plot(table, per_file, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    single = table[(table.files == 1)]
    labels = [f"{r.tool}\n{r.operation}\n{r.condition}" for r in single.itertuples()]
    x = range(len(single))
    ax1.bar([i - 0.2 for i in x], single.wall_s, width=0.4, label="wall")
    ax1.bar([i + 0.2 for i in x], single.cpu_s, width=0.4, label="CPU")
    ax1.axhline(3.0, color="k", ls="--", lw=1, label="goal: 3 s")
    ax1.set_xticks(list(x), labels, fontsize=7)
    ax1.set_ylabel("seconds, one 4-s note, command to file")
    ax1.legend()
    labels2 = [f"{r.tool}\n{r.operation}" for r in per_file.itertuples()]
    x2 = range(len(per_file))
    ax2.bar([i - 0.2 for i in x2], per_file.per_extra_file_wall_s, width=0.4, label="wall")
    ax2.bar([i + 0.2 for i in x2], per_file.per_extra_file_cpu_s, width=0.4, label="CPU")
    ax2.axhline(0.3, color="k", ls="--", lw=1, label="goal: 0.3 s")
    ax2.set_xticks(list(x2), labels2, fontsize=8)
    ax2.set_ylabel("seconds per extra file in a batch")
    ax2.legend()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
