"""Phase reconstruction: waveforms from STFT magnitudes.

The names are imported on first use, so that ``vqkeras.phase.streaming`` (the
codec's decoder) does not pay for Keras, SciPy or matplotlib at start-up.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "AudioReconstructionCallback": "vqkeras.phase.callback",
    "StreamingInversion": "vqkeras.phase.streaming",
    "griffin_lim": "vqkeras.phase.fast_griffin_lim",
    "invert_magnitude": "vqkeras.phase.gradient_inversion",
    "pghi_phase": "vqkeras.phase.pghi",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vqkeras.phase' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
