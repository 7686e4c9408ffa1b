"""Codes -> payload: the most RVQ stages per signal whose whole file fits the bitrate.

The candidates are ordered best first (`stage_choices`); each is entropy coded
(`vqkeras.codec.entropy`) and the first whose real file size, header and side
information included, fits the cap wins (`fit_bitrate`).
"""

from __future__ import annotations

import math

import numpy as np

from vqkeras.codec import container, entropy
from vqkeras.codec.codec_model import CodecInfo
from vqkeras.errors import CodecLimitError


def stage_choices(mode: int, num_stages: int, active: list[bool], weaker: int = 1
                  ) -> list[tuple[int, ...]]:
    """Stage counts per coded signal, best first.

    Mono: all stages down to one. Left/right: equal stages for both signals.
    Mid/side: the weaker of mid and side (signal ``weaker``, usually the
    side) at about half the stages of the other, and last, the weaker one
    dropped (0 stages: decoded as silence, so the image collapses to the
    centre) for caps that one stage each does not fit. A silent signal
    always gets 0 (so an anti-phase file codes its side with every stage).
    """
    choices = []
    for s in range(num_stages, 0, -1):
        if mode == container.MONO:
            pair = (s,)
        elif mode == container.LEFT_RIGHT or not all(active):
            pair = (s, s)
        else:
            half = max(1, (s + 1) // 2)
            pair = (s, half) if weaker == 1 else (half, s)
        choices.append(tuple(p if on else 0 for p, on in zip(pair, active)))
    if mode == container.MID_SIDE and all(active):
        # Last resort under a tight cap: drop the weaker signal (a mono image).
        choices.append((1, 0) if weaker == 1 else (0, 1))
    return choices


def fit_bitrate(info: CodecInfo, codes: np.ndarray, choices: list[tuple[int, ...]],
                segments: int, duration_s: float, bitrate: float | None
                ) -> tuple[tuple[int, ...], list[bytes]]:
    """The best stage choice whose whole file fits ``bitrate``, and its payloads.

    The rate counts every byte of the file (header, per-segment side
    information, checksum) over ``max(duration, one segment)``: a clip
    shorter than a segment is charged as one segment.

    Parameters
    ----------
    codes : np.ndarray [shape=(signals, cells, width, stages)]
    choices : list of tuple of int
        Candidate stage counts per signal, best first (`stage_choices`).
    bitrate : float or None
        Cap in kbit/s; None: the first choice.

    Raises
    ------
    ValueError
        For a bitrate that is not a positive finite number.
    CodecLimitError
        If even the last choice does not fit.
    """
    if bitrate is not None and (isinstance(bitrate, bool) or not (
            isinstance(bitrate, (int, float)) and math.isfinite(bitrate) and bitrate > 0)):
        raise ValueError(f"bitrate must be a positive number of kbit/s; "
                         f"received bitrate={bitrate!r}")
    signals = codes.shape[0]
    seconds = max(duration_s, info.window_samples / info.sample_rate)
    cache: dict[tuple[int, int], bytes] = {}

    def payload(i: int, s: int) -> bytes:
        if s == 0:
            return b""
        if (i, s) not in cache:
            cache[(i, s)] = entropy.encode_payload(codes[i, ..., :s], info,
                                                   info.format_version)
        return cache[(i, s)]

    size = None
    for choice in choices:
        payloads = [payload(i, s) for i, s in enumerate(choice)]
        size = container.file_size(signals, segments, sum(map(len, payloads)))
        if bitrate is None or 8.0 * size / seconds / 1000.0 <= bitrate:
            return choice, payloads
    lowest = 8.0 * size / seconds / 1000.0
    raise CodecLimitError(f"--bitrate {bitrate:g} kbit/s is below the lowest rate this clip "
                          f"can be coded at: {lowest:.2f} kbit/s (fewest stages, header included)")
