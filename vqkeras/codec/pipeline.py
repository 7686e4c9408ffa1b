"""compress / decompress: WAV <-> .vqz through a codec model.

Compression
    read the WAV (any rate, any channel count: `vqkeras.audio_io.read_wav`
    resamples to the model's rate and downmixes to mono) -> cut into
    back-to-back windows of the model's duration (4 s by default; the last
    one zero-padded, no overlap) -> scale each window so its peak is at
    0 dBFS (the gain is stored, quantised up to the next 0.5 dB) -> model
    spectrogram images -> RVQ code indices of every stage -> the most stages
    whose real file size fits ``--bitrate`` -> entropy coding -> a loudness
    correction per window (K-weighted energy of the input's spectrogram over
    that of the decoded one, `vqkeras.codec.loudness`) -> `.vqz` container,
    written atomically.

Decompression
    header checks and the decoded-size limit (before reading the rest) ->
    container checks (CRC, model identity, grid, stages) -> entropy decoding
    (the payload must be exactly the coding of what it decodes to) ->
    ``decode_indices`` -> linear magnitude -> `invert_magnitude` -> gains and
    loudness corrections -> resample back to the original rate -> the
    original channel count (the mono signal repeated) -> atomic WAV write.

Windows are independent: no overlap is the simplest choice that is always
correct; its cost is a possible click at window boundaries for sustained
sounds (notes of up to 4 s fit in one window).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from vqkeras.codec import container, entropy
from vqkeras.codec.codec_model import CodecInfo, CodecModel, load_codec_model
from vqkeras.errors import AudioFileError, CodecFormatError, CodecLimitError
from vqkeras.files import atomic_path, atomic_write_bytes, check_output_path

MAX_FILE_BYTES = container.file_size(container.MAX_WINDOWS, container.MAX_PAYLOAD_BYTES)
BATCH_WINDOWS = 8  # windows per network call: bounded memory for long files
DEFAULT_MAX_SAMPLES = 2 * 48_000 * 3600
"""Default cap on decoded samples (all channels, at the original rate): one hour
of 48-kHz stereo. A file announcing more is refused before anything is decoded
(``decompress(max_samples=...)``, ``vqkeras decompress --max-samples N``)."""


def _as_model(model: str | Path | CodecModel | None) -> CodecModel:
    return model if isinstance(model, CodecModel) else load_codec_model(model)


def expected_windows(info: CodecInfo, sample_rate: int, num_samples: int) -> tuple[int, int]:
    """Length at the model rate and window count for an input of ``num_samples``."""
    length = max(1, math.ceil(num_samples * info.sample_rate / sample_rate))
    return length, max(1, math.ceil(length / info.window_samples))


def read_vqz(data: bytes, info: CodecInfo) -> tuple[container.VQZHeader, np.ndarray, np.ndarray]:
    """Parse a .vqz file for a model up to decoded code indices (no neural network).

    Parameters
    ----------
    data : bytes
        The file.
    info : CodecInfo
        The model's bundle info.

    Returns
    -------
    header : VQZHeader
    gains : np.ndarray [shape=(windows,), dtype=float32]
        Linear output gain of each decoded (peak-normalised) window: the
        stored peak times the loudness correction; 0 for a silent window.
    indices : np.ndarray [shape=(windows, h, w, stages), dtype=int32]

    Raises
    ------
    CodecFormatError
        For a damaged file, another format version, or another model.
    """
    header, peaks, loudness, payload = container.unpack(data)
    if header.model_id != info.model_id:
        raise CodecFormatError(f"file was made with model {header.model_id.hex()}, "
                               f"this model is {info.model_id.hex()}")
    if header.grid != info.grid:
        raise CodecFormatError(f"corrupt .vqz file: code grid {header.grid} does not match "
                               f"the model's {info.grid}")
    if header.num_stages > info.num_stages:
        raise CodecFormatError(f"corrupt .vqz file: {header.num_stages} stages, the model "
                               f"has {info.num_stages}")
    _, windows = expected_windows(info, header.sample_rate, header.num_samples)
    if header.num_windows != windows:
        raise CodecFormatError(f"corrupt .vqz file: {header.num_windows} windows for "
                               f"{header.num_samples} samples at {header.sample_rate} Hz "
                               f"(expected {windows})")
    shape = (header.num_windows, *header.grid, header.num_stages)
    indices = entropy.decode_indices(payload, info.counts_array, shape)
    gains = np.array([container.dequantize_gain(p) * container.dequantize_loudness(c)
                      for p, c in zip(peaks, loudness)], dtype=np.float32)
    return header, gains, indices


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    # Only draw a bar for long inputs on an interactive terminal.
    return tqdm(total=total, desc=desc, unit="window", leave=False,
                disable=total < 4 or not sys.stderr.isatty())


def _whole_model_fn(codec: CodecModel, key: tuple, make):
    """``make()`` compiled as one XLA program per (model, key) on JAX, else None.

    Keras on JAX runs a model call op by op, tracing and lowering each op
    separately (about 100 of them here, ~1 s of CPU in every new process). One
    `jax.jit` program for the whole network traces once and, from the second
    process on, comes from the persistent compilation cache (`vqkeras.cache`).
    Inference only: the weights are read, never updated.
    """
    import keras

    if keras.backend.backend() != "jax":
        return None
    cache = codec.__dict__.setdefault("_compiled", {})
    if key not in cache:
        import jax

        cache[key] = jax.jit(make())
    return cache[key]


def _encode_batch(codec: CodecModel, images: np.ndarray, num_stages: int) -> np.ndarray:
    net = codec.keras_model
    fn = _whole_model_fn(codec, ("encode", num_stages), lambda: (
        lambda x: net.quantizer.encode(net.encoder(x, training=False), num_stages=num_stages)))
    if fn is None:
        return np.asarray(net.encode(images, num_stages=num_stages), dtype=np.int32)
    padded = np.zeros((max(BATCH_WINDOWS, len(images)), *images.shape[1:]), images.dtype)
    padded[:len(images)] = images
    return np.asarray(fn(padded), dtype=np.int32)[:len(images)]


def _encode_exported(codec: CodecModel, batch: np.ndarray, num_stages: int) -> np.ndarray | None:
    """`encode_windows` for one batch through the programs saved by `vqkeras.codec.exported`.

    The batch is padded to `BATCH_WINDOWS` windows, so each program has one
    shape whatever the file's length. None where exporting does not apply
    (not JAX, or caching off).
    """
    from vqkeras.codec.exported import load_or_export
    from vqkeras.features import _spectrogram_fn, magnitude_to_image

    info = codec.info
    config = _spec_config(info)
    waves = np.zeros((BATCH_WINDOWS, batch.shape[1]), np.float32)
    waves[:len(batch)] = batch
    # The model file's size and time too: a replaced or damaged codec.keras is
    # loaded (and its error reported) instead of served from an old program.
    model_file = Path(codec.model_path) if codec.model_path is not None else None
    stat = model_file.stat() if model_file is not None and model_file.is_file() else None
    key = {"model": info.model_id.hex(), "spectrogram": info.spectrogram,
           "model_file": [stat.st_size, stat.st_mtime_ns] if stat else None}
    stft = load_or_export("stft", key, waves,
                          lambda: _spectrogram_fn(int(config.frame_length), int(config.frame_step)))
    if stft is None:
        return None
    images = magnitude_to_image(np.asarray(stft(waves), np.float32), config,
                                time_multiple=info.time_multiple)

    def build():
        import jax

        net = codec.keras_model
        return jax.jit(lambda x: net.quantizer.encode(net.encoder(x, training=False),
                                                      num_stages=num_stages))

    encoder = load_or_export("encoder", {**key, "stages": num_stages}, images, build)
    return np.asarray(encoder(images), dtype=np.int32)[:len(batch)]


def _decode_batch(codec: CodecModel, indices: np.ndarray) -> np.ndarray:
    net = codec.keras_model
    fn = _whole_model_fn(codec, ("decode",), lambda: (
        lambda i: net.decoder(net.quantizer.decode(i), training=False)))
    if fn is None:
        return net.decode_indices(indices)
    # A short last batch is padded: one program shape (and one compilation, with
    # its memory peak) whatever the file's length.
    padded = np.zeros((max(BATCH_WINDOWS, len(indices)), *indices.shape[1:]), np.int32)
    padded[:len(indices)] = indices
    return np.asarray(fn(padded), dtype=np.float32)[:len(indices)]


def _decode_exported(codec: CodecModel, batch: np.ndarray) -> np.ndarray | None:
    """`_decode_batch` through a saved program (see `_encode_exported`), or None."""
    from vqkeras.codec.exported import load_or_export

    info = codec.info
    padded = np.zeros((BATCH_WINDOWS, *batch.shape[1:]), np.int32)
    padded[:len(batch)] = batch
    model_file = Path(codec.model_path) if codec.model_path is not None else None
    stat = model_file.stat() if model_file is not None and model_file.is_file() else None
    key = {"model": info.model_id.hex(),
           "model_file": [stat.st_size, stat.st_mtime_ns] if stat else None}

    def build():
        import jax

        net = codec.keras_model
        return jax.jit(lambda i: net.decoder(net.quantizer.decode(i), training=False))

    decoder = load_or_export("decoder", key, padded, build)
    if decoder is None:
        return None
    return np.asarray(decoder(padded), dtype=np.float32)[:len(batch)]


def _k_weights(info: CodecInfo) -> np.ndarray:
    from vqkeras.codec.loudness import k_weight_power

    bins = _spec_config(info).num_bins
    return k_weight_power(np.linspace(0.0, info.sample_rate / 2, bins))


def frame_energies(info: CodecInfo, windows: np.ndarray) -> np.ndarray:
    """K-weighted energy of each STFT frame of (peak-normalised) windows ``(n, frames)``."""
    from vqkeras.features import stft_magnitude

    magnitude = stft_magnitude(windows, _spec_config(info)).astype(np.float64)
    return ((magnitude ** 2) @ _k_weights(info)).astype(np.float32)


def loudness_codes(codec: CodecModel, energies: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Per-window loudness corrections (int8 codes) that undo the model's level loss.

    The decoder network's spectrogram of each window is compared with the
    input window's STFT under BS.1770 K-weighting: the correction is the
    ratio of their gated loudness (`_gated_level`: 400-ms blocks, relative
    gate at -10 dB, each signal gated on its own, as a meter would).
    Phase reconstruction keeps the spectrogram's energy to within ~0.1 dB,
    so no trial decode is needed.

    Parameters
    ----------
    energies : np.ndarray [shape=(n, frames)]
        `frame_energies` of the peak-normalised windows that were encoded.
    indices : np.ndarray [shape=(n, h, w, stages)]
        Their code indices (the stages that are stored).
    """
    from vqkeras.features import image_to_magnitude

    info = codec.info
    config = _spec_config(info)
    num_frames = info.window_samples // int(config.frame_step) + 1
    weight = _k_weights(info)
    step_s = int(config.frame_step) / info.sample_rate
    frames_per_block = max(1, round(0.4 / step_s))  # 400-ms gating blocks
    frames_per_hop = max(1, round(0.1 / step_s))  # 75 % overlap
    codes = np.zeros(len(indices), np.int8)
    for start in range(0, len(indices), BATCH_WINDOWS):
        batch = np.asarray(indices[start:start + BATCH_WINDOWS], np.int32)
        images = _decode_exported(codec, batch)
        if images is None:
            images = _decode_batch(codec, batch)
        decoded = image_to_magnitude(images, config, num_frames=num_frames).astype(np.float64)
        frames_out = (decoded ** 2) @ weight  # (batch, frames) K-weighted energy
        for i, e_out in enumerate(frames_out):
            level_in = _gated_level(energies[start + i], frames_per_block, frames_per_hop)
            level_out = _gated_level(e_out, frames_per_block, frames_per_hop)
            if level_in > 0 and level_out > 0:
                codes[start + i] = container.quantize_loudness(
                    10.0 * np.log10(level_in / level_out))
    return codes


