"""Codec model bundles: a trained ``.keras`` VQ-VAE plus what the codec needs.

A bundle is a folder holding

- ``codec.keras``: the VQ-VAE (``encode(images, num_stages)`` and
  ``decode_indices(indices)``);
- ``codec.json``: the spectrogram parameters, code grid, per-stage code
  counts (the static entropy tables of format version 3), default phase
  reconstruction iterations, measured bitrate per stage count and the
  SHA-256 of the model weights;
- ``context.npz`` (optional, named in ``codec.json``'s ``context``): the
  integer context counts of the version-4 entropy coder
  (`vqkeras.codec.entropy.ContextTables`), hashed into the model identity.

Bundles that older files name are kept under ``vqkeras/assets/legacy/<model
id>/``: `model_for_file` picks one when a file names it and the default model
is in use, so upgrading the shipped bundle never orphans files made with it.

`load_codec_model` reads ``codec.json`` only; the Keras model is loaded the
first time `CodecModel.keras_model` is used, so format checks (and the fuzz
test) never touch Keras.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqkeras.errors import VQKerasError

BUNDLE_JSON = "codec.json"
BUNDLE_MODEL = "codec.keras"
BUNDLE_FORMAT = "vqkeras-codec"
BUNDLE_VERSION = 1


class CodecModelError(VQKerasError, ValueError):
    """A codec model bundle is missing, incomplete or inconsistent."""


def default_model_dir() -> Path:
    """The folder of the shipped codec model (``vqkeras/assets``)."""
    return Path(__file__).resolve().parent.parent / "assets"


@dataclass
class CodecInfo:
    """Everything in ``codec.json``: what the codec needs besides the network.

    Attributes
    ----------
    spectrogram : dict
        `vqkeras.features.SpectrogramConfig` fields (sample rate, frame
        length/step, training clip (and gain segment) duration, dynamic range).
    time_multiple : int
        Frames are cropped to a multiple of this (the encoder's time stride).
    grid : tuple of int
        Code grid ``(h, w)`` of one training clip; the codec codes any
        number of cells along time (``h``), ``w`` along frequency.
    num_stages : int
        RVQ stages of the model.
    num_embeddings : int
        Codebook size ``K`` of every stage.
    counts : list of list of int
        Add-one smoothed code counts, ``(num_stages, K)``.
    weights_sha256 : str
        Hex SHA-256 of the model weights; its first 16 bytes identify the
        model in .vqz files.
    iterations : int
        Default phase reconstruction iterations at decode.
    bitrate_kbps : dict
        Measured average bitrate (kbit/s) per stage count, keys ``"1"``...
    silence_codes : list of list of int, optional
        Codes ``(width, stages)`` of one cell of silence: the decoder's
        context beyond a signal's ends (`vqkeras.codec.magnitudes`). Computed
        from the encoder when absent.
    finetune : dict, optional
        How the decoder was fine-tuned from another bundle
        (`vqkeras.codec.finetune`): that bundle's model id and the recipe.
    context : dict, optional
        ``{"file": "context.npz", "sha256": hex}``: the context tables of
        the version-4 entropy coder and their digest
        (`vqkeras.codec.entropy.ContextTables.digest`). Without it the
        model writes version-3 files (static tables).
    """

    spectrogram: dict[str, Any]
    time_multiple: int
    grid: tuple[int, int]
    num_stages: int
    num_embeddings: int
    counts: list[list[int]]
    weights_sha256: str
    iterations: int = 100
    bitrate_kbps: dict[str, float] = field(default_factory=dict)
    silence_codes: list[list[int]] | None = None
    finetune: dict[str, Any] | None = None
    context: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.grid = (int(self.grid[0]), int(self.grid[1]))
        self.bundle_dir: Path | None = None  # set by load_codec_model (not in codec.json)
        self._context_tables = None
        if self.context is not None and (set(self.context) != {"file", "sha256"} or len(
                str(self.context["sha256"])) != 64 or "/" in str(self.context["file"])):
            raise CodecModelError(f"codec.json: context must be {{'file': name, 'sha256': 64 "
                                  f"hex digits}}; received {self.context!r}")
        counts = np.asarray(self.counts)
        if counts.shape != (self.num_stages, self.num_embeddings):
            raise CodecModelError(f"codec.json: counts must have shape "
                                  f"({self.num_stages}, {self.num_embeddings}); "
                                  f"received {counts.shape}")
        if self.silence_codes is not None and np.asarray(self.silence_codes).shape != (
                self.grid[1], self.num_stages):
            raise CodecModelError(f"codec.json: silence_codes must have shape "
                                  f"({self.grid[1]}, {self.num_stages})")
        if len(self.weights_sha256) != 64:
            raise CodecModelError(f"codec.json: weights_sha256 must be 64 hex digits; "
                                  f"received {self.weights_sha256!r}")

    @property
    def model_id(self) -> bytes:
        """16-byte model identity stored in .vqz files.

        ``sha256(weights digest || probability tables)[:16]``: retrained
        weights or re-estimated tables both give a new identity, since either
        makes old files decode to garbage. With context tables their digest
        follows (a bundle without them keeps its version-3 identity).
        """
        digest = hashlib.sha256(bytes.fromhex(self.weights_sha256))
        digest.update(np.ascontiguousarray(self.counts_array, dtype="<i8").tobytes())
        if self.context is not None:
            digest.update(bytes.fromhex(self.context["sha256"]))
        return digest.digest()[:16]

    @property
    def format_version(self) -> int:
        """The .vqz version this model writes: 4 with context tables, else 3."""
        return 3 if self.context is None else 4

    @property
    def context_tables(self):
        """The `vqkeras.codec.entropy.ContextTables`, loaded once and checked
        against their digest in ``codec.json``; None for a version-3 model."""
        if self.context is None:
            return None
        if self._context_tables is None:
            from vqkeras.codec.entropy import ContextTables

            path = (self.bundle_dir or Path(".")) / self.context["file"]
            if not path.is_file():
                raise CodecModelError(f"codec model: {path} (context tables) is missing")
            try:
                tables = ContextTables.load(path, self.counts_array)
            except Exception as err:  # a torn or foreign npz: zipfile/KeyError/ValueError
                raise CodecModelError(f"codec model: {path} does not load: "
                                      f"{type(err).__name__}: {err}") from err
            if tables.digest().hex() != self.context["sha256"]:
                raise CodecModelError(f"codec model: {path} does not match the digest in "
                                      f"codec.json")
            self._context_tables = tables
        return self._context_tables

    def set_context_tables(self, tables, file: str = "context.npz") -> None:
        """Attach new context tables (`save_context_tables` writes them)."""
        self.context = {"file": file, "sha256": tables.digest().hex()}
        self._context_tables = tables

    @property
    def sample_rate(self) -> int:
        return int(self.spectrogram["sample_rate"])

    @property
    def window_samples(self) -> int:
        """Samples per training clip, and per gain segment, at the model's sample rate."""
        return int(round(float(self.spectrogram["duration"]) * self.sample_rate))

    @property
    def counts_array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)

    def stages_for_bitrate(self, bitrate_kbps: float | None) -> int:
        """Most stages whose measured rate is <= ``bitrate_kbps`` (else 1).

        ``None`` means all stages.
        """
        if bitrate_kbps is None:
            return self.num_stages
        if not (isinstance(bitrate_kbps, (int, float)) and math.isfinite(bitrate_kbps)
                and bitrate_kbps > 0):
            raise ValueError(f"bitrate must be a positive number of kbit/s; "
                             f"received bitrate={bitrate_kbps!r}")
        fits = [int(s) for s, rate in self.bitrate_kbps.items() if rate <= bitrate_kbps]
        return max(fits) if fits else 1

    def to_json(self) -> str:
        data = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, **asdict(self)}
        for key in ("context", "finetune"):  # absent keys keep older bundles' codec.json
            if data[key] is None:
                del data[key]
        data["grid"] = list(self.grid)
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> CodecInfo:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise CodecModelError(f"codec.json is not valid JSON: {err}") from err
        if data.pop("format", None) != BUNDLE_FORMAT:
            raise CodecModelError(f"codec.json: not a {BUNDLE_FORMAT} file")
        version = data.pop("version", None)
        if version != BUNDLE_VERSION:
            raise CodecModelError(f"codec.json: unsupported version {version!r}")
        try:
            return cls(**data)
        except TypeError as err:
            raise CodecModelError(f"codec.json: {err}") from err


