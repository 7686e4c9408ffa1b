"""Exceptions that mean "the input is wrong", raised with a message naming the problem.

The command line prints these as one line (no traceback); library users can
catch `VQKerasError` or the specific subclass.
"""


class VQKerasError(Exception):
    """Base class of every error vqkeras raises on purpose."""


class AudioFileError(VQKerasError, ValueError):
    """A WAV (or other audio) file is missing, corrupt, empty or unusable."""


class DatasetError(VQKerasError, ValueError):
    """A dataset folder or file is missing, malformed or unsafe."""


class ConfigError(VQKerasError, ValueError):
    """An experiment YAML has an unknown key or a bad value."""


class CodecFormatError(VQKerasError, ValueError):
    """A compressed (.vqz) file is truncated, damaged, or for another model/version."""


class CodecLimitError(VQKerasError, ValueError):
    """A codec request that cannot be met: a bitrate cap below what a clip needs,
    or a .vqz file that would decode to more samples than the allowed maximum."""


class OutputPathError(VQKerasError, ValueError):
    """An output path is unusable: it is an input file, a folder, or under a file."""


class ModelFileError(VQKerasError, ValueError):
    """A saved model (``.keras``) is missing, truncated or not a Keras model."""