def _gated_level(frame_energy: np.ndarray, block: int, hop: int) -> float:
    """BS.1770-style gated mean of per-frame energies (linear; only ratios matter).

    Frames are grouped into 400-ms blocks with 75 % overlap; blocks more than
    10 dB below the mean of all blocks are dropped (the relative gate), as the
    loudness meter does to the whole file.
    """
    e = np.asarray(frame_energy, np.float64)
    if len(e) <= block:
        blocks = np.array([e.mean()])
    else:
        cumulative = np.concatenate([[0.0], np.cumsum(e)])
        starts = np.arange(0, len(e) - block + 1, hop)
        blocks = (cumulative[starts + block] - cumulative[starts]) / block
    kept = blocks[blocks >= 0.1 * blocks.mean()]
    return float(kept.mean()) if kept.size else 0.0


def fit_bitrate(info: CodecInfo, indices: np.ndarray, duration_s: float,
                bitrate: float | None) -> tuple[int, bytes]:
    """The most stages whose whole file fits ``bitrate``, and their payload.

    The rate counts every byte of the file (header, per-window side
    information, checksum) over ``max(duration, window length)``: a clip
    shorter than one window is charged as one window.

    Parameters
    ----------
    indices : np.ndarray [shape=(n, h, w, stages)]
        Code indices of every stage.
    duration_s : float
        The input's duration.
    bitrate : float or None
        Cap in kbit/s; None: all stages.

    Raises
    ------
    ValueError
        For a bitrate that is not a positive finite number.
    CodecLimitError
        If even one stage does not fit.
    """
    n_windows, stages = len(indices), indices.shape[-1]
    if bitrate is None:
        return stages, entropy.encode_indices(indices, info.counts_array)
    if isinstance(bitrate, bool) or not (isinstance(bitrate, (int, float))
                                         and math.isfinite(bitrate) and bitrate > 0):
        raise ValueError(f"bitrate must be a positive number of kbit/s; "
                         f"received bitrate={bitrate!r}")
    seconds = max(duration_s, info.window_samples / info.sample_rate)
    budget = bitrate * 1000.0 * seconds / 8.0
    for s in range(stages, 0, -1):
        payload = entropy.encode_indices(indices[..., :s], info.counts_array)
        size = container.file_size(n_windows, len(payload))
        if size <= budget:
            return s, payload
    lowest = 8.0 * size / seconds / 1000.0
    raise CodecLimitError(f"--bitrate {bitrate:g} kbit/s is below the lowest rate this clip "
                          f"can be coded at: {lowest:.2f} kbit/s (one stage, header included)")


