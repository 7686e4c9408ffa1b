"""Command output without the backends' start-up chatter (issue 9, `vqkeras.quiet`)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vqkeras.quiet import _NOISE, _pump

REPO = Path(__file__).resolve().parent.parent

NOISE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1795628133.013739    5709 port.cc:153] oneDNN custom operations are on. You may "
    b"see slightly different numerical results.",
    b"E0000 00:00:1732552345.123456   12345 meta_optimizer.cc:966] remapper failed: INVALID_ARGUMENT: "
    b"Mutation::Apply error: fanout 'gradient_tape/x' exist for missing node 'y'.",
    b"W1125 17:33:01.123456  4242 cuda_executor.cc:1040] could not find cuda drivers",
]
KEPT = [
    b"E0000 00:00:1732552345.123456   12345 op_kernel.cc:1840] OP_REQUIRES failed: out of memory",
    b"vqkeras compress: error: x.wav: file is empty (0 bytes)",
    b"compress:  50%|#####     | 2/4 [00:01<00:01,  1.9window/s]",
]


def test_noise_pattern_drops_backend_chatter_but_not_real_errors():
    assert all(_NOISE.match(line) for line in NOISE)
    assert not any(_NOISE.match(line) for line in KEPT)


def test_pump_filters_lines_and_passes_progress_bars_through():
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    thread = threading.Thread(target=_pump, args=(src_r, dst_w))
    thread.start()
    # A progress bar redraws with \r and no newline: it must come through before the newline.
    os.write(src_w, b"\n".join(NOISE[:2]) + b"\nbar  10%\rbar  50%")
    os.write(src_w, b"\rbar 100%\n" + NOISE[2] + b"\n" + KEPT[0] + b"\n")
    os.close(src_w)
    thread.join(timeout=5)
    os.close(dst_w)
    out = os.read(dst_r, 1 << 16)
    assert out == b"bar  10%\rbar  50%\rbar 100%\n" + KEPT[0] + b"\n"


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_command_output_has_no_backend_chatter(backend, notes, tmp_path):
    """A real `vqkeras compress` process: stdout names the file, stderr stays empty."""
    from vqkeras.audio_io import write_wav

    write_wav(tmp_path / "x.wav", notes[0], 16000)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "JAX_PLATFORMS", "KERAS_BACKEND")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, "-m", "vqkeras.cli", "--backend", backend, "-v", "compress",
                           str(tmp_path / "x.wav"), str(tmp_path / "x.vqz")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / "x.vqz")
    for chatter in ("Unable to initialize backend", "oneDNN", "remapper", "absl::InitializeLog",
                    "cpu_feature_guard"):
        assert chatter not in proc.stderr, proc.stderr
