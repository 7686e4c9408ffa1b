"""Saved models load after a plain ``import vqkeras``, in a fresh process, on every backend.

Each save and each load runs in its own process (``KERAS_BACKEND`` is fixed per
process), so these tests run once, from the JAX session, and cover all three
backends themselves.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "tensorflow", "torch")

# Saves two models: the experiments' VQVAE (trained 3 steps) and a functional
# QuantizerMetricsModel holding every layer (trained 1 step); prints their codes.
_SAVE = r"""
import json, sys
import numpy as np
import keras
import vqkeras
from vqkeras.experiments.models import VQVAE, compile_model
out, images_path, waves_path = sys.argv[1:4]
images, waves = np.load(images_path), np.load(waves_path)
keras.utils.set_random_seed(0)
vqvae = VQVAE(images.shape[1:], num_hiddens=8, num_residual_layers=1, num_residual_hiddens=4,
              strides=[[2, 2], [2, 2]], embedding_dim=4, num_embeddings=16, ema=True,
              initializer="kmeans++", dead_code_threshold=1)
compile_model(vqvae, learning_rate=1e-3)
for _ in range(3):
    vqvae.train_on_batch(images, images)
vqvae.save(f"{out}/vqvae.keras")

inputs = keras.Input(waves.shape[1:])
spec = vqkeras.Spectrogram(frame_length=256, frame_step=128, mode="db", name="spec")(inputs)
feats = keras.layers.Dense(6, name="features")(spec)
parts = [vqkeras.VectorQuantizer(16, 6, ema=True, initializer="first_batch", seed=0, name="vq")(feats),
         vqkeras.ResidualVectorQuantizer(2, 16, 6, seed=0, name="rvq")(feats),
         vqkeras.FiniteScalarQuantizer([5, 5, 4, 4, 3, 3], name="fsq")(feats),
         vqkeras.LookupFreeQuantizer(6, name="lfq")(feats)]
layers_model = vqkeras.QuantizerMetricsModel(inputs, keras.layers.Add()(parts))
layers_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
target = np.zeros((len(waves),) + tuple(layers_model.output_shape[1:]), "float32")
layers_model.train_on_batch(waves, target)
layers_model.save(f"{out}/layers.keras")
"""

# Loads both with `keras.models.load_model` after `import vqkeras` only; prints
# the codes of fixed inputs, the optimizer step count and the loss of one more step.
_LOAD = r"""
import json, sys
import numpy as np
import vqkeras
import keras
images_path, waves_path, *folders = sys.argv[1:]
images, waves = np.load(images_path), np.load(waves_path)
results = []
for folder in folders:
    result = {"backend": keras.backend.backend()}
    vqvae = keras.models.load_model(f"{folder}/vqvae.keras")
    z = vqvae.encoder(images)
    result["vqvae_codes"] = np.asarray(keras.ops.convert_to_numpy(vqvae.quantizer.encode(z))).tolist()
    result["vqvae_steps"] = int(keras.ops.convert_to_numpy(vqvae.optimizer.iterations))
    result["vqvae_optimizer"] = type(vqvae.optimizer).__module__
    result["vqvae_loss"] = float(vqvae.train_on_batch(images, images)[0])
    model = keras.models.load_model(f"{folder}/layers.keras")
    feats = model.get_layer("features")(model.get_layer("spec")(waves))
    for name in ("vq", "rvq", "fsq", "lfq"):
        result[name] = np.asarray(keras.ops.convert_to_numpy(model.get_layer(name).encode(feats))).tolist()
    result["layers_steps"] = int(keras.ops.convert_to_numpy(model.optimizer.iterations))
    results.append(result)