def _spec_config(info: CodecInfo):
    from vqkeras.features import SpectrogramConfig

    return SpectrogramConfig(**info.spectrogram)


def encode_windows(model: CodecModel, windows: np.ndarray, num_stages: int,
                   *, progress: bool = False) -> np.ndarray:
    """Code indices ``(n, h, w, num_stages)`` of peak-normalised windows ``(n, samples)``."""
    from vqkeras.features import waveform_to_image

    config = _spec_config(model.info)
    out = []
    bar = _progress(len(windows), "compress") if progress else None
    for start in range(0, len(windows), BATCH_WINDOWS):
        batch = windows[start:start + BATCH_WINDOWS]
        codes = _encode_exported(model, batch, num_stages)
        if codes is None:
            images = waveform_to_image(batch, config, time_multiple=model.info.time_multiple)
            codes = _encode_batch(model, images, num_stages)
        out.append(codes)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return np.concatenate(out)


def decode_windows(model: CodecModel, indices: np.ndarray, *, iterations: int,
                   progress: bool = False) -> np.ndarray:
    """Waveforms ``(n, window_samples)`` (peak-normalised) from code indices."""
    from vqkeras.features import image_to_magnitude
    from vqkeras.phase import invert_magnitude

    info = model.info
    config = _spec_config(info)
    n_samples = info.window_samples
    num_frames = n_samples // int(config.frame_step) + 1  # center=True STFT frames
    out = []
    bar = _progress(len(indices), "decompress") if progress else None
    for start in range(0, len(indices), BATCH_WINDOWS):
        batch = indices[start:start + BATCH_WINDOWS]
        images = _decode_batch(model, batch)
        magnitude = image_to_magnitude(images, config, num_frames=num_frames)
        # One window per call: the compiled inversion is keyed on the batch
        # shape, so a fixed shape compiles once whatever the file's length.
        for mag in magnitude:
            wave = invert_magnitude(mag[None], frame_length=int(config.frame_length),
                                    frame_step=int(config.frame_step), n_iter=iterations,
                                    length=n_samples)
            out.append(np.asarray(wave, dtype=np.float32))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return np.concatenate(out)