def weights_sha256(model) -> str:
    """SHA-256 (hex) of a Keras model's weights, in order, as little-endian float32.

    Independent of the file's zip metadata and of the backend, so the same
    weights give the same identity after a save/load round trip.
    """
    digest = hashlib.sha256()
    for w in model.get_weights():
        w = np.asarray(w)
        digest.update(str(w.shape).encode())
        digest.update(np.ascontiguousarray(w, dtype="<f4").tobytes())
    return digest.hexdigest()


class CodecModel:
    """A loaded bundle: `info` at once, `keras_model` on first use.

    Parameters
    ----------
    info : CodecInfo
    model_path : Path or None
        The ``.keras`` file; ``None`` for an info-only bundle (format tools).
    name : str
        Shown in messages.
    """

    def __init__(self, info: CodecInfo, model_path: Path | None = None, name: str = "model"):
        self.info = info
        self.model_path = model_path
        self.name = name
        self._model = None

    @property
    def keras_model(self):
        """The VQ-VAE, loaded once; its weights hash is checked against ``codec.json``."""
        if self._model is None:
            if self.model_path is None or not Path(self.model_path).is_file():
                raise CodecModelError(f"codec model {self.name}: {BUNDLE_MODEL} is missing")
            import keras

            import vqkeras.layers  # noqa: F401  (registers the custom layers)
            import vqkeras.experiments.models  # noqa: F401

            try:
                model = keras.saving.load_model(self.model_path, compile=False)
            except Exception as err:  # Keras raises ValueError/OSError/BadZipFile for a torn file
                raise CodecModelError(f"codec model {self.name}: {self.model_path} does not load "
                                      f"(truncated or not a Keras file?): {type(err).__name__}: "
                                      f"{' '.join(str(err).split())[:200]}") from err
            digest = weights_sha256(model)
            if digest != self.info.weights_sha256:
                raise CodecModelError(f"codec model {self.name}: weights hash {digest[:16]} "
                                      f"does not match codec.json ({self.info.weights_sha256[:16]})")
            self._model = model
        return self._model

    def __repr__(self) -> str:
        return f"CodecModel({self.name!r}, id={self.info.model_id.hex()})"


