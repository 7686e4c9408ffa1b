"""Typed, validated experiment configuration (one YAML file per experiment).

An experiment YAML has the sections ``dataset``, ``spectrogram``, ``model``,
``training``, ``phase_reconstruction`` and an optional ``sweep``, plus the
top-level keys ``name``, ``description``, ``backend``, ``seed`` and
``runs_root``. `load_config` turns it into an `ExperimentConfig`; every
unknown key or bad value raises `vqkeras.errors.ConfigError` naming the full
key path, the allowed values, and close matches for typos.

>>> cfg = load_config({"name": "demo", "model": {"num_embeddings": 64}})
>>> cfg.model.num_embeddings, cfg.run_name
(64, 'main')
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqkeras.errors import ConfigError

__all__ = [
    "DatasetConfig", "ExperimentConfig", "ModelConfig", "PhaseReconstructionConfig",
    "SpectrogramSection", "TrainingConfig", "input_shape", "latent_bits", "latent_shape",
    "load_config",
]

DATASETS = ["nsynth", "fashion-mnist", "mnist", "cifar10"]
IMAGE_SHAPES = {"fashion-mnist": (28, 28, 1), "mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
DEFAULT_ROOTS = {
    "nsynth": "data/nsynth-rendered",
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": "data/mnist",
    "cifar10": "data/cifar-10-batches-py",
}
PRECISIONS = ["float32", "mixed_bfloat16", "mixed_float16"]
# Short names used in sweep run names ("vq-K64", "ae-D2").
SHORT_KEYS = {"num_embeddings": "K", "embedding_dim": "D", "num_hiddens": "H", "num_stages": "S"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


# --------------------------------------------------------------------------- checks
def _spec(default: Any, kind: str, **rules: Any) -> Any:
    """A dataclass field carrying its validation rule (kind + constraints)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: copy.deepcopy(d),
                     metadata={"kind": kind, **rules})
    return field(default=default, metadata={"kind": kind, **rules})


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(path: str, value: Any, kind: str, rules: Mapping[str, Any]) -> Any:
    """Validate (and normalise) one value; raise ConfigError naming `path`."""
    if value is None:
        if rules.get("optional"):
            return None
        raise ConfigError(f"{path}: a value is required, got null")
    choices = rules.get("choices")
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{path}: {value!r} is not one of {choices}{_suggest(value, choices)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        if rules.get("name") and not _NAME_RE.match(value):
            raise ConfigError(f"{path}: expected a folder-safe name (letters, digits, '._=+-'), got {value!r}")
        return value
    if kind in ("int", "float"):
        if not _is_number(value) or (kind == "int" and not float(value).is_integer()):
            what = "an integer" if kind == "int" else "a number"
            if rules.get("positive"):
                what = "a positive integer" if kind == "int" else "a positive number"
            raise ConfigError(f"{path}: expected {what}, got {value!r}")
        number = int(value) if kind == "int" else float(value)
        if rules.get("positive") and number <= 0:
            what = "a positive integer" if kind == "int" else "a positive number"
            raise ConfigError(f"{path}: expected {what}, got {value!r}")
        low, high = rules.get("min"), rules.get("max")
        if (low is not None and number < low) or (high is not None and number > high):
            what = "an integer" if kind == "int" else "a number"
            bounds = (f"in [{low}, {high}]" if low is not None and high is not None
                      else f">= {low}" if low is not None else f"<= {high}")
            raise ConfigError(f"{path}: expected {what} {bounds}, got {value!r}")
        return number
    if kind in ("str_list", "int_list"):
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{path}: expected a non-empty list, got {value!r}")
        item_kind = "str" if kind == "str_list" else "int"
        return [_check_value(f"{path}[{i}]", v, item_kind, {}) for i, v in enumerate(value)]
    if kind == "int_pair":
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(f"{path}: expected a list [low, high], got {value!r}")
        return [_check_value(f"{path}[{i}]", v, "int", {}) for i, v in enumerate(value)]
    if kind == "strides":
        if (not isinstance(value, (list, tuple)) or not value
                or not all(isinstance(s, (list, tuple)) and len(s) == 2 for s in value)):
            raise ConfigError(f"{path}: expected a non-empty list of [time, freq] pairs "
                              f"such as [[2, 2], [2, 2]], got {value!r}")
        return [[_check_value(f"{path}[{i}][{j}]", v, "int", {"positive": True})
                 for j, v in enumerate(pair)] for i, pair in enumerate(value)]
    raise AssertionError(f"unknown kind {kind}")  # pragma: no cover - programming error


def _from_mapping(cls: type, data: Any, path: str) -> Any:
    """Build the dataclass `cls` from a mapping, checking keys and values."""
    prefix = f"{path}." if path else ""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys to values, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            allowed = sorted(fields)
            raise ConfigError(f"{prefix}{key}: unknown key{_suggest(key, allowed)}; "
                              f"allowed keys: {allowed}")
        meta = fields[key].metadata
        if "section" in meta:
            kwargs[key] = _from_mapping(meta["section"], value, f"{prefix}{key}")
        elif "kind" in meta:
            kwargs[key] = _check_value(f"{prefix}{key}", value, meta["kind"], meta)
        else:
            kwargs[key] = value
    obj = cls(**kwargs)
    if hasattr(obj, "_validate"):
        obj._validate(path)
    return obj


# --------------------------------------------------------------------------- sections
@dataclass
class DatasetConfig:
    """Which data to train on, where it lives, and how much of it."""

    name: str = _spec("nsynth", "str", choices=DATASETS)
    root: str | None = _spec(None, "str", optional=True)  # None -> DEFAULT_ROOTS[name]
    max_train: int | None = _spec(None, "int", positive=True, optional=True)
    max_valid: int | None = _spec(None, "int", positive=True, optional=True)
    max_test: int | None = _spec(None, "int", positive=True, optional=True)
    # NSynth filters (passed to vqkeras.data.NSynthDataset); ignored for images.
    families: list[str] | None = _spec(None, "str_list", optional=True)
    sources: list[str] | None = _spec(None, "str_list", optional=True)
    pitch_range: list[int] | None = _spec(None, "int_pair", optional=True)
    velocities: list[int] | None = _spec(None, "int_list", optional=True)
    # Image datasets have no validation split: the last fraction of train is held out.
    valid_fraction: float = _spec(0.1, "float", min=0.0, max=0.5)

    def _validate(self, path: str) -> None:
        from vqkeras.data.gm_families import NSYNTH_FAMILIES, NSYNTH_SOURCES

        for key, known in (("families", NSYNTH_FAMILIES), ("sources", NSYNTH_SOURCES)):
            for i, value in enumerate(getattr(self, key) or []):
                if value not in known:
                    raise ConfigError(f"{path}.{key}[{i}]: {value!r} is not one of {list(known)}"
                                      f"{_suggest(value, list(known))}")

    @property
    def resolved_root(self) -> Path:
        return Path(self.root if self.root is not None else DEFAULT_ROOTS[self.name])

    @property
    def is_audio(self) -> bool:
        return self.name == "nsynth"


@dataclass
class SpectrogramSection:
    """STFT and image scaling (mirrors `vqkeras.features.SpectrogramConfig`)."""

    sample_rate: int = _spec(16000, "int", positive=True)
    frame_length: int = _spec(512, "int", positive=True)
    frame_step: int = _spec(128, "int", positive=True)
    duration: float = _spec(4.0, "float", positive=True)
    dynamic_range_db: float = _spec(100.0, "float", positive=True)
    # "fixed": one invertible dB mapping for all clips (the codec needs it);
    # "per_clip": the thesis's per-clip min-max scaling (see vqkeras.features).
    scaling: str = _spec("fixed", "str", choices=["fixed", "per_clip"])

    def _validate(self, path: str) -> None:
        if self.frame_step > self.frame_length:
            raise ConfigError(f"{path}.frame_step: must be <= frame_length ({self.frame_length}), "
                              f"got {self.frame_step}")
        if self.frame_length % 2:
            raise ConfigError(f"{path}.frame_length: expected an even number, got {self.frame_length}")

    @property
    def num_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))