def _input_info(path: Path) -> tuple[int, int, int]:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises RuntimeError/LibsndfileError
        raise AudioFileError(f"cannot read {path}: {err}") from err
    return int(info.samplerate), int(info.channels), int(info.frames)


def compress(input_wav: str | Path, output_path: str | Path, *,
             model: str | Path | CodecModel | None = None,
             bitrate: float | None = None, progress: bool = True) -> Path:
    """Compress a WAV file into a ``.vqz`` file.

    Parameters
    ----------
    input_wav : str or Path
        Any length, sample rate and channel count (coded as a mono downmix).
    output_path : str or Path
        Destination; written atomically (nothing is left on failure).
    model : str, Path or CodecModel, optional
        Codec bundle folder; default: the shipped model.
    bitrate : float, optional
        Cap in kbit/s on the real file rate (every byte of the file over the
        clip's duration, at least one window): the most RVQ stages that fit.
        Default: all stages.
    progress : bool
        Show a progress bar on a terminal for inputs of 4+ windows.

    Returns
    -------
    Path
        ``output_path``.

    Raises
    ------
    AudioFileError
        If the input is missing or unreadable.
    ValueError
        For a non-positive bitrate.
    CodecLimitError
        If the clip does not fit ``bitrate`` even with one stage.
    """
    from vqkeras.audio_io import check_input_file
    from vqkeras.codec.stream import read_windows

    input_wav = check_input_file(input_wav)
    output_path = check_output_path(output_path, [input_wav])
    codec = _as_model(model)
    info = codec.info
    if bitrate is not None:
        fit_bitrate(info, np.zeros((1, 1, 1, 1), np.int32), 1.0, bitrate)  # bad values fail now
    sample_rate, channels, frames = _input_info(input_wav)
    if frames == 0:
        raise AudioFileError(f"{input_wav}: contains no samples (empty or truncated data chunk)")
    num_samples = frames
    duration = num_samples / sample_rate
    if duration > container.MAX_DURATION_S or channels > container.MAX_CHANNELS:
        raise AudioFileError(f"{input_wav}: {duration:.0f} s, {channels} channels; the .vqz "
                             f"format holds at most {container.MAX_DURATION_S} s and "
                             f"{container.MAX_CHANNELS} channels")
    length, n_windows = expected_windows(info, sample_rate, num_samples)
    # Streaming: only one batch of windows is held as audio; what is kept for
    # the whole file is small (codes, one gain and one energy curve per window).
    gains = np.zeros(n_windows, np.uint8)
    indices = np.zeros((n_windows, *info.grid, info.num_stages),
                       np.uint8 if info.num_embeddings <= 256 else np.int32)
    energies = None
    bar = _progress(n_windows, "compress") if progress else None
    batch: list[np.ndarray] = []
    done = 0
    for i, window in enumerate(read_windows(input_wav, info.sample_rate, info.window_samples,
                                            length, n_windows)):
        batch.append(window)
        if len(batch) < BATCH_WINDOWS and i < n_windows - 1:
            continue
        windows = np.stack(batch)
        batch = []
        g = np.array([container.quantize_gain(float(np.max(np.abs(w)))) for w in windows],
                     dtype=np.uint8)
        scale = np.array([container.dequantize_gain(c) for c in g], dtype=np.float32)
        windows = np.clip(windows / np.where(scale > 0, scale, 1.0)[:, None], -1.0, 1.0)
        windows = windows.astype(np.float32)
        codes = encode_windows(codec, windows, info.num_stages)
        if codes.shape[1:3] != info.grid:
            raise CodecFormatError(f"model produced a {codes.shape[1:3]} code grid, codec.json "
                                   f"says {info.grid}")
        energy = frame_energies(info, windows)
        if energies is None:
            energies = np.zeros((n_windows, energy.shape[1]), np.float32)
        gains[done:done + len(windows)] = g
        indices[done:done + len(windows)] = codes
        energies[done:done + len(windows)] = energy
        done += len(windows)
        if bar is not None:
            bar.update(len(windows))
    if bar is not None:
        bar.close()
    stages, payload = fit_bitrate(info, indices, duration, bitrate)
    indices = indices[..., :stages]
    loudness = loudness_codes(codec, energies, indices)
    loudness[gains == container.GAIN_SILENT] = 0
    header = container.VQZHeader(model_id=info.model_id, sample_rate=sample_rate,
                                 channels=channels, num_samples=num_samples,
                                 num_windows=n_windows, grid=info.grid, num_stages=stages)
    atomic_write_bytes(output_path, container.pack(header, gains, payload, loudness),
                       inputs=[input_wav])
    return output_path


