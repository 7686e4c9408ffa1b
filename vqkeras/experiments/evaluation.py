"""Evaluate a trained run on a split: per-clip errors, baselines, collapse check.

Writes ``<run>/evaluation/<split>/per_clip.csv``, ``summary.json`` and (audio
only) ``error_per_frequency.csv``; `load_evaluation` reads them back.

Metrics (per clip), all on the model's output clipped to [0, 1], the range of
the data (the output layer is linear; clipping is for metrics only):

- ``mse`` / ``sse``: mean / sum of squared errors between the input image and
  its reconstruction; the thesis's "MSE" was the per-spectrogram SSE.
- ``spectral_convergence_db``: linear-magnitude error of the reconstructed
  spectrogram against the STFT of the original audio (lower is better).
- ``log_spectral_distance_db`` and ``snr_db``: on the waveform after phase
  reconstruction (`invert_magnitude`), against the original audio.
- ``harmonic_error_ratio`` (audio): mean squared error at the clip's loudest
  5% of frequency bins (its harmonics, for a pitched note) over the mean error
  at the other bins; above 1, the error concentrates at the harmonics.

Baselines, computed from the data, that any useful model must beat: the zero
image, the training set's mean image and, for audio, the training set's mean
spectrum (mean over clips and time, per frequency bin). A run is flagged
``collapsed`` when its output no longer depends on its input (the spread of
its outputs across clips is under 1% of the inputs', or its error is within
1% of a baseline's), and ``worse than baseline`` when a baseline beats it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqkeras.experiments.config import ExperimentConfig, latent_bits, load_config
from vqkeras.files import atomic_path, atomic_write_text

__all__ = ["BASELINES", "EvaluationResult", "baseline_images", "collapse_status", "evaluate",
           "harmonic_error_ratio", "load_evaluation"]

log = logging.getLogger(__name__)

_LABELS = {"mse": "MSE", "sse": "SSE", "spectral_convergence_db": "spectral convergence (dB)",
           "log_spectral_distance_db": "log-spectral distance (dB)", "snr_db": "SNR (dB)",
           "harmonic_error_ratio": "harmonic error ratio"}
#: Baseline names, in table order: what each predicts for every clip.
BASELINES = {"zero": "the all-zero image",
             "mean_image": "the training set's mean image",
             "mean_spectrum": "the training set's mean spectrum per frequency (audio)"}
#: A run whose error is within this fraction of a baseline's, or whose outputs
#: spread less than this fraction of the inputs', is flagged as collapsed.
COLLAPSE_TOLERANCE = 0.01
#: Fraction of a clip's loudest bins counted as its harmonics.
HARMONIC_FRACTION = 0.05


@dataclass
class EvaluationResult:
    """Errors of one run on one split.

    Attributes
    ----------
    per_clip : pandas.DataFrame
        One row per clip: ``clip_id``, ``mse``, ``sse`` and, for audio,
        ``spectral_convergence_db``, ``harmonic_error_ratio``,
        ``log_spectral_distance_db``, ``snr_db`` (NaN for clips beyond
        ``phase_reconstruction.max_clips``).
    summary : dict
        Means of the per-clip columns, plus ``output_spread_ratio``.
    baselines : dict of str -> dict
        For each of `BASELINES` that applies: its ``mse``, ``sse`` (and
        ``spectral_convergence_db``) on the same clips.
    status : str
        ``"ok"``, ``"collapsed"`` or ``"worse than baseline"`` (see `collapse_status`).
    error_per_frequency : np.ndarray [shape=(bins,)] or None
        Mean squared image error per frequency bin (over time and clips).
    frequencies_hz : np.ndarray [shape=(bins,)] or None
    """

    per_clip: object
    summary: dict
    baselines: dict
    status: str
    error_per_frequency: np.ndarray | None
    frequencies_hz: np.ndarray | None
    run_dir: Path
    split: str
    info: dict = field(default_factory=dict)

    @property
    def best_baseline(self) -> tuple[str, float]:
        """The strongest baseline: ``(name, mse)``."""
        name = min(self.baselines, key=lambda k: self.baselines[k]["mse"])
        return name, float(self.baselines[name]["mse"])

    @property
    def improvement_factor(self) -> float:
        """How many times lower the run's MSE is than the strongest baseline's."""
        return self.best_baseline[1] / max(float(self.summary["mse"]), 1e-30)

    def summary_text(self) -> str:
        """One readable paragraph: the means, next to the strongest baseline."""
        name = self.info.get("run", str(self.run_dir))
        best, _ = self.best_baseline
        lines = [f"{name} ({self.split}, {len(self.per_clip)} clips, "
                 f"latent {self.info.get('latent_bits', '?')} bits): {self.status.upper()}"]
        for key, value in self.summary.items():
            if key in _LABELS and value is not None and value == value:
                base = self.baselines[best].get(key)
                extra = f"  (best baseline, {best}: {base:.4g})" if base is not None else ""
                lines.append(f"  {_LABELS[key]:<28} {value:.4g}{extra}")
        return "\n".join(lines)


def _per_example(fn, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    diff = (a.astype("float64") - b.astype("float64")) ** 2
    return fn(diff.reshape(len(diff), -1), axis=1)


def _predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype="float32")


def baseline_images(train_images: np.ndarray, *, audio: bool) -> dict[str, np.ndarray]:
    """The baselines' predictions, one image each (the same for every clip).

    Parameters
    ----------
    train_images : np.ndarray [shape=(n, height, width, channels)]
        The training split (the baselines only see training data).
    audio : bool
        Add the mean spectrum: time-first spectrogram images averaged over
        clips and time, per frequency bin, repeated over time.

    Returns
    -------
    dict of str -> np.ndarray [shape=(height, width, channels)]
    """
    train = np.asarray(train_images, dtype="float64")
    mean_image = train.mean(axis=0)
    out = {"zero": np.zeros_like(mean_image), "mean_image": mean_image}
    if audio:
        out["mean_spectrum"] = np.broadcast_to(mean_image.mean(axis=0, keepdims=True), mean_image.shape)
    return {k: np.ascontiguousarray(v, dtype="float32") for k, v in out.items()}


def harmonic_error_ratio(images: np.ndarray, reconstructions: np.ndarray, *,
                         fraction: float = HARMONIC_FRACTION) -> np.ndarray:
    """Per clip: mean squared error at its loudest bins over the mean error at the others.

    The loudest ``fraction`` of frequency bins (by the clip's time-averaged
    image) are its harmonics for a pitched note. Above 1: the error
    concentrates at the harmonics.

    Parameters
    ----------
    images, reconstructions : np.ndarray [shape=(n, frames, bins, 1)]

    Returns
    -------
    np.ndarray [shape=(n,)]
    """
    images = np.asarray(images, dtype="float64")[..., 0]
    errors = ((np.asarray(reconstructions, dtype="float64")[..., 0] - images) ** 2).mean(axis=1)
    loudness = images.mean(axis=1)                                   # (n, bins)
    k = max(1, int(round(fraction * loudness.shape[1])))
    top = np.argsort(loudness, axis=1)[:, -k:]
    mask = np.zeros(loudness.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    at_peaks = np.where(mask, errors, 0.0).sum(axis=1) / k
    elsewhere = np.where(mask, 0.0, errors).sum(axis=1) / (loudness.shape[1] - k)
    return at_peaks / np.maximum(elsewhere, 1e-30)


def collapse_status(mse: float, baseline_mse: dict[str, float], output_spread_ratio: float, *,
                    tolerance: float = COLLAPSE_TOLERANCE) -> str:
    """``"collapsed"``, ``"worse than baseline"`` or ``"ok"``.

    Parameters
    ----------
    mse : float
        The run's mean test error.
    baseline_mse : dict of str -> float
        Each baseline's error on the same clips.
    output_spread_ratio : float
        Variance of the run's outputs across clips (mean over pixels) over the
        same for the inputs: about 0 when the output ignores the input.
    tolerance : float
        Relative closeness to a baseline, and the spread below which the
        output counts as constant.
    """
    near = any(abs(mse - b) <= tolerance * b for b in baseline_mse.values())
    if output_spread_ratio < tolerance or near:
        return "collapsed"
    if mse > min(baseline_mse.values()):
        return "worse than baseline"
    return "ok"


def _spread(images: np.ndarray) -> float:
    return float(np.mean(np.var(np.asarray(images, dtype="float64"), axis=0)))


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
        ``status`` says whether the run collapsed; a collapsed run is also
        logged as a warning.
    """
    from vqkeras.experiments.datasets import load_split
    from vqkeras.experiments.models import load_model
    from vqkeras.experiments.training import MODEL_FILE, check_backend

    config = load_config(config)
    check_backend(config)
    run_dir = Path(run_dir) if run_dir is not None else config.run_dir()
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        raise FileNotFoundError(f"{run_dir}: no trained model ({MODEL_FILE}); train the run first")
    batch_size = batch_size or config.training.batch_size
    data = load_split(config, split)
    model = load_model(model_path)
    raw = _predict(model, data.images, batch_size)
    recon = np.clip(raw, 0.0, 1.0)  # the data's range: metrics only, never in training
    audio = config.dataset.is_audio
    baselines_img = baseline_images(load_split(config, "train").images, audio=audio)

    import pandas as pd

    table = {"clip_id": data.ids,
             "mse": _per_example(np.mean, recon, data.images),
             "sse": _per_example(np.sum, recon, data.images)}
    baselines = {}
    for name, image in baselines_img.items():
        constant = np.broadcast_to(image, data.images.shape)
        baselines[name] = {"mse": float(np.mean(_per_example(np.mean, constant, data.images))),
                           "sse": float(np.mean(_per_example(np.sum, constant, data.images)))}
    error_per_frequency = frequencies = None
    info = {"run": f"{config.name}/{config.run_name}", "split": split, "num_clips": len(data),
            "latent_bits": latent_bits(config), "model_kind": config.model.kind}
    if audio:
        metrics = _audio_metrics(config, data, recon, baselines_img, phase_iterations)
        table.update(metrics.pop("per_clip"))
        for name, values in metrics.pop("baselines").items():
            baselines[name].update(values)
        info.update(metrics.pop("info"))
        table["harmonic_error_ratio"] = harmonic_error_ratio(data.images, recon)
        error_per_frequency = np.mean((recon.astype("float64") - data.images) ** 2, axis=(0, 1, 3))
        frequencies = np.arange(len(error_per_frequency)) * config.spectrogram.sample_rate \
            / config.spectrogram.frame_length
    per_clip = pd.DataFrame(table)
    summary = {k: float(np.nanmean(per_clip[k])) if per_clip[k].notna().any() else float("nan")
               for k in per_clip.columns if k != "clip_id"}
    # Input dependence: a model whose outputs barely vary across clips has collapsed.
    summary["output_spread_ratio"] = _spread(recon) / max(_spread(data.images), 1e-30)
    status = collapse_status(summary["mse"], {k: v["mse"] for k, v in baselines.items()},
                             summary["output_spread_ratio"])
    result = EvaluationResult(per_clip, summary, baselines, status, error_per_frequency, frequencies,
                              run_dir, split, info)
    _save(result)
    if status != "ok":
        best, best_mse = result.best_baseline
        log.warning("%s: %s (test MSE %.4g; %s baseline %.4g; output spread %.3g of the input's)",
                    info["run"], status.upper(), summary["mse"], best, best_mse,
                    summary["output_spread_ratio"])
    log.debug("%s", result.summary_text())
    return result


