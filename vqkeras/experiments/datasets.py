"""Map an experiment's ``dataset`` section to model-ready arrays.

NSynth-layout audio becomes time-first spectrogram images through
`vqkeras.features`; Fashion-MNIST / MNIST / CIFAR-10 become float images in
[0, 1]. Results are cached in memory per (dataset, spectrogram, split), so the
runs of a sweep share one load.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vqkeras.experiments.config import ExperimentConfig, input_shape
from vqkeras.errors import DatasetError

__all__ = ["Split", "load_split", "spread_indices"]

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Split:
    """One split of a dataset, ready for the model.

    Attributes
    ----------
    images : np.ndarray, float32 [shape=(n, *input_shape)], in [0, 1]
    waveforms : np.ndarray, float32 [shape=(n, samples)] or None
        The audio the images were computed from (NSynth only).
    ids : list of str
        Clip ids (NSynth ``note_str``, or ``"<split>-<index>"`` for images).
    levels : np.ndarray, float32 [shape=(n, 2)] or None
        Per-clip ``(floor_db, peak_db)`` under the thesis's per-clip
        spectrogram scaling (what `vqkeras.features.image_to_magnitude` needs
        to invert it); None otherwise.
    """

    images: np.ndarray
    waveforms: np.ndarray | None
    ids: list[str]
    levels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


def spread_indices(n: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``range(n)`` (all of them if ``limit`` is None).

    Evenly spread rather than the first ``limit``, so a capped NSynth split
    still covers every instrument and pitch of the sorted example list.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def load_split(config: ExperimentConfig, split: str) -> Split:
    """Images (and waveforms) of one split of ``config.dataset``.

    Parameters
    ----------
    config : ExperimentConfig
    split : {"train", "valid", "test"}

    Returns
    -------
    Split

    Raises
    ------
    DatasetError
        If the dataset folder or files are missing or empty.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}. Received: split={split!r}")
    ds = config.dataset
    limit = {"train": ds.max_train, "valid": ds.max_valid, "test": ds.max_test}[split]
    key = (json.dumps(_dataset_key(config), sort_keys=True), split, limit)
    return _cached_split(*key)


def _dataset_key(config: ExperimentConfig) -> dict:
    from dataclasses import asdict

    key = {"dataset": asdict(config.dataset), "shape": list(input_shape(config))}
    # Absolute, so a relative root means the same folder whatever the cwd later is.
    key["dataset"]["root"] = str(config.dataset.resolved_root.resolve())
    if config.dataset.is_audio:
        key["spectrogram"] = asdict(config.spectrogram)
        key["time_multiple"] = config.model.time_stride
        key["freq_multiple"] = config.model.freq_stride
    return key


@functools.lru_cache(maxsize=8)
def _cached_split(key_json: str, split: str, limit: int | None) -> Split:
    key = json.loads(key_json)
    ds = key["dataset"]
    if ds["name"] == "nsynth":
        return _nsynth_split(key, split, limit)
    return _image_split(key, split, limit)


def _nsynth_split(key: dict, split: str, limit: int | None) -> Split:
    from vqkeras.data.nsynth import NSynthDataset
    from vqkeras.features import SpectrogramConfig, clip_levels, magnitude_to_image, stft_magnitude

    ds, spec = key["dataset"], key["spectrogram"]
    root = Path(ds["root"] or "data/nsynth-rendered")
    if not root.is_dir():
        raise DatasetError(f"{root}: NSynth-layout dataset folder not found (render one with "
                           f"`vqkeras data render --out {root}`)")
    filters = {k: ds[k] for k in ("families", "sources", "pitch_range", "velocities")
               if ds[k] is not None}
    if "pitch_range" in filters:
        filters["pitch_range"] = tuple(filters["pitch_range"])
    num_samples = int(round(spec["duration"] * spec["sample_rate"]))
    dataset = NSynthDataset(root, split, max_examples=limit, num_samples=num_samples,
                            sample_rate=spec["sample_rate"], **filters)
    waves = dataset.load_waveforms().astype("float32")  # drops unreadable examples
    examples = dataset.examples
    if not examples:
        raise DatasetError(f"{root}: the {split!r} split has no (readable) examples matching "
                           f"the filters {filters}")
    spectrogram_config = SpectrogramConfig(**spec)
    crop = dict(time_multiple=key["time_multiple"], freq_multiple=key["freq_multiple"])
    magnitude = stft_magnitude(waves, spectrogram_config)
    images = np.asarray(magnitude_to_image(magnitude, spectrogram_config, **crop), dtype="float32")
    levels = (clip_levels(magnitude, spectrogram_config, **crop)
              if spectrogram_config.scaling == "per_clip" else None)
    del magnitude
    if tuple(images.shape[1:]) != tuple(key["shape"]):
        raise DatasetError(f"spectrogram images have shape {images.shape[1:]}, the model expects "
                           f"{tuple(key['shape'])}")  # a features/config mismatch: should not happen
    log.info("loaded %d %s clips from %s -> images %s", len(examples), split, root, images.shape)
    return Split(images=images, waveforms=waves, ids=[e["note_str"] for e in examples], levels=levels)


def _image_split(key: dict, split: str, limit: int | None) -> Split:
    ds = key["dataset"]
    name = ds["name"]
    from vqkeras.experiments.config import DEFAULT_ROOTS

    root = Path(ds["root"] or DEFAULT_ROOTS[name])
    if name == "cifar10":
        from vqkeras.data.cifar10 import load_cifar10 as loader
    else:
        from vqkeras.data.mnist import load_mnist as loader
    if split == "test":
        x = np.asarray(loader(root, "test")[0])
    else:
        # No validation split in these sets: hold out the last fraction of train.
        x_train = np.asarray(loader(root, "train")[0])
        n_valid = max(1, int(round(len(x_train) * ds["valid_fraction"])))
        x = x_train[-n_valid:] if split == "valid" else x_train[:-n_valid]
    indices = spread_indices(len(x), limit)
    x = x[indices]
    images = x.astype("float32")
    if images.max(initial=0.0) > 1.0:
        images = images / 255.0
    if images.ndim == 3:
        images = images[..., None]
    if tuple(images.shape[1:]) != tuple(key["shape"]):
        raise DatasetError(f"{root}: images have shape {images.shape[1:]}, expected {tuple(key['shape'])}")
    return Split(images=images, waveforms=None, ids=[f"{split}-{i}" for i in indices])
