"""Context model of the entropy coder (format version 4) against the static tables (version 3).

On the codec mix's TEST clips (all of them, and the rate-distortion
benchmark's clips: the first ``--max-clips`` files of each
``data/codec-mix/test/<family>`` folder in sorted order, 16 x 4 = 64 by
default, picked as in ``benchmarks/rate_distortion.py``), each clip one 4-s
window through the model, as in training:

- the ideal code length per stage count (1..S cumulative stages), static
  tables vs context tables, in bits per second of audio, and the saving;
- the range coder's real payload bytes for both (how close it is to the
  ideal);
- real file rates: each of the benchmark clips is compressed with
  `vqkeras.codec.compress` (all stages); the file size with ``s`` stages is
  header + side information + the payload of its first ``s`` stages, coded
  both ways (what `vqkeras.codec.rate.fit_bitrate` compares with the cap);
- the stage count ``--bitrate`` (default 1.5 kbit/s) picks, with the shipped
  model and with the model it replaced (the legacy bundle of the same weights,
  version 3), by real ``compress`` calls.

Writes ``entropy_context.{md,csv,png}`` under ``--out``.

Usage: ``KERAS_BACKEND=tensorflow python benchmarks/entropy_context.py``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def benchmark_clips(mix: Path, max_clips: int) -> list[str]:
    """Paths (relative to the mix) of the rate-distortion benchmark's clips."""
    test = mix / "test"
    return [str(f.relative_to(mix)) for family in sorted(d for d in test.iterdir() if d.is_dir())
            for f in sorted(family.glob("*.wav"))[:max_clips]]


def _rates_table(label: str, codes: np.ndarray, info, tables) -> list[dict]:
    from vqkeras.codec import entropy

    seconds = len(codes) * info.window_samples / info.sample_rate
    static = np.cumsum(entropy.static_bits_per_stage(codes, info.counts_array))
    context = np.cumsum(entropy.context_bits_per_stage(codes, tables))
    rows = []
    for s in range(1, codes.shape[-1] + 1):
        coded_static = sum(8 * len(entropy.encode_indices(c[None, ..., :s], info.counts_array))
                           for c in codes)
        coded_context = sum(8 * len(entropy.encode_context(c[..., :s], tables)) for c in codes)
        rows.append(dict(clips=label, n=len(codes), stages=s,
                         static_bps=static[s - 1] / seconds, context_bps=context[s - 1] / seconds,
                         saving_pct=100 * (1 - context[s - 1] / static[s - 1]),
                         static_coded_bps=coded_static / seconds,
                         context_coded_bps=coded_context / seconds))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mix", default="data/codec-mix", help="codec mix folder")
    parser.add_argument("--model", default=None, help="bundle with context tables "
                                                      "(default: the shipped one)")
    parser.add_argument("--before", default=None,
                        help="bundle to compare the --bitrate choice with (default: the "
                             "legacy bundle of the shipped model's weights)")
    parser.add_argument("--max-clips", type=int, default=16, help="benchmark clips per family")
    parser.add_argument("--bitrate", type=float, default=1.5, help="cap to check (kbit/s)")
    parser.add_argument("--out", default="benchmarks/results/entropy-context")
    args = parser.parse_args(argv)

    import pandas as pd

    from vqkeras.codec import compress, container, entropy
    from vqkeras.codec.codec_model import LEGACY_DIR, default_model_dir, load_codec_model
    from vqkeras.codec.default_model import clip_codes
    from vqkeras.codec.unpack import read_vqz
    from vqkeras.data.codec_mix import load_mix

    mix = Path(args.mix)
    codec = load_codec_model(args.model)
    info, tables = codec.info, codec.info.context_tables
    if tables is None:
        print(f"{args.model or 'the shipped model'} has no context tables "
              f"(vqkeras codec fit-context)", file=sys.stderr)
        return 2
    if args.before is None:
        legacy = [d for d in sorted((default_model_dir() / LEGACY_DIR).glob("*"))
                  if load_codec_model(d).info.weights_sha256 == info.weights_sha256]
        before = load_codec_model(legacy[0]) if legacy else None
    else:
        before = load_codec_model(args.before)

    waves, rows = load_mix(mix, "test")
    codes = clip_codes(codec, waves)
    paths = [r["path"] for r in rows]
    picked = benchmark_clips(mix, args.max_clips)
    bench = np.array([paths.index(p) for p in picked])
    table = pd.DataFrame(_rates_table(f"benchmark ({len(bench)})", codes[bench], info, tables)
                         + _rates_table(f"all test ({len(codes)})", codes, info, tables))

    # Real files: compress each benchmark clip once, then size every stage prefix both ways.
    files, caps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for path in picked:
            vqz = compress(mix / path, Path(tmp) / "x.vqz", model=codec, progress=False)
            header, _, _, indices = read_vqz(vqz.read_bytes(), info)
            seconds = max(header.num_samples / header.sample_rate,
                          info.window_samples / info.sample_rate)
            for s in range(1, header.stages[0] + 1):
                x = indices[0][..., :s]
                for version in (3, 4):
                    size = container.file_size(1, header.num_segments, len(
                        entropy.encode_payload(x, info, version)))
                    files.append(dict(clip=path, stages=s, version=version, bytes=size,
                                      kbps=8 * size / seconds / 1000))
            choice = {}
            for name, model in (("context", codec), ("before", before)):
                if model is None:
                    continue
                try:
                    capped = compress(mix / path, Path(tmp) / "c.vqz", model=model,
                                      bitrate=args.bitrate, progress=False)
                    h = container.unpack(capped.read_bytes())[0]
                    choice[name] = max(h.stages)
                    choice[f"{name}_kbps"] = 8 * capped.stat().st_size / seconds / 1000
                except Exception as err:  # CodecLimitError: not even one stage fits
                    choice[name] = 0
                    choice[f"{name}_error"] = str(err)
            caps.append(dict(clip=path, family=path.split("/")[1], **choice))
    files = pd.DataFrame(files)
    caps = pd.DataFrame(caps)
    file_rates = files.pivot_table(index="stages", columns="version", values="kbps",
                                   aggfunc="mean")
    file_max = files.pivot_table(index="stages", columns="version", values="kbps", aggfunc="max")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "entropy_context.csv", index=False)
    files.to_csv(out / "entropy_context_files.csv", index=False)
    caps.to_csv(out / "entropy_context_bitrate.csv", index=False)
    files["family"] = files["clip"].str.split("/").str[1]
    md = _markdown(table, file_rates, file_max, files, caps, args.bitrate, info, before,
                   len(picked))
    (out / "entropy_context.md").write_text(md)
    _plot(out / "entropy_context.png", table, file_rates, args.bitrate)
    print(md)
    return 0