@dataclass
class ModelConfig:
    """Encoder/decoder sizes and the quantizer (thesis: n_units = num_hiddens)."""

    kind: str = _spec("vqvae", "str", choices=["vqvae", "autoencoder"])
    num_hiddens: int = _spec(128, "int", positive=True)
    num_residual_layers: int = _spec(2, "int", min=0)
    num_residual_hiddens: int = _spec(32, "int", positive=True)
    strides: list[list[int]] = _spec([[2, 2], [2, 2]], "strides")
    embedding_dim: int = _spec(64, "int", positive=True)
    num_embeddings: int = _spec(512, "int", min=2)
    quantizer: str = _spec("vq", "str", choices=["vq", "rvq", "fsq", "lfq"])
    num_stages: int = _spec(1, "int", positive=True)
    quantizer_dropout: float = _spec(0.0, "float", min=0.0, max=1.0)
    ema: bool = _spec(True, "bool")
    decay: float = _spec(0.99, "float", min=0.0, max=1.0)
    beta: float = _spec(0.25, "float", min=0.0)
    dead_code_threshold: int = _spec(0, "int", min=0)
    initializer: str = _spec("random_normal", "str", choices=["random_normal", "first_batch", "kmeans++"])
    # FSQ levels per latent dimension (quantizer: fsq; len == embedding_dim).
    levels: list[int] | None = _spec(None, "int_list", optional=True)
    entropy_weight: float = _spec(0.1, "float", min=0.0)  # quantizer: lfq
    # Linear (the thesis): a sigmoid after the last conv saturates on the many
    # exact-zero pixels and can collapse training to a constant output.
    output_activation: str = _spec("linear", "str", choices=["sigmoid", "linear"])
    # Resampling layers (vqkeras.experiments.models.blocks): the thesis's strided /
    # transposed 4x4 convolutions, or same-size equivalents that JAX trains faster on CPU.
    upsampling: str = _spec("transpose", "str", choices=["transpose", "subpixel", "resize"])
    downsampling: str = _spec("strided", "str", choices=["strided", "space_to_depth"])

    def _validate(self, path: str) -> None:
        if self.quantizer in ("vq", "lfq") and self.num_stages != 1:
            raise ConfigError(f"{path}.num_stages: must be 1 when {path}.quantizer is {self.quantizer!r} "
                              f"(use quantizer: rvq or fsq for several stages), got {self.num_stages}")
        if self.quantizer in ("vq", "lfq") and self.quantizer_dropout:
            raise ConfigError(f"{path}.quantizer_dropout: only used with quantizer: rvq or fsq, "
                              f"got {self.quantizer_dropout}")
        if self.quantizer == "fsq":
            if self.levels is None or len(self.levels) != self.embedding_dim or min(self.levels) < 2:
                raise ConfigError(f"{path}.levels: quantizer: fsq needs one level >= 2 per latent dimension "
                                  f"(embedding_dim: {self.embedding_dim}), got {self.levels}")
        elif self.levels is not None:
            raise ConfigError(f"{path}.levels: only used with quantizer: fsq, got {self.levels}")
        if self.quantizer == "lfq" and self.embedding_dim > 20:
            raise ConfigError(f"{path}.embedding_dim: quantizer: lfq uses one bit per dimension, "
                              f"at most 20, got {self.embedding_dim}")

    @property
    def bits_per_vector(self) -> float:
        """Bits of one latent vector's code at fixed width (all stages)."""
        if self.quantizer == "lfq":
            return float(self.embedding_dim)
        if self.quantizer == "fsq":
            return math.log2(math.prod(self.levels)) * self.num_stages
        return math.log2(self.num_embeddings) * self.num_stages

    @property
    def time_stride(self) -> int:
        return math.prod(s[0] for s in self.strides)

    @property
    def freq_stride(self) -> int:
        return math.prod(s[1] for s in self.strides)


