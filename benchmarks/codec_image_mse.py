"""Spectrogram-image MSE per family of the codec mix's TEST clips, for two codec models.

A quick check of what retraining changed, without phase reconstruction: each
clip's spectrogram image goes through ``encode`` (first ``n`` RVQ stages) and
``decode_indices``, and the mean squared error against the input image is
averaged per family (notes, drums, samples, speech and, in a mix built with
it, speech-recorded of ``vqkeras data mix``). "all" covers the first four
(the shipped model's training families), so that it stays comparable with
reports from four-family mixes.
Writes ``codec_image_mse.{md,png}`` under ``--out``.

Usage: ``KERAS_BACKEND=jax python benchmarks/codec_image_mse.py --old OLD_BUNDLE
[--new vqkeras/assets] [--mix data/codec-mix] [--per-family 16]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def family_mse(bundle: str, waves: np.ndarray, families: list[str], stages: list[int]
               ) -> dict[tuple[str, int], float]:
    """Mean image MSE per (family, stage count)."""
    from vqkeras.codec.codec_model import load_codec_model
    from vqkeras.features import SpectrogramConfig, waveform_to_image

    codec = load_codec_model(bundle)
    net = codec.keras_model
    images = np.asarray(waveform_to_image(waves, SpectrogramConfig(**codec.info.spectrogram),
                                          time_multiple=codec.info.time_multiple), np.float32)
    out = {}
    for n in stages:
        def run(batch: np.ndarray) -> np.ndarray:
            if n == 0:  # no quantiser: the autoencoder's own limit
                return np.asarray(net.decoder(net.encoder(batch)), np.float32)
            return np.asarray(net.decode_indices(net.encode(batch, num_stages=n)), np.float32)

        decoded = np.concatenate([run(images[i:i + 16]) for i in range(0, len(images), 16)])
        err = np.mean(np.square(decoded - images), axis=(1, 2, 3))
        for family in sorted(set(families)):
            out[(family, n)] = float(np.mean(err[[f == family for f in families]]))
        out[("all", n)] = float(np.mean(err[overall_mask(families)]))
    return out


def overall_mask(families: list[str]) -> np.ndarray:
    """The clips of "all": those of the shipped model's four families (all clips if none is)."""
    from vqkeras.data.codec_mix import SHIPPED_FAMILIES

    mask = np.isin(families, SHIPPED_FAMILIES)
    return mask if mask.any() else np.ones(len(families), bool)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="bundle folder of the earlier model")
    parser.add_argument("--new", default="vqkeras/assets", help="bundle folder of the new model")
    parser.add_argument("--mix", default="data/codec-mix")
    parser.add_argument("--per-family", type=int, default=16, help="TEST clips per family")
    parser.add_argument("--stages", default="1,4",
                        help="RVQ stage counts to compare (0: no quantiser, encoder straight "
                             "into decoder)")
    parser.add_argument("--out", default="reports/benchmarks")
    args = parser.parse_args(argv)

    from family_report import write_family_report

    from vqkeras.data.codec_mix import load_mix, mix_families

    # The families the folder holds: a mix built before speech-recorded has four.
    FAMILIES = mix_families(args.mix)
    waves, families = [], []
    for family in FAMILIES:
        w, rows = load_mix(args.mix, "test", families=[family], limit=args.per_family)
        waves.append(w)
        families += [r["family"] for r in rows]
    waves = np.concatenate(waves)
    stages = [int(s) for s in args.stages.split(",")]
    results = {name: family_mse(path, waves, families, stages)
               for name, path in (("old", args.old), ("new", args.new))}

    counts = {f: families.count(f) for f in FAMILIES}
    header = "| family (TEST clips) | " + " | ".join(
        f"{name} model, " + (f"{n} stage{'s' if n > 1 else ''}" if n else "no quantiser")
        for n in stages for name in results) + " |"
    lines = ["# Spectrogram-image MSE on the codec mix's TEST clips", "",
             f"old: `{args.old}`, new: `{args.new}`; images in [0, 1] (dB over 100 dB).", "",
             header, "|---" * (1 + len(stages) * len(results)) + "|"]
    for family in [*FAMILIES, "all"]:
        n_clips = counts.get(family, int(overall_mask(families).sum()))
        cells = [f"{results[name][(family, n)]:.5f}" for n in stages for name in results]
        lines.append(f"| {family} ({n_clips}) | " + " | ".join(cells) + " |")
    labels = [*FAMILIES, "all"]
    series = {(f"{name}, {n} stage(s)" if n else f"{name}, no quantiser"):
              [results[name][(f, n)] for f in labels] for n in stages for name in results}
    write_family_report(args.out, "codec_image_mse", "\n".join(lines) + "\n", series, labels,
                        ylabel="image MSE", title="Codec mix TEST clips: spectrogram-image MSE")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:  # a missing mix, a bad --stages: one line, not a traceback
        sys.exit(f"{Path(__file__).name}: {err}")
