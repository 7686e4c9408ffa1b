"""A `.keras` file saved on one backend reloads on the other and gives identical codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.backend

_RELOAD = """
import json, sys
import numpy as np
import keras
import vqkeras.layers  # registers the classes
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
# The same features as the saving side: codes are compared on identical inputs (a
# spectrogram recomputed on another backend differs in the last bits and can flip a near tie).
feats = np.load(sys.argv[3])
vq = model.get_layer("vq").encode(feats)
rvq = model.get_layer("rvq").encode(feats)
print(json.dumps({"backend": keras.backend.backend(),
                  "vq": keras.ops.convert_to_numpy(vq).tolist(), "rvq": keras.ops.convert_to_numpy(rvq).tolist(),
                  "out": keras.ops.convert_to_numpy(model.get_layer("vq")(feats) + model.get_layer("rvq")(feats)).tolist()}))
"""


def test_codes_identical_on_the_other_backend(notes, tmp_path, backend):
    from vqkeras.layers import ResidualVectorQuantizer, Spectrogram, VectorQuantizer

    other = {"jax": "tensorflow", "tensorflow": "torch", "torch": "jax"}[backend]  # each saves, another loads
    x = notes[:2, :8000]
    inputs = keras.Input((8000,))
    spec = Spectrogram(frame_length=256, frame_step=128, mode="db", name="spec")(inputs)
    feats = keras.layers.Dense(8, name="features")(spec)
    vq = VectorQuantizer(16, 8, ema=True, initializer="first_batch", seed=0, name="vq")
    rvq = ResidualVectorQuantizer(2, 16, 8, seed=0, name="rvq")
    model = keras.Model(inputs, keras.layers.Add()([vq(feats), rvq(feats)]))
    # Train the quantisers a little so the saved state is not the initial one.
    f = model.get_layer("features")(model.get_layer("spec")(x))
    vq(f, training=True)
    rvq(f, training=True)
    path, xpath, fpath = tmp_path / "model.keras", tmp_path / "x.npy", tmp_path / "f.npy"
    model.save(path)
    np.save(xpath, x)
    np.save(fpath, keras.ops.convert_to_numpy(f))

    env = {**os.environ, "KERAS_BACKEND": other}
    root = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", _RELOAD, str(path), str(xpath), str(fpath)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["backend"] == other
    to_numpy = keras.ops.convert_to_numpy
    np.testing.assert_array_equal(np.array(got["vq"]), to_numpy(vq.encode(f)))
    np.testing.assert_array_equal(np.array(got["rvq"]), to_numpy(rvq.encode(f)))
    np.testing.assert_allclose(np.array(got["out"]), to_numpy(vq(f) + rvq(f)), atol=1e-3)