@dataclass
class TrainingConfig:
    """Optimiser and loop settings (Adam, thesis learning rate 2e-4)."""

    batch_size: int = _spec(16, "int", positive=True)
    epochs: int = _spec(10, "int", positive=True)
    learning_rate: float = _spec(2e-4, "float", positive=True)
    # "cosine": decay from learning_rate to 5% of it over all the run's steps.
    lr_schedule: str = _spec("constant", "str", choices=["constant", "cosine"])
    shuffle: bool = _spec(True, "bool")
    validation: bool = _spec(True, "bool")
    keep_checkpoints: int = _spec(2, "int", positive=True)
    verbose: int = _spec(1, "int", choices=[0, 1, 2])
    tensorboard: bool = _spec(True, "bool")
    # Keras dtype policy of the run (docs/backends.md, "Mixed precision"): "mixed_*"
    # computes the convolutions in 16 bits with float32 variables; the quantizers
    # and the loss stay float32; mixed_float16 adds loss scaling.
    precision: str = _spec("float32", "str", choices=PRECISIONS)


@dataclass
class PhaseReconstructionConfig:
    """Spectrogram -> waveform settings (`vqkeras.phase.invert_magnitude`)."""

    n_iter: int = _spec(100, "int", min=0)
    learning_rate: float = _spec(0.3, "float", positive=True)
    init: str = _spec("pghi", "str", choices=["griffin_lim", "pghi", "random", "zeros"])
    # Griffin-Lim iterations before Adam when init is "griffin_lim" (PGHI needs none).
    init_iter: int = _spec(0, "int", min=0)
    # Evaluation reconstructs at most this many clips' waveforms (null: all).
    max_clips: int | None = _spec(None, "int", positive=True, optional=True)


