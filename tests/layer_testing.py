"""`run_layer_test`: the checks every vqkeras layer must pass (keras-hub style).

Keras's own `keras.src.testing` helper is private API, so this is our small
version: build, symbolic call, eager call, `get_config`/`from_config` round
trip, `.keras` save/load round trip, and one training step inside a model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np


def to_numpy(x, *args, **kwargs) -> np.ndarray:
    """``np.asarray`` of a tensor, variable or array on every backend.

    Why not ``np.asarray`` directly: on torch a tensor that requires grad (a
    layer output, a trainable codebook) refuses ``.numpy()``.
    """
    return np.asarray(keras.ops.convert_to_numpy(x), *args, **kwargs)


def run_layer_test(
    layer_cls,
    init_kwargs: dict,
    input_data: np.ndarray,
    *,
    expected_output_shape: tuple,
    tmp_path: Path,
    expected_num_trainable_weights: int | None = None,
    expected_num_non_trainable_weights: int | None = None,
    expected_num_losses: int | None = None,
    run_training_step: bool = True,
    atol: float = 1e-6,
) -> keras.layers.Layer:
    """Run the standard layer checks; returns the eagerly built layer.

    Parameters
    ----------
    layer_cls : type
        A registered-serializable `keras.layers.Layer` subclass.
    init_kwargs : dict
        Constructor arguments.
    input_data : np.ndarray [shape=(batch, ...)]
        A real input batch.
    expected_output_shape : tuple
        Output shape for ``input_data`` (batch included).
    tmp_path : Path
        Folder for the `.keras` file.
    expected_num_trainable_weights, expected_num_non_trainable_weights : int, optional
        Checked after the eager build when given.
    expected_num_losses : int, optional
        Number of `layer.losses` after one eager call with ``training=True``.
    run_training_step : bool
        Fit one batch of ``Dense -> layer -> Dense`` and check that the loss is
        finite and that the Dense kernel in front of the layer moved.
    atol : float
        Tolerance of the output comparisons across the round trips.
    """
    batch_shape = tuple(input_data.shape)

    # 1. symbolic call: shapes without data.
    layer = layer_cls(**init_kwargs)
    symbolic_in = keras.Input(batch_shape=(None,) + batch_shape[1:], dtype=str(input_data.dtype))
    symbolic_out = layer(symbolic_in)
    expected_symbolic = (None,) + tuple(expected_output_shape[1:])
    assert tuple(symbolic_out.shape) == expected_symbolic, (symbolic_out.shape, expected_symbolic)
    assert tuple(layer.compute_output_shape((None,) + batch_shape[1:])) == expected_symbolic

    # 2. eager call builds a fresh layer and gives the promised shape.
    layer = layer_cls(**init_kwargs)
    output = keras.ops.convert_to_numpy(layer(input_data))
    assert output.shape == tuple(expected_output_shape), (output.shape, expected_output_shape)
    assert np.all(np.isfinite(output))
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    if expected_num_losses is not None:
        # A separate instance: a training call may change state (EMA, init).
        trained = layer_cls(**init_kwargs)
        trained(input_data, training=True)
        assert len(trained.losses) == expected_num_losses, trained.losses

    # 3. config round trip: same config, and a rebuilt layer with the same
    # weights gives the same output.
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    clone(input_data)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(input_data)), output, atol=atol)

    # 4. .keras round trip inside a functional model.
    inputs = keras.Input(batch_shape=(None,) + batch_shape[1:], dtype=str(input_data.dtype))
    model = keras.Model(inputs, layer(inputs))
    path = Path(tmp_path) / f"{layer_cls.__name__}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(reloaded(input_data)), output, atol=atol)
    assert type(reloaded.layers[-1]) is layer_cls

    # 5. one training step: gradients reach the Dense layer in front.
    if run_training_step:
        features = batch_shape[-1]
        inputs = keras.Input(batch_shape=(None,) + batch_shape[1:])
        front = keras.layers.Dense(features, kernel_initializer="identity")
        hidden = layer_cls(**init_kwargs)(front(inputs))
        outputs = keras.layers.Dense(1)(hidden)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        before = keras.ops.convert_to_numpy(front.kernel).copy()
        target = np.ones(tuple(outputs.shape[1:-1]) + (1,), "float32")[None].repeat(batch_shape[0], 0)
        history = model.fit(input_data.astype("float32"), target, batch_size=batch_shape[0], epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        assert not np.allclose(keras.ops.convert_to_numpy(front.kernel), before), "no gradient reached the input"
    return layer