def _markdown(table, file_rates, file_max, files, caps, bitrate, info, before, n_files) -> str:
    lines = [f"# Context model vs static tables (model {info.model_id.hex()})", "",
             "Ideal code length of the RVQ indices in bit/s of audio (payload only, no "
             "header), cumulative stages; `coded` = the range coder's real payload bytes.", ""]
    for label, part in table.groupby("clips", sort=False):
        lines += [f"## {label} clips", "",
                  "| stages | static bit/s | context bit/s | saving | static coded | "
                  "context coded |", "|---|---|---|---|---|---|"]
        for r in part.itertuples():
            lines.append(f"| {r.stages} | {r.static_bps:.0f} | {r.context_bps:.0f} | "
                         f"{r.saving_pct:.1f}% | {r.static_coded_bps:.0f} | "
                         f"{r.context_coded_bps:.0f} |")
        lines.append("")
    lines += [f"## Real file rates ({n_files} benchmark clips, kbit/s, header and side "
              f"information included)", "",
              "| stages | version 3 (static) mean | max | version 4 (context) mean | max |",
              "|---|---|---|---|---|"]
    for s in file_rates.index:
        lines.append(f"| {s} | {file_rates.loc[s, 3]:.3f} | {file_max.loc[s, 3]:.3f} | "
                     f"{file_rates.loc[s, 4]:.3f} | {file_max.loc[s, 4]:.3f} |")
    by_family = files.pivot_table(index="family", columns=["stages", "version"], values="kbps",
                                  aggfunc="mean")
    stages = sorted(files.stages.unique())
    lines += ["", "Per family (mean kbit/s, version 3 -> version 4):", "",
              "| family | " + " | ".join(f"{s} stages" for s in stages) + " |",
              "|---|" + "---|" * len(stages)]
    for family, r in by_family.iterrows():
        lines.append(f"| {family} | " + " | ".join(
            f"{r[(s, 3)]:.3f} -> {r[(s, 4)]:.3f} ({100 * (1 - r[(s, 4)] / r[(s, 3)]):.0f}%)"
            for s in stages) + " |")
    lines += ["", f"## Stages `--bitrate {bitrate:g}` picks ({n_files} clips, real compress)", ""]
    for name, label in (("context", f"now ({info.model_id.hex()[:8]}, version 4)"),
                        ("before", f"before ({before.info.model_id.hex()[:8]}, version 3)"
                         if before is not None else "")):
        if name not in caps:
            continue
        counts = caps[name].value_counts().sort_index()
        spread = ", ".join(f"{int(s)} stages: {int(n)}" for s, n in counts.items())
        per_family = caps.groupby("family")[name].agg(lambda x: x.value_counts().idxmax())
        mean_stages = caps.groupby("family")[name].mean()
        lines.append(f"- {label}: {spread}; mean stages {caps[name].mean():.2f} (per family: "
                     f"{', '.join(f'{f} {m:.2f}' for f, m in mean_stages.items())}; most "
                     f"common: {', '.join(f'{f} {int(s)}' for f, s in per_family.items())}); "
                     f"mean file rate {caps[f'{name}_kbps'].mean():.3f} kbit/s")
    lines.append("")
    return "\n".join(lines)


def _plot(path: Path, table, file_rates, bitrate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (label, part), marker in zip(table.groupby("clips", sort=False), ("o", "s")):
        axes[0].plot(part.stages, part.static_bps, marker + "-", c="C0",
                     label=f"static, {label}")
        axes[0].plot(part.stages, part.context_bps, marker + "--", c="C1",
                     label=f"context, {label}")
    axes[0].set_title("ideal code length of the indices")
    axes[0].set_ylabel("bit/s of audio (payload)")
    axes[1].plot(file_rates.index, 1000 * file_rates[3], "o-", c="C0", label="version 3 (static)")
    axes[1].plot(file_rates.index, 1000 * file_rates[4], "o--", c="C1",
                 label="version 4 (context)")
    axes[1].axhline(1000 * bitrate, c="gray", ls=":", label=f"--bitrate {bitrate:g}")
    axes[1].set_title("real .vqz files (mean, benchmark clips)")
    axes[1].set_ylabel("bit/s (whole file)")
    for ax in axes:
        ax.set_xlabel("RVQ stages")
        ax.set_xticks(sorted(table.stages.unique()))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