# --------------------------------------------------------------------------- experiment
@dataclass
class ExperimentConfig:
    """One experiment: data, features, model, training, phase reconstruction, sweep."""

    name: str = _spec("experiment", "str", name=True)
    description: str = _spec("", "str")
    backend: str = _spec("jax", "str", choices=["jax", "tensorflow", "torch"])
    seed: int = _spec(0, "int", min=0)
    runs_root: str = _spec("runs", "str")
    run_name: str = _spec("main", "str", name=True)
    # Report notebooks: a folder under notebooks/ (null: the standard notebooks/NN_*.ipynb).
    notebooks: str | None = _spec(None, "str", optional=True, name=True)
    dataset: DatasetConfig = field(default_factory=DatasetConfig, metadata={"section": DatasetConfig})
    spectrogram: SpectrogramSection = field(default_factory=SpectrogramSection,
                                            metadata={"section": SpectrogramSection})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"section": ModelConfig})
    training: TrainingConfig = field(default_factory=TrainingConfig, metadata={"section": TrainingConfig})
    phase_reconstruction: PhaseReconstructionConfig = field(
        default_factory=PhaseReconstructionConfig, metadata={"section": PhaseReconstructionConfig})
    sweep: Any = field(default=None, metadata={"sweep": True})

    def _validate(self, path: str) -> None:
        shape = input_shape(self)  # raises if strides do not divide the input
        del shape
        if self.sweep is not None:
            _parse_sweep(self.sweep)
            self.expand()  # validates every run's values now, not at training time

    # -- conversions -------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-safe) that `load_config` reads back to an equal config."""
        out = dataclasses.asdict(self)
        if out["sweep"] is None:
            del out["sweep"]
        return out

    def with_overrides(self, overrides: Mapping[str, Any], *, run_name: str | None = None
                       ) -> ExperimentConfig:
        """A copy with dotted-key overrides applied (validated), and no sweep."""
        data = self.to_dict()
        data.pop("sweep", None)
        for key, value in overrides.items():
            _set_dotted(data, key, copy.deepcopy(value))
        if run_name is not None:
            data["run_name"] = run_name
        return load_config(data)

    def expand(self) -> list[ExperimentConfig]:
        """One config per run of the sweep (or ``[self]`` without a sweep)."""
        if self.sweep is None:
            return [self]
        runs = []
        for index, (entry_name, fixed, grid) in enumerate(_parse_sweep(self.sweep)):
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)):
                overrides = {**fixed, **dict(zip(keys, values))}
                parts = [entry_name] if entry_name else []
                parts += [f"{_short_key(k)}{_format_value(v)}"
                          for k, v in zip(keys, values) if len(grid[k]) > 1 or not entry_name]
                run_name = "-".join(parts) or f"run{index}"
                try:
                    runs.append(self.with_overrides(overrides, run_name=run_name))
                except ConfigError as err:
                    raise ConfigError(f"sweep (run {run_name!r}): {err}") from None
        names = [r.run_name for r in runs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"sweep: run names {duplicates} are not unique; give the sweep "
                              f"entries distinct 'name's")
        return runs

    # -- derived -----------------------------------------------------------
    def run_dir(self) -> Path:
        """``runs_root / name / run_name``."""
        return Path(self.runs_root) / self.name / self.run_name

    def spectrogram_config(self):
        """The `vqkeras.features.SpectrogramConfig` for this experiment."""
        from vqkeras.features import SpectrogramConfig

        s = self.spectrogram
        return SpectrogramConfig(sample_rate=s.sample_rate, frame_length=s.frame_length,
                                 frame_step=s.frame_step, duration=s.duration,
                                 dynamic_range_db=s.dynamic_range_db, scaling=s.scaling)


