"""Phase reconstruction: waveforms from STFT magnitudes."""

from vqkeras.phase.callback import AudioReconstructionCallback
from vqkeras.phase.gradient_inversion import invert_magnitude
from vqkeras.phase.griffin_lim import griffin_lim
from vqkeras.phase.pghi import pghi_phase

__all__ = ["AudioReconstructionCallback", "griffin_lim", "invert_magnitude", "pghi_phase"]
