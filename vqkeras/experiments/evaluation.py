"""Evaluate a trained run on a split: per-clip errors, summary, error per frequency.

Writes ``<run>/evaluation/<split>/per_clip.csv``, ``summary.json`` and (audio
only) ``error_per_frequency.csv``; `load_evaluation` reads them back.

Metrics (per clip):

- ``mse`` / ``sse``: mean / sum of squared errors between the input
  spectrogram image and its reconstruction (both in [0, 1]); the thesis's
  "MSE" was the per-spectrogram SSE.
- ``spectral_convergence_db``: linear-magnitude error of the reconstructed
  spectrogram against the STFT of the original audio (lower is better).
- ``log_spectral_distance_db`` and ``snr_db``: on the waveform after phase
  reconstruction (`invert_magnitude`), against the original audio.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqkeras.experiments.config import ExperimentConfig, input_shape, latent_bits, load_config
from vqkeras.files import atomic_path, atomic_write_text

__all__ = ["EvaluationResult", "evaluate", "load_evaluation"]

log = logging.getLogger(__name__)

_LABELS = {"mse": "MSE", "sse": "SSE", "spectral_convergence_db": "spectral convergence (dB)",
           "log_spectral_distance_db": "log-spectral distance (dB)", "snr_db": "SNR (dB)"}


@dataclass
class EvaluationResult:
    """Errors of one run on one split.

    Attributes
    ----------
    per_clip : pandas.DataFrame
        One row per clip: ``clip_id``, ``mse``, ``sse`` and, for audio,
        ``spectral_convergence_db``, ``log_spectral_distance_db``, ``snr_db``
        (NaN for clips beyond ``phase_reconstruction.max_clips``).
    summary : dict
        Means of the per-clip columns for the trained model.
    untrained_summary : dict
        ``mse``, ``sse`` (and spectral convergence) of the same model at initialisation.
    error_per_frequency : np.ndarray [shape=(bins,)] or None
        Mean squared image error per frequency bin (over time and clips).
    frequencies_hz : np.ndarray [shape=(bins,)] or None
    """

    per_clip: object
    summary: dict
    untrained_summary: dict
    error_per_frequency: np.ndarray | None
    frequencies_hz: np.ndarray | None
    run_dir: Path
    split: str
    info: dict = field(default_factory=dict)

    def summary_text(self) -> str:
        """One readable paragraph: the means, with the untrained baseline for comparison."""
        name = self.info.get("run", str(self.run_dir))
        lines = [f"{name} ({self.split}, {len(self.per_clip)} clips, "
                 f"latent {self.info.get('latent_bits', '?')} bits):"]
        for key, value in self.summary.items():
            if key in _LABELS and value is not None:
                base = self.untrained_summary.get(key)
                extra = f"  (untrained {base:.4g})" if base is not None else ""
                lines.append(f"  {_LABELS[key]:<28} {value:.4g}{extra}")
        return "\n".join(lines)


def _per_example(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = (a.astype("float64") - b.astype("float64")) ** 2
    return fn(diff.reshape(len(diff), -1), axis=1)


def _predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype="float32")


def evaluate(config: ExperimentConfig | str | Path | dict, *, run_dir: str | Path | None = None,
             split: str = "test", phase_iterations: int | None = None,
             batch_size: int | None = None) -> EvaluationResult:
    """Evaluate a trained run on a split and save the results in its run folder.

    Parameters
    ----------
    config : ExperimentConfig, path or dict
        One run (as trained by `vqkeras.experiments.training.train`).
    run_dir : str or Path, optional
        Default ``config.run_dir()``.
    split : {"train", "valid", "test"}
    phase_iterations : int, optional
        `invert_magnitude` iterations (default ``phase_reconstruction.n_iter``);
        0 skips the waveform metrics.
    batch_size : int, optional
        Prediction batch size (default ``training.batch_size``).

    Returns
    -------
    EvaluationResult
    """
    import keras

    from vqkeras.experiments.datasets import load_split
    from vqkeras.experiments.models import build_model
    from vqkeras.experiments.training import MODEL_FILE, check_backend
    from vqkeras.experiments.models import load_model

    config = load_config(config)
    check_backend(config)
    run_dir = Path(run_dir) if run_dir is not None else config.run_dir()
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no trained model ({MODEL_FILE}); train the run first")
    batch_size = batch_size or config.training.batch_size
    data = load_split(config, split)
    model = load_model(model_path)
    recon = _predict(model, data.images, batch_size)
    # The "untrained" baseline: the same architecture at its seeded initialisation.
    keras.utils.set_random_seed(config.seed)
    untrained = _predict(build_model(config.model, input_shape(config)), data.images, batch_size)

    import pandas as pd

    table = {"clip_id": data.ids,
             "mse": _per_example(np.mean, recon, data.images),
             "sse": _per_example(np.sum, recon, data.images)}
    untrained_summary = {"mse": float(np.mean(_per_example(np.mean, untrained, data.images))),
                         "sse": float(np.mean(_per_example(np.sum, untrained, data.images)))}
    error_per_frequency = frequencies = None
    info = {"run": f"{config.name}/{config.run_name}", "split": split, "num_clips": len(data),
            "latent_bits": latent_bits(config), "model_kind": config.model.kind}
    if config.dataset.is_audio:
        audio = _audio_metrics(config, data, recon, untrained, phase_iterations)
        table.update(audio.pop("per_clip"))
        untrained_summary.update(audio.pop("untrained"))
        info.update(audio.pop("info"))
        error_per_frequency = np.mean((recon.astype("float64") - data.images) ** 2, axis=(0, 1, 3))
        frequencies = np.arange(len(error_per_frequency)) * config.spectrogram.sample_rate \
            / config.spectrogram.frame_length
    per_clip = pd.DataFrame(table)
    summary = {k: float(np.nanmean(per_clip[k])) if per_clip[k].notna().any() else float("nan")
               for k in per_clip.columns if k != "clip_id"}
    result = EvaluationResult(per_clip, summary, untrained_summary, error_per_frequency, frequencies,
                              run_dir, split, info)
    _save(result)
    log.debug("%s", result.summary_text())
    return result


def _audio_metrics(config: ExperimentConfig, data, recon: np.ndarray, untrained: np.ndarray,
                   phase_iterations: int | None) -> dict:
    from vqkeras.features import image_to_magnitude, stft_magnitude
    from vqkeras.metrics import log_spectral_distance, snr_db, spectral_convergence_db
    from vqkeras.phase import invert_magnitude

    spec = config.spectrogram_config()
    target = stft_magnitude(data.waveforms, spec)
    estimate = image_to_magnitude(recon, spec, num_frames=target.shape[1])
    untrained_estimate = image_to_magnitude(untrained, spec, num_frames=target.shape[1])
    n = len(data)
    per_clip = {"spectral_convergence_db": np.asarray(spectral_convergence_db(target, estimate, batched=True)),
                "log_spectral_distance_db": np.full(n, np.nan), "snr_db": np.full(n, np.nan)}
    phase = config.phase_reconstruction
    n_iter = phase.n_iter if phase_iterations is None else int(phase_iterations)
    count = 0 if n_iter <= 0 else min(n, phase.max_clips or n)
    chunk = 16  # bounds memory of the batched inversion
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        waves = np.asarray(invert_magnitude(
            estimate[start:stop], frame_length=spec.frame_length, frame_step=spec.frame_step,
            n_iter=n_iter, learning_rate=phase.learning_rate, init=phase.init,
            init_iter=phase.init_iter, length=data.waveforms.shape[1], seed=config.seed))
        for i, wave in enumerate(waves, start=start):
            reference = data.waveforms[i]
            per_clip["log_spectral_distance_db"][i] = log_spectral_distance(reference, wave)
            per_clip["snr_db"][i] = snr_db(reference, wave)
    untrained_sc = np.asarray(spectral_convergence_db(target, untrained_estimate, batched=True))
    return {"per_clip": per_clip,
            "untrained": {"spectral_convergence_db": float(np.mean(untrained_sc))},
            "info": {"phase_iterations": n_iter, "phase_clips": count}}


def _save(result: EvaluationResult) -> None:
    out = result.run_dir / "evaluation" / result.split
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "per_clip.csv") as tmp:
        result.per_clip.to_csv(tmp, index=False)
    payload = {"trained": result.summary, "untrained": result.untrained_summary, **result.info}
    # Standard JSON: NaN (e.g. no waveform metrics) is written as null.
    payload = json.loads(json.dumps(payload), parse_constant=lambda _: None)
    atomic_write_text(out / "summary.json", json.dumps(payload, indent=1) + "\n")
    if result.error_per_frequency is not None:
        lines = ["frequency_hz,mse"] + [f"{f:.6g},{e:.8g}" for f, e in
                                        zip(result.frequencies_hz, result.error_per_frequency)]
        atomic_write_text(out / "error_per_frequency.csv", "\n".join(lines) + "\n")


def load_evaluation(run_dir: str | Path, split: str = "test") -> EvaluationResult:
    """Read an evaluation saved by `evaluate` (no recomputation)."""
    import pandas as pd

    run_dir = Path(run_dir)
    out = run_dir / "evaluation" / split
    if not (out / "summary.json").is_file():
        raise FileNotFoundError(f"{out}: no evaluation saved; run vqkeras.experiments.evaluation.evaluate first")
    payload = json.loads((out / "summary.json").read_text())
    per_clip = pd.read_csv(out / "per_clip.csv", dtype={"clip_id": str})
    errors = freqs = None
    if (out / "error_per_frequency.csv").is_file():
        table = pd.read_csv(out / "error_per_frequency.csv")
        freqs, errors = table["frequency_hz"].to_numpy(), table["mse"].to_numpy()
    info = {k: v for k, v in payload.items() if k not in ("trained", "untrained")}
    return EvaluationResult(per_clip, payload["trained"], payload["untrained"], errors, freqs,
                            run_dir, split, info)