def load_codec_model(path: str | Path | None = None) -> CodecModel:
    """Load a codec bundle (a folder with ``codec.json``, or the JSON itself).

    Parameters
    ----------
    path : str or Path, optional
        Bundle folder or its ``codec.json``; default: the shipped model.

    Raises
    ------
    CodecModelError
        If the bundle is missing or its JSON is malformed.
    """
    folder = default_model_dir() if path is None else Path(path)
    json_path = folder if folder.suffix == ".json" else folder / BUNDLE_JSON
    if not json_path.is_file():
        hint = (" (the shipped model is missing: run `vqkeras codec train-default`)"
                if path is None else "")
        raise CodecModelError(f"no codec model at {folder}: {json_path.name} not found{hint}")
    info = CodecInfo.from_json(json_path.read_text())
    info.bundle_dir = json_path.parent
    return CodecModel(info, json_path.parent / BUNDLE_MODEL, name=str(folder))


LEGACY_DIR = "legacy"
"""Folder of ``vqkeras/assets`` holding earlier shipped bundles, one per model id (hex)."""

_legacy_cache: dict[bytes, CodecModel] = {}


def model_for_file(codec: CodecModel, model_id: bytes) -> CodecModel:
    """The model to decode a file that names ``model_id`` with: ``codec`` itself, or,
    when ``codec`` is the shipped model, the earlier shipped bundle of that id.

    Any other mismatch is left to the caller's identity check (one-line error).
    """
    if model_id == codec.info.model_id or codec.info.bundle_dir is None:
        return codec
    try:
        is_default = Path(codec.info.bundle_dir).resolve() == default_model_dir().resolve()
    except OSError:
        return codec
    if not is_default:
        return codec
    if model_id not in _legacy_cache:
        folder = default_model_dir() / LEGACY_DIR / model_id.hex()
        if not (folder / BUNDLE_JSON).is_file():
            return codec
        legacy = load_codec_model(folder)
        if legacy.info.model_id != model_id:  # a misnamed folder: never decode with it
            return codec
        _legacy_cache[model_id] = legacy
    return _legacy_cache[model_id]


def retire_default_bundle() -> Path | None:
    """Move the shipped bundle's files to ``legacy/<model id>/`` (before a new one is
    written there), so that files made with it keep decoding; returns that folder.

    None when there is no shipped bundle.
    """
    import shutil

    folder = default_model_dir()
    if not (folder / BUNDLE_JSON).is_file():
        return None
    info = load_codec_model(folder).info
    target = folder / LEGACY_DIR / info.model_id.hex()
    target.mkdir(parents=True, exist_ok=True)
    names = [BUNDLE_MODEL, BUNDLE_JSON] + ([info.context["file"]] if info.context else [])
    for name in names:
        if (folder / name).is_file():
            shutil.move(str(folder / name), str(target / name))
    return target


def save_codec_model(out_dir: str | Path, model, info: CodecInfo) -> Path:
    """Write a bundle folder (``codec.keras`` + ``codec.json``, and ``context.npz``
    when ``info`` has context tables); returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / BUNDLE_MODEL)
    save_bundle_info(out, info)
    return out


def save_bundle_info(out_dir: str | Path, info: CodecInfo) -> None:
    """Write ``codec.json`` (and the context tables it names) into a bundle folder."""
    out = Path(out_dir)
    if info.context is not None:
        tables = info.context_tables
        tables.save(out / info.context["file"])
    (out / BUNDLE_JSON).write_text(info.to_json())
    info.bundle_dir = out