def decompress(input_path: str | Path, output_wav: str | Path, *,
               model: str | Path | CodecModel | None = None,
               iterations: int | None = None, progress: bool = True,
               max_samples: int | None = DEFAULT_MAX_SAMPLES) -> Path:
    """Decompress a ``.vqz`` file into a WAV file.

    Parameters
    ----------
    input_path : str or Path
        A file written by `compress` with the same model.
    output_wav : str or Path
        Destination (original sample rate and channel count), written
        atomically in the format its suffix names: ``.wav`` (or none),
        ``.flac``, ``.ogg`` or ``.mp3``; other suffixes are refused.
    model : str, Path or CodecModel, optional
        Codec bundle folder; default: the shipped model.
    iterations : int, optional
        Phase reconstruction iterations (default: the bundle's).
    progress : bool
        Show a progress bar on a terminal for inputs of 4+ windows.
    max_samples : int or None
        Refuse a file that announces more decoded samples than this (all
        channels, at the original rate), before decoding anything. Default
        `DEFAULT_MAX_SAMPLES`; None: only the format's own bounds.

    Returns
    -------
    Path
        ``output_wav``.

    Raises
    ------
    CodecFormatError
        If the file is damaged, of another format version, or made with
        another model.
    CodecLimitError
        If it would decode to more than ``max_samples`` samples.
    """
    from vqkeras.audio_io import output_format
    from vqkeras.codec.stream import StreamWriter

    input_path, output_wav = Path(input_path), Path(output_wav)
    if input_path.is_dir():
        raise CodecFormatError(f"{input_path}: is a folder, not a .vqz file")
    if not input_path.is_file():
        raise CodecFormatError(f"input file not found: {input_path}")
    check_output_path(output_wav, [input_path])
    output_format(output_wav)  # an unknown suffix fails now, not after decoding
    codec = _as_model(model)
    info = codec.info
    if iterations is None:
        iterations = info.iterations
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be a non-negative integer; "
                         f"received iterations={iterations!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(
            max_samples, (int, np.integer)) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive integer or None; "
                         f"received max_samples={max_samples!r}")
    size = input_path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CodecFormatError(f"{input_path} is {size} bytes, larger than any valid .vqz file")
    with open(input_path, "rb") as f:
        announced, _ = container.read_header(f.read(container.HEADER_SIZE))
    total = announced.num_samples * announced.channels
    if max_samples is not None and total > max_samples:
        raise CodecLimitError(f"{input_path} would decode to {total} samples "
                              f"({announced.num_samples} x {announced.channels} channels), over "
                              f"the limit of {max_samples} (raise it with --max-samples)")
    header, gains, indices = read_vqz(input_path.read_bytes(), info)
    length, _ = expected_windows(info, header.sample_rate, header.num_samples)
    fmt, subtype = output_format(output_wav)
    # Streaming: each batch of windows is decoded, resampled and written
    # before the next; the output appears (atomically) only when complete.
    bar = _progress(len(indices), "decompress") if progress else None
    with atomic_path(output_wav, inputs=(input_path,)) as tmp:
        writer = StreamWriter(tmp, fmt, subtype, info.sample_rate, header.sample_rate,
                              header.channels, length, header.num_samples, name=output_wav)
        try:
            for start in range(0, len(indices), BATCH_WINDOWS):
                waves = decode_windows(codec, indices[start:start + BATCH_WINDOWS],
                                       iterations=iterations)
                writer.write((waves * gains[start:start + BATCH_WINDOWS, None]).reshape(-1))
                if bar is not None:
                    bar.update(len(waves))
        except BaseException:
            writer.abort()  # the temporary file is removed by atomic_path
            raise
        finally:
            if bar is not None:
                bar.close()
        writer.close()
    return output_wav
