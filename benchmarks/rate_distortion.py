"""Rate-distortion benchmark: the vqkeras codec against Opus and MP3, per family of clips.

Families (default: the held-out TEST clips of the codec's training mix,
``data/codec-mix/test/{notes,drums,samples,speech}``: notes from both
soundfonts, real recorded drums and LMMS samples whose files training never
saw, and espeak-ng speech of unseen sentences; ``--family NAME=DIR`` to
choose). For every clip and condition it measures the real bitrate (file
bits / duration), the log-spectral distance (STFT 1024/256, floor 80 dB below
the clip's peak), ViSQOL (audio mode, both signals resampled to 48 kHz) and
the gap in BS.1770 integrated loudness (decoded minus input; the table shows
the worst clip).
Conditions:

- ``vqkeras-S<n>``: our codec with at most ``n`` RVQ stages (real .vqz files,
  through `compress` / `decompress`);
- ``vqkeras-1.5k``: our codec with ``--bitrate 1.5`` (the issue's target rate);
- ``opus-<b>k``: ``opusenc --bitrate b`` then ``opusdec --rate 16000``;
- ``mp3-<b>k``: ``lame -b b --resample 16`` then ``lame --decode``;
- ``true-magnitude``: the clip's own STFT magnitude through the codec's phase
  reconstruction (PGHI then fast Griffin-Lim, the bundle's iterations): the
  upper bound of any magnitude codec using it.

Also times our encoder and decoder on CPU (real-time factor = processing
seconds per second of audio, warm). Writes ``rate_distortion.{csv,md,png}``
under ``--out``: a table per family and overall, and quality against rate,
one curve per codec.

Usage: ``KERAS_BACKEND=jax python benchmarks/rate_distortion.py [--max-clips 16]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SAMPLE_RATE = 16000
OPUS_KBPS = (6, 8, 12)
MP3_KBPS = (8, 16)


def _align(reference: np.ndarray, estimate: np.ndarray, max_lag: int = 2048) -> np.ndarray:
    """Shift ``estimate`` to best match ``reference`` (codec delays) and match its length."""
    n = len(reference)
    est = np.pad(estimate, (0, max(0, n + max_lag - len(estimate))))
    from scipy.signal import correlate

    corr = correlate(est[: n + max_lag], reference, mode="valid")
    lag = int(np.argmax(corr)) if len(corr) else 0
    return est[lag:lag + n].astype(np.float32)


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def baseline_codecs(clip_path: Path, tmp: Path, duration: float):
    """Yield (condition, kbit/s, decoded 16 kHz wave) for Opus and MP3 (when installed)."""
    from vqkeras.audio_io import read_wav

    if shutil.which("opusenc") and shutil.which("opusdec"):
        for kbps in OPUS_KBPS:
            enc, dec = tmp / "x.opus", tmp / "x_opus.wav"
            _run(["opusenc", "--quiet", "--bitrate", str(kbps), str(clip_path), str(enc)])
            _run(["opusdec", "--quiet", "--rate", str(SAMPLE_RATE), str(enc), str(dec)])
            yield f"opus-{kbps}k", 8 * enc.stat().st_size / duration / 1000, read_wav(dec)
    if shutil.which("lame"):
        for kbps in MP3_KBPS:
            enc, dec = tmp / "x.mp3", tmp / "x_mp3.wav"
            _run(["lame", "--quiet", "-b", str(kbps), "--resample", "16", str(clip_path), str(enc)])
            _run(["lame", "--quiet", "--decode", str(enc), str(dec)])
            yield f"mp3-{kbps}k", 8 * enc.stat().st_size / duration / 1000, read_wav(dec)


class Visqol:
    """ViSQOL v3 (audio mode, 48 kHz) from visqol-python, or NaN if unavailable."""

    def __init__(self) -> None:
        try:
            from visqol import VisqolApi

            self.api = VisqolApi()
            self.api.create(mode="audio")
        except Exception as err:  # optional dependency: the benchmark still runs
            print(f"ViSQOL unavailable ({err}); reporting NaN", file=sys.stderr)
            self.api = None

    def __call__(self, reference: np.ndarray, estimate: np.ndarray) -> float:
        if self.api is None:
            return float("nan")
        import soxr

        ref = soxr.resample(reference.astype(np.float64), SAMPLE_RATE, 48000)
        est = soxr.resample(estimate.astype(np.float64), SAMPLE_RATE, 48000)
        return float(self.api.measure_from_arrays(ref, est, 48000).moslqo)


def _families(args) -> dict[str, Path]:
    if args.family:
        pairs = [f.split("=", 1) for f in args.family]
        if any(len(p) != 2 for p in pairs):
            raise SystemExit("--family takes NAME=DIR")
        return {name: Path(folder) for name, folder in pairs}
    mix = Path("data/codec-mix/test")
    if mix.is_dir():
        return {d.name: d for d in sorted(mix.iterdir()) if d.is_dir()}
    return {"notes": Path("data/nsynth-rendered/nsynth-test/audio")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", metavar="NAME=DIR",
                        help="a family of 16 kHz WAV clips (repeatable; default: "
                             "data/codec-mix/test/*)")
    parser.add_argument("--max-clips", type=int, default=16, help="clips per family")
    parser.add_argument("--out", default="reports/benchmarks")
    parser.add_argument("--model", default=None, help="codec bundle (default: shipped)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="phase reconstruction iterations (default: the bundle's)")
    parser.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (faster)")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("opusenc", "opusdec", "lame") if not shutil.which(tool)]
    if missing:
        print(f"note: {', '.join(missing)} not installed (Debian opus-tools / lame): baseline "
              f"rows skipped", file=sys.stderr)

    import pandas as pd

    from vqkeras.audio_io import read_wav, write_wav
    from vqkeras.codec import compress, decompress
    from vqkeras.codec.codec_model import load_codec_model
    from vqkeras.codec.loudness import integrated_loudness
    from vqkeras.metrics import log_spectral_distance, stft_magnitude
    from vqkeras.phase import griffin_lim

    clips: list[tuple[str, Path]] = []
    for family, folder in _families(args).items():
        files = sorted(folder.glob("*.wav"))[: args.max_clips]
        if not files:
            print(f"no WAV clips in {folder} (build them: vqkeras data mix --out "
                  f"data/codec-mix, or vqkeras data render)", file=sys.stderr)
            return 2
        clips += [(family, f) for f in files]
    codec = load_codec_model(args.model)
    info = codec.info
    iterations = info.iterations if args.iterations is None else args.iterations
    frame, hop = int(info.spectrogram["frame_length"]), int(info.spectrogram["frame_step"])
    visqol = Visqol() if not args.no_visqol else None
    rows = []
    timing = {"encode": 0.0, "decode": 0.0, "seconds": 0.0}

    def add(family: str, clip: Path, condition: str, kind: str, kbps: float,
            reference: np.ndarray, estimate: np.ndarray) -> None:
        lsd = float(log_spectral_distance(reference[None], estimate[None], n_fft=1024, hop=256,
                                          floor_db=80.0)[0])
        gap = integrated_loudness(estimate, SAMPLE_RATE) - integrated_loudness(reference,
                                                                              SAMPLE_RATE)
        rows.append(dict(family=family, clip=clip.stem, condition=condition, kind=kind,
                         kbps=kbps, lsd_db=lsd, loudness_gap_lu=float(gap),
                         visqol=visqol(reference, estimate) if visqol else float("nan")))

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # Warm-up: compile every program once, outside the timings.
        warm = read_wav(clips[0][1], sample_rate=SAMPLE_RATE)
        write_wav(tmp / "warm.wav", warm, SAMPLE_RATE)
        compress(tmp / "warm.wav", tmp / "warm.vqz", model=codec, progress=False)
        decompress(tmp / "warm.vqz", tmp / "warm_out.wav", model=codec, iterations=iterations,
                   progress=False)
        for n, (family, path) in enumerate(clips):
            wave = read_wav(path, sample_rate=SAMPLE_RATE)
            duration = len(wave) / SAMPLE_RATE
            clip = tmp / "clip.wav"
            write_wav(clip, wave, SAMPLE_RATE)
            settings = [(f"vqkeras-S{s}", dict(stages=s)) for s in range(1, info.num_stages + 1)]
            settings.append(("vqkeras-1.5k", dict(bitrate=1.5)))
            for condition, options in settings:
                t0 = time.perf_counter()
                vqz = compress(clip, tmp / "x.vqz", model=codec, progress=False, **options)
                t1 = time.perf_counter()
                decompress(vqz, tmp / "x_out.wav", model=codec, iterations=iterations,
                           progress=False)
                t2 = time.perf_counter()
                if condition == "vqkeras-1.5k":
                    timing["encode"] += t1 - t0
                    timing["decode"] += t2 - t1
                    timing["seconds"] += duration
                decoded = read_wav(tmp / "x_out.wav", sample_rate=SAMPLE_RATE)
                add(family, path, condition, "vqkeras", 8 * vqz.stat().st_size / duration / 1000,
                    wave, decoded)
            mag = stft_magnitude(wave[None], frame, hop)
            upper = np.asarray(griffin_lim(mag, frame_length=frame, frame_step=hop,
                                           n_iter=iterations, init="pghi", length=len(wave)))[0]
            add(family, path, "true-magnitude", "upper bound", float("nan"), wave, upper)
            for condition, kbps, decoded in baseline_codecs(clip, tmp, duration):
                add(family, path, condition, condition.split("-")[0], kbps, wave,
                    _align(wave, decoded))
            print(f"{n + 1}/{len(clips)} {family}/{path.name}", flush=True)
    rtf_enc = timing["encode"] / timing["seconds"]
    rtf_dec = timing["decode"] / timing["seconds"]

    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "rate_distortion.csv", index=False)
    overall = df.assign(family="all")
    summary = (pd.concat([df, overall])
               .groupby(["family", "condition", "kind"], sort=False)
               .agg(kbps=("kbps", "mean"), lsd_db=("lsd_db", "mean"),
                    lsd_std=("lsd_db", "std"), visqol=("visqol", "mean"),
                    loudness_worst=("loudness_gap_lu", lambda g: g.abs().max()),
                    clips=("clip", "count"))
               .reset_index())
    _write_markdown(out / "rate_distortion.md", summary, iterations, rtf_enc, rtf_dec)
    _plot(out / "rate_distortion.png", summary)
    print(summary.to_string(index=False))
    print(f"encode RTF {rtf_enc:.3f}, decode RTF {rtf_dec:.3f} (CPU, {iterations} iterations)")
    return 0


def _verdict(summary, rtf: float) -> list[str]:
    """The issue-12 goal, overall and per family: at <= 1.5 kbit/s, ViSQOL >= Opus 12k's
    and LSD below it; encode + decode at 20x real time or faster."""
    lines = []
    for family, group in summary.groupby("family", sort=False):
        ours = group[(group.kind == "vqkeras") & (group.kbps <= 1.5)]
        opus = group[group.condition == "opus-12k"]
        if opus.empty:
            lines.append(f"- {family}: not evaluated (no Opus)")
            continue
        opus = opus.iloc[0]
        if ours.empty:
            lines.append(f"- {family}: NOT met: no setting of ours is at or below 1.5 kbit/s")
            continue
        best = ours.sort_values("visqol").iloc[-1]
        ok = best.lsd_db < opus.lsd_db and (np.isnan(best.visqol) or best.visqol >= opus.visqol)
        lines.append(f"- {family}: {'met' if ok else 'NOT met'}: {best.condition} at "
                     f"{best.kbps:.2f} kbit/s has ViSQOL {best.visqol:.2f} vs Opus 12k's "
                     f"{opus.visqol:.2f} ({opus.kbps:.1f} kbit/s), LSD {best.lsd_db:.2f} vs "
                     f"{opus.lsd_db:.2f} dB")
    speed = "met" if rtf <= 0.05 else "NOT met"
    lines.append(f"- speed: {speed}: encode + decode take {rtf:.3f} s per second of audio "
                 f"({1 / rtf:.0f}x real time; the goal is 20x)")
    return lines


def _write_markdown(path: Path, summary, iterations: int, rtf_enc: float,
                    rtf_dec: float) -> None:
    lines = ["# Rate-distortion benchmark", "",
             "Bitrate = file bits / duration (container overhead included). LSD: STFT "
             "1024/256, floor 80 dB below the clip's peak (lower is better). ViSQOL: audio "
             "mode at 48 kHz, MOS-LQO 1-5 (higher is better). Phase reconstruction: "
             f"{iterations} iterations.", ""]
    for family, group in summary.groupby("family", sort=False):
        lines += [f"## {family} ({int(group.clips.iloc[0])} clips)", "",
                  "| condition | kbit/s | LSD (dB) | LSD std | ViSQOL | worst loudness gap (LU) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in group.itertuples():
            kbps = "-" if np.isnan(r.kbps) else f"{r.kbps:.2f}"
            lines.append(f"| {r.condition} | {kbps} | {r.lsd_db:.2f} | {r.lsd_std:.2f} | "
                         f"{r.visqol:.2f} | {r.loudness_worst:.2f} |")
        lines.append("")
    lines += [f"Real-time factor on CPU (seconds of processing per second of audio, warm, "
              f"`--bitrate 1.5`, every clip): encode {rtf_enc:.3f}, decode {rtf_dec:.3f}.", "",
              "## Goal (issue 12)", "", *_verdict(summary, rtf_enc + rtf_dec), ""]
    path.write_text("\n".join(lines))


def _plot(path: Path, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    families = list(dict.fromkeys(summary.family))
    fig, axes = plt.subplots(2, len(families), figsize=(3.6 * len(families), 6.5),
                             squeeze=False)
    for col, family in enumerate(families):
        group = summary[summary.family == family]
        for row, (metric, label) in enumerate((("lsd_db", "LSD (dB, lower is better)"),
                                               ("visqol", "ViSQOL (higher is better)"))):
            ax = axes[row, col]
            curves = group[group.kbps.notna()]
            for kind, part in curves.groupby("kind", sort=False):
                part = part[part.condition != "vqkeras-1.5k"]
                ax.plot(part.kbps, part[metric], "o-", label=kind)
            capped = group[group.condition == "vqkeras-1.5k"]
            ax.plot(capped.kbps, capped[metric], "k*", ms=12, label="vqkeras --bitrate 1.5")
            upper = group[group.kind == "upper bound"]
            if not upper.empty and np.isfinite(upper[metric].iloc[0]):
                ax.axhline(upper[metric].iloc[0], ls="--", c="gray", label="true magnitude")
            ax.set_xscale("log")
            # Plain labels at octaves: the default log labels of minor ticks overlap.
            ax.xaxis.set_major_locator(ticker.FixedLocator([0.5, 1, 2, 4, 8, 16, 32]))
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.set_xlabel("bitrate (kbit/s)")
            ax.set_title(family if row == 0 else "")
            ax.set_ylabel(label if col == 0 else "")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
