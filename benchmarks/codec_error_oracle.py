"""Where the codec's ViSQOL is lost: oracle mixes of the true and the decoded spectrogram.

For the codec mix's TEST clips (16 kHz, 4 s, peak-normalised), each family's
spectrogram images go through the model (``--stages`` RVQ stages), and
ViSQOL (audio mode, 48 kHz, as in ``rate_distortion.py``) is measured on
the waveforms that the same phase reconstruction (PGHI + 16 fast
Griffin-Lim iterations) makes from:

- ``true``: the clip's own image (the upper bound of any magnitude codec);
- ``decoded``: the model's image;
- ``decoded above -X dB``: the model's pixels where the true image is within
  X dB of the clip's peak pixel, the true pixels elsewhere (the cost of the
  model's errors in the loud part alone);
- ``decoded below -X dB``: the other way round (the quiet part alone);
- ``true, zero below -X dB``: the true image with everything X dB under the
  peak removed (how much ViSQOL depends on the quiet part at all).

No container, gains or loudness matching: images in, waveforms out. Writes
``codec_error_oracle.{md,png}`` under ``--out``.

Usage: ``KERAS_BACKEND=jax python benchmarks/codec_error_oracle.py [--per-family 16]
[--stages 2] [--model BUNDLE]``
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
THRESHOLDS_DB = (30, 50)
FLOORS_DB = (60, 45, 30)


def oracle_images(true: np.ndarray, decoded: np.ndarray, dynamic_range_db: float
                  ) -> dict[str, np.ndarray]:
    """The conditions above, as images in [0, 1] (``dynamic_range_db`` per unit)."""
    peak = true.max(axis=(1, 2, 3), keepdims=True)
    out = {"true": true, "decoded": decoded}
    for x in THRESHOLDS_DB:
        loud = true >= peak - x / dynamic_range_db
        out[f"decoded above -{x} dB"] = np.where(loud, decoded, true)
        out[f"decoded below -{x} dB"] = np.where(loud, true, decoded)
    for x in FLOORS_DB:
        out[f"true, zero below -{x} dB"] = np.where(true >= peak - x / dynamic_range_db, true, 0.0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", default="data/codec-mix")
    parser.add_argument("--per-family", type=int, default=16, help="TEST clips per family")
    parser.add_argument("--stages", type=int, default=2, help="RVQ stages decoded")
    parser.add_argument("--model", default=None, help="codec bundle (default: shipped)")
    parser.add_argument("--out", default="reports/benchmarks")
    args = parser.parse_args(argv)

    from family_report import write_family_report
    from rate_distortion import Visqol
    from tqdm.auto import tqdm

    from vqkeras.codec.codec_model import load_codec_model
    from vqkeras.data.codec_mix import FAMILIES, load_mix
    from vqkeras.features import SpectrogramConfig, image_to_magnitude, waveform_to_image
    from vqkeras.phase import griffin_lim

    codec = load_codec_model(args.model)
    net, info = codec.keras_model, codec.info
    config = SpectrogramConfig(**info.spectrogram)
    visqol = Visqol()
    if visqol.api is None:
        return 2
    scores: dict[str, dict[str, float]] = {}
    for family in tqdm(FAMILIES, desc="families"):
        waves, _ = load_mix(args.mix, "test", families=[family], limit=args.per_family)
        true = np.asarray(waveform_to_image(waves, config, time_multiple=info.time_multiple),
                          np.float32)
        decoded = np.clip(np.asarray(net.decode_indices(net.encode(true, num_stages=args.stages)),
                                     np.float32), 0.0, 1.0)
        for name, images in oracle_images(true, decoded, config.dynamic_range_db).items():
            mags = image_to_magnitude(images, config)
            audio = np.asarray(griffin_lim(mags, frame_length=config.frame_length,
                                           frame_step=config.frame_step, n_iter=info.iterations,
                                           init="pghi", length=waves.shape[1]))
            scores.setdefault(name, {})[family] = float(np.mean(
                [visqol(waves[i], audio[i]) for i in range(len(waves))]))
    for row in scores.values():
        row["all"] = float(np.mean([row[f] for f in FAMILIES]))

    columns = [*FAMILIES, "all"]
    lines = ["# Where the codec's ViSQOL is lost", "",
             f"Mean ViSQOL on {args.per_family} TEST clips per family; model "
             f"`{args.model or 'shipped'}`, {args.stages} stage(s); images in, phase "
             f"reconstruction ({info.iterations} iterations), no container or loudness matching.",
             "", "| condition | " + " | ".join(columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |"
              for name, row in scores.items()]
    low = min(min(row.values()) for row in scores.values())
    write_family_report(args.out, "codec_error_oracle", "\n".join(lines) + "\n",
                        {name: [row[c] for c in columns] for name, row in scores.items()},
                        columns, ylabel="ViSQOL", ylim=(low - 0.1, 4.8), size=(11, 4),
                        title=f"Oracle mixes of true and decoded spectrograms "
                              f"({args.stages} stages)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:  # a missing mix, a bad --stages: one line, not a traceback
        sys.exit(f"{Path(__file__).name}: {err}")