print(json.dumps(results))
"""


def _run(script: str, backend: str, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{backend}: {proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def inputs(notes, tmp_path_factory):
    """Real spectrogram images (32 x 64 of 4 notes) and 0.5-s waveforms, saved for the workers."""
    from vqkeras.features import SpectrogramConfig, waveform_to_image

    folder = tmp_path_factory.mktemp("loading-inputs")
    spec = SpectrogramConfig(frame_length=128, frame_step=64, duration=0.5)
    waves = notes[:4, :spec.num_samples]
    images = waveform_to_image(waves, spec, time_multiple=4)[:, :32]
    np.save(folder / "images.npy", images.astype("float32"))
    np.save(folder / "waves.npy", waves.astype("float32"))
    return folder / "images.npy", folder / "waves.npy"


@pytest.fixture(scope="module")
def saved(inputs, tmp_path_factory):
    """``{backend: folder}`` of the two models saved on each backend."""
    folders = {}
    for backend in BACKENDS:
        folder = tmp_path_factory.mktemp(f"saved-{backend}")
        _run(_SAVE, backend, folder, *inputs)
        folders[backend] = folder
    return folders


@pytest.fixture(scope="module")
def loaded(saved, inputs):
    """``{(saved_on, loaded_on): result}``: each backend loads the three saved folders in one fresh process."""
    results = {}
    for backend in BACKENDS:
        out = _run(_LOAD, backend, *inputs, *(saved[b] for b in BACKENDS)).stdout.strip().splitlines()[-1]
        for saved_on, result in zip(BACKENDS, json.loads(out)):
            results[saved_on, backend] = result
    return results


@pytest.mark.slow
@pytest.mark.parametrize("saved_on", BACKENDS)
def test_saved_models_load_on_every_backend(loaded, saved_on):
    reference = loaded[saved_on, saved_on]
    assert reference["vqvae_steps"] == 3 and reference["layers_steps"] == 1
    # The trained codebooks are used: more than one code over 4 notes.
    assert len(np.unique(reference["vqvae_codes"])) > 1
    for backend in BACKENDS:
        got = loaded[saved_on, backend]
        assert got["backend"] == backend
        # The backend's own optimizer class (no torch class on JAX / TensorFlow), its state restored.
        assert (backend == "torch") == ("torch" in got["vqvae_optimizer"]), got["vqvae_optimizer"]
        assert got["vqvae_steps"] == 3 and got["layers_steps"] == 1
        assert np.isfinite(got["vqvae_loss"])
        for name in ("vqvae_codes", "vq", "rvq", "fsq", "lfq"):
            agree = np.mean(np.asarray(got[name]) == np.asarray(reference[name]))
            # Recomputed features differ in the last bits across backends and may flip a near tie.
            assert agree >= 0.99, (saved_on, backend, name, agree)


def _registered_class_names() -> set[str]:
    """Names of the classes that vqkeras's sources decorate with register_keras_serializable."""
    names = set()
    for path in (ROOT / "vqkeras").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    "register_keras_serializable" in ast.unparse(d) for d in node.decorator_list):
                names.add(node.name)
    return names


@pytest.mark.parametrize("order", ["import vqkeras; import keras", "import keras; import vqkeras"])
def test_every_registered_class_is_known_after_import_vqkeras(order):
    names = sorted(_registered_class_names())
    assert {"VectorQuantizer", "VQVAE", "QuantizerMetricsModel", "DepthToSpace"} <= set(names)
    script = (f"{order}\nimport json\n"
              f"print(json.dumps({{n: keras.saving.get_registered_object('vqkeras>' + n) is not None "
              f"for n in {names!r}}}))")
    found = json.loads(_run(script, "jax").stdout.strip().splitlines()[-1])
    assert all(found.values()), found


def test_import_vqkeras_imports_no_keras():
    script = "import sys, vqkeras; print(sorted(m for m in ('keras', 'jax', 'tensorflow', 'torch') if m in sys.modules))"
    assert _run(script, "jax").stdout.strip() == "[]"


@pytest.mark.parametrize(("env", "expected"), [({}, 1), ({"VQKERAS_TORCH_THREADS": "2"}, 2),
                                               ({"OMP_NUM_THREADS": "2"}, 2)])
def test_torch_threads_on_a_small_machine(env, expected, monkeypatch):
    from vqkeras import keras_setup

    monkeypatch.delenv("VQKERAS_TORCH_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    got = keras_setup.torch_threads()
    assert got == (None if "OMP_NUM_THREADS" in env else expected)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert keras_setup.torch_threads() == (expected if "VQKERAS_TORCH_THREADS" in env else None)


def test_torch_process_gets_the_thread_count():
    script = "import vqkeras, keras, torch; print(torch.get_num_threads())"
    for threads in ("1", "2"):
        proc = _run(script, "torch", env={"VQKERAS_TORCH_THREADS": threads, "OMP_NUM_THREADS": ""})
        assert proc.stdout.strip().splitlines()[-1] == threads


def test_torch_threads_typo_is_named(monkeypatch):
    from vqkeras import keras_setup

    monkeypatch.setenv("VQKERAS_TORCH_THREADS", "one")
    with pytest.raises(ValueError, match="VQKERAS_TORCH_THREADS must be a whole number"):
        keras_setup.torch_threads()


def test_torch_threads_typo_is_one_line_on_the_command_line(notes, tmp_path):
    from vqkeras.audio_io import write_wav

    write_wav(tmp_path / "note.wav", notes[0], 16000)
    env = {**os.environ, "VQKERAS_TORCH_THREADS": "one", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "vqkeras", "--backend", "torch", "compress",
                           str(tmp_path / "note.wav"), str(tmp_path / "out.vqz")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "vqkeras compress: error: VQKERAS_TORCH_THREADS must be a whole number (0: torch's default). "
        "Received: 'one'")
    assert not (tmp_path / "out.vqz").exists()