def _short_key(key: str) -> str:
    last = key.split(".")[-1]
    return SHORT_KEYS.get(last, last + "=")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "x".join(_format_value(v) for v in value)
    return str(value)


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def _check_dotted_key(key: str, where: str) -> None:
    """Refuse sweep keys that name no config field (with a suggestion)."""
    if not isinstance(key, str):
        raise ConfigError(f"{where}: keys must be dotted strings like 'model.num_embeddings', got {key!r}")
    parts = key.split(".")
    cls: type = ExperimentConfig
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in ("sweep",)}
        if part not in fields:
            full = ".".join(parts[: depth + 1])
            raise ConfigError(f"{where}.{full}: unknown key{_suggest(part, sorted(fields))}; "
                              f"allowed keys: {sorted(fields)}")
        section = fields[part].metadata.get("section")
        if section is None:
            if depth != len(parts) - 1:
                raise ConfigError(f"{where}.{key}: {'.'.join(parts[:depth + 1])} is not a section")
            return
        cls = section
    raise ConfigError(f"{where}.{key}: names a whole section; sweep single keys such as {key}.<key>")


def _parse_sweep(sweep: Any) -> list[tuple[str | None, dict, dict]]:
    """Normalise a sweep to [(name, fixed overrides, grid of lists)]."""
    entries = [sweep] if isinstance(sweep, Mapping) else sweep
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"sweep: expected a mapping of dotted keys to lists of values, or a "
                          f"non-empty list of such mappings, got {sweep!r}")
    parsed = []
    for i, entry in enumerate(entries):
        where = "sweep" if isinstance(sweep, Mapping) else f"sweep[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a mapping of dotted keys to values, got {entry!r}")
        name, fixed, grid = None, {}, {}
        for key, value in entry.items():
            if key == "name":
                name = _check_value(f"{where}.name", value, "str", {"name": True})
                continue
            _check_dotted_key(key, where)
            if isinstance(value, list):
                if not value:
                    raise ConfigError(f"{where}.{key}: expected a non-empty list of values")
                grid[key] = value
            else:
                fixed[key] = value
        parsed.append((name, fixed, grid))
    return parsed


# --------------------------------------------------------------------------- shapes
def input_shape(config: ExperimentConfig) -> tuple[int, int, int]:
    """Model input shape: ``(frames, bins, 1)`` spectrogram image or the image shape.

    Frames follow `keras.ops.stft(center=True)`: ``samples // frame_step + 1``,
    cropped to a multiple of the encoder's total time stride; bins drop Nyquist.
    """
    model = config.model
    if config.dataset.name in IMAGE_SHAPES:
        shape = IMAGE_SHAPES[config.dataset.name]
    else:
        spec = config.spectrogram
        frames = spec.num_samples // spec.frame_step + 1
        frames -= frames % model.time_stride
        shape = (frames, spec.frame_length // 2, 1)
    for axis, (size, stride, what) in enumerate(
            ((shape[0], model.time_stride, "time"), (shape[1], model.freq_stride, "frequency"))):
        if size <= 0 or size % stride:
            raise ConfigError(f"model.strides: the {what} strides multiply to {stride}, which does "
                              f"not divide the input's {what} size {size} (input shape {shape})")
    return tuple(int(s) for s in shape)


def latent_shape(config: ExperimentConfig) -> tuple[int, int]:
    """The latent grid ``(h, w)``."""
    shape = input_shape(config)
    return shape[0] // config.model.time_stride, shape[1] // config.model.freq_stride


def latent_bits(config: ExperimentConfig) -> int:
    """Latent size in bits (thesis): VQ-VAE ``h*w*log2(K)*stages`` (FSQ/LFQ: their bits per vector); AE ``h*w*D*32``."""
    h, w = latent_shape(config)
    model = config.model
    if model.kind == "autoencoder":
        return h * w * model.embedding_dim * 32
    return int(round(h * w * model.bits_per_vector))


# --------------------------------------------------------------------------- loading
def load_config(source: str | Path | Mapping[str, Any] | ExperimentConfig) -> ExperimentConfig:
    """Read and validate an experiment (YAML path, mapping, or config).

    Parameters
    ----------
    source : str, Path, Mapping or ExperimentConfig
        A YAML file, an already-parsed mapping, or a config (returned as is).

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        Missing file, invalid YAML, unknown key, or a bad value; the message
        names the full key path and what is allowed.
    """
    if isinstance(source, ExperimentConfig):
        return source
    if isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
    else:
        import yaml

        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{path}: experiment file not found")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if data is None:
            raise ConfigError(f"{path}: the file is empty")
        if isinstance(data, Mapping) and "name" not in data:
            data = {**data, "name": path.stem}
        try:
            return _from_mapping(ExperimentConfig, data, "")
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None  # say which file, too
    return _from_mapping(ExperimentConfig, data, "")
