"""Rate-distortion benchmark: the vqkeras codec against Opus and MP3 on notes.

For every clip (default: the test split of ``data/nsynth-rendered``) and every
condition, measures the real bitrate (file bits / duration), the
log-spectral distance (STFT 1024/256, floor 80 dB below the clip's peak) and
ViSQOL (audio mode, both signals resampled to 48 kHz). Conditions:

- ``vqkeras-S<n>``: our codec with the first ``n`` RVQ stages (real .vqz sizes);
- ``opus-<b>k``: ``opusenc --bitrate b`` then ``opusdec --rate 16000``;
- ``mp3-<b>k``: ``lame -b b --resample 16`` then ``lame --decode``;
- ``true-magnitude``: the clip's own STFT magnitude through our phase
  reconstruction (the upper bound of any magnitude codec using it).

Also times our encoder and decoder on CPU (real-time factor = processing
seconds per second of audio). Writes ``rate_distortion.{csv,md,png}`` under
``--out``.

Usage: ``KERAS_BACKEND=jax python benchmarks/rate_distortion.py [--max-clips 32]``
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default="data/nsynth-rendered/nsynth-test/audio",
                        help="folder of 16 kHz WAV clips (default: the rendered test split)")
    parser.add_argument("--max-clips", type=int, default=32)
    parser.add_argument("--out", default="reports/benchmarks")
    parser.add_argument("--model", default=None, help="codec bundle (default: shipped)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="phase reconstruction iterations (default: the bundle's)")
    parser.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (faster)")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("opusenc", "opusdec", "lame") if not shutil.which(tool)]
    if missing:
        print(f"note: {', '.join(missing)} not installed (Debian opus-tools / lame): baseline rows skipped",
              file=sys.stderr)

    import pandas as pd

    from vqkeras.audio_io import read_wav
    from vqkeras.codec import compress, container, decompress, entropy
    from vqkeras.codec.codec_model import load_codec_model
    from vqkeras.codec.pipeline import (decode_windows, encode_windows, frame_energies,
                                        loudness_codes)
    from vqkeras.features import SpectrogramConfig
    from vqkeras.metrics import log_spectral_distance, stft_magnitude
    from vqkeras.phase import invert_magnitude

    clips_dir = Path(args.clips)
    if clips_dir.is_dir() and (clips_dir / "audio").is_dir():
        clips_dir = clips_dir / "audio"
    files = sorted(clips_dir.glob("*.wav"))[: args.max_clips]
    if not files:
        print(f"no WAV clips in {clips_dir} (render them: vqkeras data render "
              f"--out data/nsynth-rendered)", file=sys.stderr)
        return 2
    codec = load_codec_model(args.model)
    info = codec.info
    iterations = info.iterations if args.iterations is None else args.iterations
    spec = SpectrogramConfig(**info.spectrogram)
    n = info.window_samples
    waves = np.stack([read_wav(f, sample_rate=SAMPLE_RATE, num_samples=n) for f in files])
    duration = n / SAMPLE_RATE
    peaks = np.max(np.abs(waves), axis=1)
    gains = np.array([container.quantize_gain(p) for p in peaks], np.uint8)
    scale = np.array([container.dequantize_gain(g) for g in gains], np.float32)
    normalised = np.clip(waves / np.maximum(scale, 1e-9)[:, None], -1, 1).astype(np.float32)
    visqol = Visqol() if not args.no_visqol else None
    rows = []

    def add(condition: str, kind: str, kbps, estimates: np.ndarray) -> None:
        lsd = log_spectral_distance(waves, estimates, n_fft=1024, hop=256, floor_db=80.0)
        for i, f in enumerate(files):
            rows.append(dict(clip=f.stem, condition=condition, kind=kind,
                             kbps=float(np.atleast_1d(kbps)[i] if np.ndim(kbps) else kbps),
                             lsd_db=float(lsd[i]),
                             visqol=visqol(waves[i], estimates[i]) if visqol else float("nan")))
        print(f"{condition:16s} {np.mean(kbps):7.2f} kbit/s  LSD {np.mean(lsd):5.2f} dB", flush=True)

    # Ours, every stage count, batched (identical to the file API per window:
    # the same .vqz bytes, loudness corrections included).
    all_codes = encode_windows(codec, normalised, info.num_stages)
    energies = frame_energies(info, normalised)
    for stages in range(1, info.num_stages + 1):
        codes = all_codes[..., :stages]
        loudness = loudness_codes(codec, energies, codes)
        loudness[gains == container.GAIN_SILENT] = 0
        sizes = []
        for i in range(len(files)):
            header = container.VQZHeader(model_id=info.model_id, sample_rate=SAMPLE_RATE,
                                         channels=1, num_samples=n, num_windows=1,
                                         grid=info.grid, num_stages=stages)
            payload = entropy.encode_indices(codes[i:i + 1], info.counts_array)
            sizes.append(len(container.pack(header, gains[i:i + 1], payload, loudness[i:i + 1])))
        level = scale * np.array([container.dequantize_loudness(c) for c in loudness], np.float32)
        decoded = decode_windows(codec, codes, iterations=iterations) * level[:, None]
        add(f"vqkeras-S{stages}", "vqkeras", 8 * np.array(sizes) / duration / 1000, decoded)

    # Upper bound: true magnitude, our phase reconstruction.
    mag = stft_magnitude(waves, spec.frame_length, spec.frame_step)
    upper = np.asarray(invert_magnitude(mag, frame_length=spec.frame_length,
                                        frame_step=spec.frame_step, n_iter=iterations,
                                        length=n), np.float32)
    add("true-magnitude", "upper bound", float("nan"), upper)

    # Baselines, file by file.
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results: dict[str, tuple[list, list]] = {}
        for i, f in enumerate(files):
            clip = tmp / "clip.wav"
            from vqkeras.audio_io import write_wav

            write_wav(clip, waves[i], SAMPLE_RATE)
            for condition, kbps, decoded in baseline_codecs(clip, tmp, duration):
                rates, outs = results.setdefault(condition, ([], []))
                rates.append(kbps)
                outs.append(_align(waves[i], decoded))
        for condition, (rates, outs) in results.items():
            add(condition, condition.split("-")[0], np.array(rates), np.stack(outs))

        # Real-time factor of the file API (one clip, all stages), after a warm-up.
        clip = tmp / "rtf.wav"
        write_wav(clip, waves[0], SAMPLE_RATE)
        compress(clip, tmp / "rtf.vqz", model=codec, progress=False)
        decompress(tmp / "rtf.vqz", tmp / "rtf_out.wav", model=codec, iterations=iterations,
                   progress=False)
        t0 = time.perf_counter()
        compress(clip, tmp / "rtf.vqz", model=codec, progress=False)
        t1 = time.perf_counter()
        decompress(tmp / "rtf.vqz", tmp / "rtf_out.wav", model=codec, iterations=iterations,
                   progress=False)
        t2 = time.perf_counter()
    rtf_enc, rtf_dec = (t1 - t0) / duration, (t2 - t1) / duration

    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "rate_distortion.csv", index=False)
    summary = (df.groupby(["condition", "kind"], sort=False)
               .agg(kbps=("kbps", "mean"), lsd_db=("lsd_db", "mean"),
                    lsd_std=("lsd_db", "std"), visqol=("visqol", "mean"))
               .reset_index())
    _write_markdown(out / "rate_distortion.md", summary, len(files), iterations, rtf_enc,
                    rtf_dec, clips_dir)
    _plot(out / "rate_distortion.png", summary)
    print(summary.to_string(index=False))
    print(f"encode RTF {rtf_enc:.3f}, decode RTF {rtf_dec:.3f} (CPU, {iterations} iterations)")
    return 0


def _verdict(summary) -> str:
    ours = summary[summary.kind == "vqkeras"]
    opus6 = summary[summary.condition == "opus-6k"]
    if ours.empty or opus6.empty:
        return "Target not evaluated (Opus or our model missing)."
    opus6 = opus6.iloc[0]
    lines = []
    # Opus's real rate on 4-s clips includes Ogg overhead; judge against both
    # a quarter of its real rate and a quarter of the nominal 6 kbit/s.
    for label, limit in (("real", opus6.kbps / 4), ("nominal", 1.5)):
        cheap = ours[ours.kbps <= limit]
        if cheap.empty:
            lines.append(f"Target ({label} rate) NOT met: no stage count of ours is at or below "
                         f"{limit:.2f} kbit/s.")
            continue
        best = cheap.iloc[-1]
        lsd_ok = best.lsd_db <= opus6.lsd_db
        vq_ok = np.isnan(best.visqol) or best.visqol >= opus6.visqol
        met = "met" if lsd_ok and vq_ok else "NOT met"
        lines.append(f"Target against a quarter of Opus 6k's {label} rate ({limit:.2f} kbit/s) "
                     f"{met}: {best.condition} at {best.kbps:.2f} kbit/s has LSD "
                     f"{best.lsd_db:.2f} dB vs {opus6.lsd_db:.2f} dB and ViSQOL "
                     f"{best.visqol:.2f} vs {opus6.visqol:.2f}.")
    return "\n\n".join(lines)


def _write_markdown(path: Path, summary, n_clips: int, iterations: int, rtf_enc: float,
                    rtf_dec: float, clips_dir: Path) -> None:
    lines = ["# Rate-distortion benchmark", "",
             f"{n_clips} clips from `{clips_dir}` (4 s, 16 kHz). Bitrate = file bits / duration "
             f"(container overhead included). LSD: STFT 1024/256, floor 80 dB below the clip's "
             f"peak (lower is better). ViSQOL: audio mode at 48 kHz, MOS-LQO 1-5 (higher is "
             f"better). Phase reconstruction: {iterations} iterations.", "",
             "| condition | kbit/s | LSD (dB) | LSD std | ViSQOL |", "|---|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        kbps = "-" if np.isnan(r.kbps) else f"{r.kbps:.2f}"
        lines.append(f"| {r.condition} | {kbps} | {r.lsd_db:.2f} | {r.lsd_std:.2f} | "
                     f"{r.visqol:.2f} |")
    lines += ["", f"Real-time factor on CPU (seconds of processing per second of audio, one "
                  f"4-s clip, all stages): encode {rtf_enc:.3f}, decode {rtf_dec:.3f}.", "",
              _verdict(summary), ""]
    path.write_text("\n".join(lines))


def _plot(path: Path, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric, label in ((axes[0], "lsd_db", "LSD (dB, lower is better)"),
                              (axes[1], "visqol", "ViSQOL MOS-LQO (higher is better)")):
        for kind, group in summary[summary.kbps.notna()].groupby("kind", sort=False):
            ax.plot(group.kbps, group[metric], "o-", label=kind)
        upper = summary[summary.kind == "upper bound"]
        if not upper.empty and np.isfinite(upper[metric].iloc[0]):
            ax.axhline(upper[metric].iloc[0], ls="--", c="gray", label="true magnitude")
        ax.set_xlabel("bitrate (kbit/s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
