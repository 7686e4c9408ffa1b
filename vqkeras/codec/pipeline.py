"""compress / decompress: audio file <-> .vqz through a codec model.

Each is a short composition of the modules along the data's way.

Compression (audio -> images -> codes -> payload)
    `analysis` (pass 1: channel mode, mono, left/right or mid/side, and gains
    per segment) -> `encoding` (pass 2: the signals divided by their gain
    envelope, `framing`, become spectrogram images, then RVQ codes of one
    continuous cell sequence per signal) -> `rate` (the most stages whose
    real file size fits ``--bitrate``, entropy coded) -> `loudness_correction`
    (per segment, the gain that makes a BS.1770 meter read the input's
    loudness on the decoded spectrogram) -> `container` (version 4 with a
    model that has context tables, else 3), written atomically.

Decompression (payload -> codes -> magnitudes -> phase -> loudness -> stream)
    `unpack` (header checks and the decoded-size limit before reading the
    rest, container checks, entropy decoding) -> `decoding` (per chunk:
    `magnitudes` from the decoder network, `vqkeras.phase.StreamingInversion`
    with continuous phase across chunks, gain and loudness envelopes,
    left/right from mid/side) -> `stream` (resample back, atomic write, as it
    goes).

Both sides run the networks through `networks`. There are no windows: the
code is one sequence per signal, so nothing marks a 4-s boundary in the
output (issue 12; the earlier format coded independent 4-s windows and
dipped 11-13 dB at their edges).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vqkeras.codec import container, framing
from vqkeras.codec.analysis import analyse
from vqkeras.codec.codec_model import CodecModel, model_for_file
from vqkeras.codec.decoding import decode_stream
from vqkeras.codec.encoding import _encode_signals
from vqkeras.codec.loudness_correction import loudness_corrections
from vqkeras.codec.networks import _as_model
from vqkeras.codec.rate import fit_bitrate, stage_choices
from vqkeras.codec.unpack import DEFAULT_MAX_SAMPLES, check_vqz_file, read_vqz
from vqkeras.errors import CodecFormatError
from vqkeras.files import atomic_path, atomic_write_bytes, check_output_path


def compress(input_path: str | Path, output_path: str | Path, *,
             model: str | Path | CodecModel | None = None,
             bitrate: float | None = None, stages: int | None = None,
             progress: bool = True) -> Path:
    """Compress an audio file into a ``.vqz`` file.

    Parameters
    ----------
    input_path : str or Path
        Any length, sample rate and channel count readable by libsndfile.
        Stereo is coded as left/right or mid/side (whichever suits the file:
        `vqkeras.codec.analysis.MID_SIDE_RATIO`); more channels as a mono
        downmix.
    output_path : str or Path
        Destination; written atomically (nothing is left on failure).
    model : str, Path or CodecModel, optional
        Codec bundle folder; default: the shipped model.
    bitrate : float, optional
        Cap in kbit/s on the real file rate (every byte of the file over the
        clip's duration, at least one segment): the most RVQ stages that fit
        (`vqkeras.codec.rate.stage_choices`). Default: all stages (mid/side:
        half for the side).
    stages : int, optional
        At most this many stages for any signal (rate-distortion sweeps);
        combined with ``bitrate``, the best choice that meets both.
    progress : bool
        Show a progress bar on a terminal for inputs of 4+ chunks.

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
    from vqkeras.codec.stream import read_blocks

    input_path = check_input_file(input_path)
    output_path = check_output_path(output_path, [input_path])
    codec = _as_model(model)
    info = codec.info
    if bitrate is not None:  # bad values fail now, before any work
        fit_bitrate(info, np.zeros((1, 1, 1, 1), np.int32), [(1,)], 1, 1.0, bitrate)
    if stages is not None and (isinstance(stages, bool) or not isinstance(stages, int)
                               or not 1 <= stages <= info.num_stages):
        raise ValueError(f"stages must be an integer in 1..{info.num_stages}; "
                         f"received stages={stages!r}")
    plan = analyse(input_path, info)
    window = framing.SampleWindow(read_blocks(input_path, info.sample_rate, plan.mix),
                                  len(plan.active), plan.length)
    codes, energies = _encode_signals(codec, window, plan.gains,
                                      [i for i, on in enumerate(plan.active) if on],
                                      plan.length, progress)
    choices = stage_choices(plan.mode, info.num_stages, plan.active, plan.weaker)
    if stages is not None:
        choices = [c for c in choices if max(c) <= stages]
    choice, payloads = fit_bitrate(info, codes, choices, plan.segments, plan.duration, bitrate)
    gain_codes, link = plan.gain_codes.copy(), plan.link
    loudness = np.zeros(gain_codes.shape, np.int8)
    for i, s in enumerate(choice):
        if s:
            loudness[i] = loudness_corrections(codec, codes[i], energies[i], plan.gains[i], s,
                                              plan.length)
        else:  # silent, or dropped to fit the cap
            gain_codes[i] = container.GAIN_SILENT
    if 0 in choice:
        link = container.LINK_NONE
    loudness[gain_codes == container.GAIN_SILENT] = 0
    header = container.VQZHeader(model_id=info.model_id, sample_rate=plan.sample_rate,
                                 channels=plan.channels, num_samples=plan.frames,
                                 num_cells=codes.shape[1], num_segments=plan.segments,
                                 grid_width=info.grid[1], stages=choice, mode=plan.mode,
                                 link=link, version=info.format_version)
    atomic_write_bytes(output_path, container.pack(header, gain_codes, loudness, payloads),
                       inputs=[input_path])
    return output_path


def decompress(input_path: str | Path, output_path: str | Path, *,
               model: str | Path | CodecModel | None = None,
               iterations: int | None = None, progress: bool = True,
               max_samples: int | None = DEFAULT_MAX_SAMPLES) -> Path:
    """Decompress a ``.vqz`` file into an audio file.

    Parameters
    ----------
    input_path : str or Path
        A file written by `compress` with the same model.
    output_path : str or Path
        Destination (original sample rate and channel count), written
        atomically in the format its suffix names: ``.wav`` (or none),
        ``.flac``, ``.ogg`` or ``.mp3``; other suffixes are refused.
    model : str, Path or CodecModel, optional
        Codec bundle folder; default: the shipped model, which also decodes
        files of the models it replaced (`vqkeras.codec.codec_model.model_for_file`).
    iterations : int, optional
        Phase reconstruction iterations per chunk (default: the bundle's).
    progress : bool
        Show a progress bar on a terminal for inputs of 4+ chunks.
    max_samples : int or None
        Refuse a file that announces more decoded samples than this (all
        channels, at the original rate), before decoding anything. Default
        `vqkeras.codec.unpack.DEFAULT_MAX_SAMPLES`; None: only the format's
        own bounds.

    Returns
    -------
    Path
        ``output_path``.

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

    input_path, output_path = Path(input_path), Path(output_path)
    if input_path.is_dir():
        raise CodecFormatError(f"{input_path}: is a folder, not a .vqz file")
    if not input_path.is_file():
        raise CodecFormatError(f"{input_path}: file not found")
    check_output_path(output_path, [input_path])
    output_format(output_path)  # an unknown suffix fails now, not after decoding
    codec = _as_model(model)
    if iterations is not None and (isinstance(iterations, bool)
                                   or not isinstance(iterations, int) or iterations < 0):
        raise ValueError(f"iterations must be a non-negative integer; "
                         f"received iterations={iterations!r}")
    announced = check_vqz_file(input_path, max_samples)
    # An older shipped model's file decodes with its own bundle; any other model
    # mismatch is refused by read_vqz, naming both ids.
    codec = model_for_file(codec, announced.model_id)
    info = codec.info
    if iterations is None:
        iterations = info.iterations
    header, gains, loudness, indices = read_vqz(input_path.read_bytes(), info)
    fmt, subtype = output_format(output_path)
    with atomic_path(output_path, inputs=(input_path,)) as tmp:
        writer = StreamWriter(tmp, fmt, subtype, info.sample_rate, header.sample_rate,
                              header.channels, framing.model_length(info, header.sample_rate,
                                                                    header.num_samples),
                              header.num_samples, name=output_path)
        try:
            for piece in decode_stream(codec, header, gains, loudness, indices,
                                       iterations=iterations, progress=progress):
                writer.write(piece)
        except BaseException:
            writer.abort()  # the temporary file is removed by atomic_path
            raise
        writer.close()
    return output_path