def _audio_metrics(config: ExperimentConfig, data, recon: np.ndarray, baselines: dict[str, np.ndarray],
                   phase_iterations: int | None) -> dict:
    from vqkeras.features import image_to_magnitude, stft_magnitude
    from vqkeras.metrics import log_spectral_distance, snr_db, spectral_convergence_db
    from vqkeras.phase import invert_magnitude

    spec = config.spectrogram_config()
    target = stft_magnitude(data.waveforms, spec)

    def magnitude(images):
        return image_to_magnitude(images, spec, num_frames=target.shape[1], levels=data.levels)

    estimate = magnitude(recon)
    n = len(data)
    per_clip = {"spectral_convergence_db": np.asarray(spectral_convergence_db(target, estimate, batched=True)),
                "log_spectral_distance_db": np.full(n, np.nan), "snr_db": np.full(n, np.nan)}
    baseline_sc = {}
    for name, image in baselines.items():
        sc = spectral_convergence_db(target, magnitude(np.broadcast_to(image, recon.shape)), batched=True)
        baseline_sc[name] = {"spectral_convergence_db": float(np.mean(sc))}
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
    return {"per_clip": per_clip, "baselines": baseline_sc,
            "info": {"phase_iterations": n_iter, "phase_clips": count}}


def _save(result: EvaluationResult) -> None:
    out = result.run_dir / "evaluation" / result.split
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "per_clip.csv") as tmp:
        result.per_clip.to_csv(tmp, index=False)
    payload = {"trained": result.summary, "baselines": result.baselines, "status": result.status,
               **result.info}
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
    if "baselines" not in payload:
        raise FileNotFoundError(f"{out}: evaluation saved by an older vqkeras (no baselines); "
                                f"evaluate the run again")
    info = {k: v for k, v in payload.items() if k not in ("trained", "baselines", "status")}
    return EvaluationResult(per_clip, payload["trained"], payload["baselines"], payload["status"],
                            errors, freqs, run_dir, split, info)
