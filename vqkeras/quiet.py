"""Keep the backends' start-up chatter out of command output.

TensorFlow 2.21 logs through absl from C++ straight to file descriptor 2
("oneDNN custom operations are on", grappler's "remapper failed", CUDA
plugin notices), and ignores ``TF_CPP_MIN_LOG_LEVEL`` for those lines; JAX
logs "Unable to initialize backend 'tpu'" through Python logging. `quiet_backends`
sets the environment before a backend is imported and, for the C++ lines,
moves fd 2 onto a pipe whose reader thread drops the known noise and passes
everything else on. Python's own ``sys.stderr`` keeps the original terminal,
so progress bars still draw (and see a TTY).
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import re
import sys
import threading

#: C++ log lines (absl/glog format) that are not for the user: everything at
#: INFO and WARNING level, and the ERROR lines known to be harmless.
_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w./-]+:\d+\] .*"
    rb"|E\d{4} \d+:\d+:\d+\.\d+ +\d+ [\w./-]+:\d+\] .*(remapper failed|cuda|cuDNN|cuFFT|cuBLAS"
    rb"|TPU|computation placer).*"
    rb"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.)$")
#: A held partial line that may still turn into noise.
_NOISE_START = re.compile(rb"^(WARNING: All log|[IWE]\d{0,4}( |$)|To enable the)")

_installed = False


def _has_accelerator_plugin() -> bool:
    """True if a JAX GPU/TPU plugin is installed (then JAX may pick the accelerator)."""
    names = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "libtpu", "jax_plugins")
    return any(importlib.util.find_spec(name) is not None for name in names)


def quiet_backends(*, filter_fd: bool = True) -> None:
    """Set log levels before any backend is imported; optionally filter C++ stderr.

    Parameters
    ----------
    filter_fd : bool
        Also drop TensorFlow/XLA's C++ start-up lines from file descriptor 2
        (see the module docstring). Off under ``--debug``.

    Notes
    -----
    Only defaults are set (``os.environ.setdefault``): a user's own
    ``JAX_PLATFORMS`` or ``TF_CPP_MIN_LOG_LEVEL`` wins. ``JAX_PLATFORMS=cpu``
    is set only when no JAX accelerator plugin is installed, so a GPU is
    still used where there is one.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not _has_accelerator_plugin():
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    for name in ("jax._src.xla_bridge", "absl", "tensorflow", "h5py"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if filter_fd:
        _filter_stderr_fd()


def _filter_stderr_fd() -> None:
    global _installed
    if _installed:
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (embedded interpreter)
        return
    # Python writes keep going to the terminal (a TTY stays a TTY for tqdm). In
    # a Jupyter kernel sys.stderr is the kernel's own stream: leave it alone.
    if sys.stderr is sys.__stderr__:
        sys.stderr = os.fdopen(os.dup(original), "w", buffering=1, encoding=getattr(
            sys.stderr, "encoding", None) or "utf-8", errors="backslashreplace")
    thread = threading.Thread(target=_pump, args=(read_end, original), daemon=True,
                              name="vqkeras-stderr-filter")
    thread.start()
    _installed = True

    def drain() -> None:  # at exit: close the pipe's last writer, let the reader finish
        try:
            os.dup2(original, 2)
        except OSError:
            return
        thread.join(timeout=2.0)

    atexit.register(drain)


def _pump(read_end: int, out: int) -> None:
    """Copy ``read_end`` to ``out`` line by line, dropping `_NOISE` lines."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        kept = [line + b"\n" for line in lines if not _NOISE.match(line)]
        if pending and not _NOISE_START.match(pending):
            kept.append(pending)  # a partial line that cannot be noise: pass it on now
            pending = b""
        if kept:
            os.write(out, b"".join(kept))
    if pending and not _NOISE.match(pending):
        os.write(out, pending)
