"""Every vqkeras layer under ``mixed_bfloat16`` and ``mixed_float16`` (issue 20, part 3).

State and arithmetic stay float32 inside the layers (distances, argmin, EMA,
restarts, FSQ/LFQ index sums, the STFT); indices are int32; outputs follow the
compute dtype; and on inputs that the low-precision dtype represents, the codes
equal a float32 layer's codes for the same weights.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from vqkeras.layers import (
    FiniteScalarQuantizer,
    LookupFreeQuantizer,
    ResidualVectorQuantizer,
    Spectrogram,
    VectorQuantizer,
)
from vqkeras.layers.quantizer_base import QuantizerMetricsModel

pytestmark = pytest.mark.backend

POLICIES = ["mixed_bfloat16", "mixed_float16"]

# name -> (factory, vector size); small sizes keep the file fast on every backend.
LAYERS = {
    "vq": (lambda: VectorQuantizer(16, 4, seed=0), 4),
    "vq-ema-restart-kmeans": (lambda: VectorQuantizer(16, 4, ema=True, dead_code_threshold=1,
                                                      initializer="kmeans++", seed=0), 4),
    "vq-first-batch-restart": (lambda: VectorQuantizer(16, 4, initializer="first_batch",
                                                       dead_code_threshold=1, seed=0), 4),
    "vq-heads-cosine-proj": (lambda: VectorQuantizer(16, 8, codebook_dim=4, num_heads=2,
                                                     separate_codebook_per_head=True,
                                                     distance="cosine", seed=0), 8),
    "rvq-ema-dropout": (lambda: ResidualVectorQuantizer(3, 16, 4, quantizer_dropout=0.5, ema=True,
                                                        dead_code_threshold=1, seed=0), 4),
    "rvq-fsq": (lambda: ResidualVectorQuantizer(2, None, 4, stage="fsq", levels=[5, 5, 5, 5],
                                                quantizer_dropout=0.5, seed=0), 4),
    "fsq": (lambda: FiniteScalarQuantizer([8, 8, 8, 5, 5, 5]), 6),
    "lfq": (lambda: LookupFreeQuantizer(6), 6),
}


@pytest.fixture(params=POLICIES)
def policy(request):
    """Set the global dtype policy for one test and restore the previous one afterwards."""
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _float32_twin(factory):
    """The same layer built under float32 (dtype given explicitly, so no global policy is needed)."""
    layer = factory()
    config = layer.get_config()
    config["dtype"] = "float32"
    return type(layer).from_config(config)


def _representable(x, dtype):
    """``x`` rounded to `dtype` (as that dtype's tensor) and the same values as float32."""
    low = ops.cast(ops.convert_to_tensor(x), dtype)
    return low, ops.cast(low, "float32")


def _np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")))


def _state(layer):
    """Non-trainable float state of the layer (EMA statistics, counters, shifts)."""
    return {v.path: _np(v.value) for v in layer.non_trainable_weights}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_runs_in_low_precision_with_float32_state(policy, name, rng):
    factory, dim = LAYERS[name]
    layer = factory()
    compute = layer.compute_dtype
    assert compute == ("bfloat16" if policy == "mixed_bfloat16" else "float16")
    x = ops.cast(rng.normal(size=(4, 8, dim)).astype("float32"), compute)
    layer.build(x.shape)
    before = _state(layer)
    out = layer(x, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == compute
    assert np.isfinite(_np(out)).all()
    idx = layer.encode(x)
    assert keras.backend.standardize_dtype(idx.dtype) == "int32"
    assert keras.backend.standardize_dtype(layer.decode(idx).dtype) == compute
    for v in layer.weights:  # codebook, EMA statistics, projections, counters
        assert keras.backend.standardize_dtype(v.dtype) == "float32", v.path
    after = _state(layer)
    ema = {k: v for k, v in after.items() if "ema_" in k}
    for key, value in ema.items():
        # The EMA statistics moved (float32: in bfloat16, decay * sum would round back to sum).
        assert not np.array_equal(value, before[key]), key
    if "ema" in name:
        assert ema


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_codes_equal_float32_layer_on_representable_inputs(policy, name, rng):
    factory, dim = LAYERS[name]
    mixed = factory()
    compute = mixed.compute_dtype
    reference = _float32_twin(factory)
    shape = (4, 8, dim)
    mixed.build(shape)
    reference.build(shape)
    reference.set_weights(mixed.get_weights())
    low, same32 = _representable(rng.normal(size=(64, dim)).astype("float32") * 1.5, compute)
    np.testing.assert_array_equal(_np(mixed.encode(low)), _np(reference.encode(same32)))
    # At inference the output is the float32 layer's output rounded to the compute dtype...
    out = mixed(low, training=False)
    expected = ops.cast(reference(same32, training=False), compute)
    np.testing.assert_array_equal(_np(out), _np(expected))
    # ...and call == decode(encode) still holds (up to the final rounding of z + (e - z)).
    np.testing.assert_allclose(_np(out), _np(mixed.decode(mixed.encode(low))), rtol=1e-2, atol=1e-3)


def test_fsq_over_a_thousand_codes_exact_in_low_precision(policy):
    """[8, 8, 8, 5, 5, 5]: 64000 codes; bfloat16 cannot hold an index above 256 exactly."""
    levels = [8, 8, 8, 5, 5, 5]
    fsq = FiniteScalarQuantizer(levels)
    n = fsq.codebook_size
    # One input per code: the inverse of the tanh bound at each grid point.
    basis = np.cumprod([1] + levels[:-1])
    digits = (np.arange(n)[:, None] // basis) % np.asarray(levels)
    lv = np.asarray(levels, "float64")
    half_l = (lv - 1.0) * (1.0 + 1e-3) / 2.0
    offset = np.where(lv % 2 == 0, 0.5, 0.0)
    grid = digits - lv // 2
    z = np.arctanh((grid + offset) / half_l) - np.arctanh(offset / half_l)
    low = ops.cast(z.astype("float32"), fsq.compute_dtype)
    np.testing.assert_array_equal(_np(fsq.encode(low)), np.arange(n))
    # decode gives the grid in the compute dtype (k / (L // 2): exact in both).
    np.testing.assert_array_equal(_np(fsq.decode(np.arange(n, dtype="int32"))), grid / (lv // 2))


def test_spectrogram_low_precision_input(policy, rng):
    layer = Spectrogram(frame_length=256, frame_step=128, mode="db", num_mel_bins=32)
    reference = Spectrogram(frame_length=256, frame_step=128, mode="db", num_mel_bins=32, dtype="float32")
    low, same32 = _representable(rng.uniform(-0.5, 0.5, size=(2, 4000)).astype("float32"), layer.compute_dtype)
    out = layer(low)
    assert keras.backend.standardize_dtype(out.dtype) == layer.compute_dtype
    # The STFT ran in float32 on the same values: only the final rounding differs.
    np.testing.assert_array_equal(_np(out), _np(ops.cast(reference(same32), layer.compute_dtype)))


FIT_LAYERS = ["vq-ema-restart-kmeans", "rvq-fsq", "fsq", "lfq"]


@pytest.mark.parametrize("name", FIT_LAYERS)
def test_tiny_fit_lowers_the_loss(policy, name, rng):
    factory, dim = LAYERS[name]
    inputs = keras.Input((8, dim))
    x = keras.layers.Dense(dim)(inputs)
    x = factory()(x)
    # float32 output, as Keras's mixed-precision guide recommends: the loss is float32.
    outputs = keras.layers.Dense(dim, dtype="float32")(x)
    model = QuantizerMetricsModel(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    data = np.tanh(rng.normal(size=(64, 8, dim))).astype("float32")
    history = model.fit(data, data, batch_size=16, epochs=4, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < history[0]


# ------------------------------------------------------------------ experiments
def test_training_precision_is_validated_with_a_suggestion():
    from vqkeras.errors import ConfigError
    from vqkeras.experiments.config import load_config

    assert load_config({"name": "p"}).training.precision == "float32"
    assert load_config({"name": "p", "training": {"precision": "mixed_bfloat16"}}).training.precision == \
        "mixed_bfloat16"
    with pytest.raises(ConfigError, match=r"training.precision: 'mixed_bf16' is not one of .*"
                                          r"\(did you mean 'mixed_bfloat16'\?\)"):
        load_config({"name": "p", "training": {"precision": "mixed_bf16"}})


@pytest.mark.slow
def test_mixed_float16_run_resumes_and_reloads_in_float32(tiny_config, tmp_path, backend):
    """Loss scaling, its optimizer state across a resume, the policy restored, float32 inference."""
    from vqkeras.experiments.training import load_run, train

    config = tiny_config.with_overrides({"training.precision": "mixed_float16", "training.validation": False,
                                         "training.tensorboard": False, "dataset.max_train": 8,
                                         "runs_root": str(tmp_path)},
                                        run_name="fp16")
    run_dir = train(config.with_overrides({"training.epochs": 1}))
    assert keras.config.dtype_policy().name == "float32"  # restored after the run
    for name in ("done", "model.keras"):  # as if killed after the first epoch's checkpoint
        (run_dir / name).unlink()
    train(config.with_overrides({"training.epochs": 2}))  # resumes after epoch 1
    steps = -(-config.dataset.max_train // config.training.batch_size)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        last = keras.saving.load_model(run_dir / "checkpoints" / "epoch-0002.keras", compile=True)
        assert isinstance(last.optimizer, keras.optimizers.LossScaleOptimizer)
        # Two epochs of steps: the resumed run continued the saved optimizer, not a fresh one.
        assert int(ops.convert_to_numpy(last.optimizer.iterations)) == 2 * steps
        images = np.random.default_rng(0).uniform(0, 1, size=(4, *last.image_shape)).astype("float32")
        mixed_codes = last.encode(images)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    _, model = load_run(run_dir)  # outside the run: float32 again
    assert model.quantizer.compute_dtype == "float32"
    agreement = float(np.mean(model.encode(images) == mixed_codes))
    # The encoder's 16-bit convolutions move a few latents across a code boundary.
    print(f"float32 vs mixed_float16 code agreement: {agreement:.4f}")
    assert agreement > 0.9, agreement
