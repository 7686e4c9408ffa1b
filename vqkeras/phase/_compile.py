"""Backend-specific compilation and differentiation for the phase-reconstruction loops.

The loops themselves are written in `keras.ops`; only two things differ per
backend: how a function is compiled (`jax.jit` or `tf.function`) and how a
gradient is taken (`jax.value_and_grad` or `tf.GradientTape`). Compiled
functions are cached per backend and per key (shape and static parameters), so
repeated calls with the same shapes do not retrace. On JAX with the user cache
on, a compiled loop is also saved with `jax.export` (`vqkeras.exported`),
so a later process runs it without importing Keras at all (the codec's
decoder starts in about a second).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from vqkeras.cache import keras_backend

_CACHE: dict[tuple[str, Hashable], Callable[..., Any]] = {}
_MAX_CACHE = 64


def compiled(key: Hashable, make_fn: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """Return `make_fn()` compiled for the active backend, cached under `key`.

    Parameters
    ----------
    key : hashable
        Everything that changes the traced graph: input shapes and the static
        parameters (iteration counts, window, ...).
    make_fn : callable
        Builds the plain Python function (of tensors only) to compile.
    """
    backend = keras_backend()
    full_key = (backend, key)
    fn = _CACHE.get(full_key)
    if fn is not None:
        return fn
    if backend == "jax":
        fn = _exported_or_jit(key, make_fn)
    elif backend == "tensorflow":
        raw = make_fn()
        import tensorflow as tf

        # XLA is markedly faster than the plain TF graph for these FFT loops.
        fn = tf.function(raw, jit_compile=True, reduce_retracing=False)
    else:  # torch: run eagerly
        fn = _eager(make_fn())
    if len(_CACHE) >= _MAX_CACHE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[full_key] = fn
    return fn


def _eager(raw: Callable[..., Any]) -> Callable[..., Any]:
    """`raw` with its numpy arguments made backend tensors first.

    `jax.jit` and `tf.function` convert numpy arguments themselves; eager torch
    does not, and ``ndarray * Tensor`` then fails inside the loop.
    """
    from keras import ops

    def call(*args):
        return raw(*(ops.convert_to_tensor(a) for a in args))

    return call


def _exported_or_jit(key: Hashable, make_fn: Callable[[], Callable[..., Any]]
                     ) -> Callable[..., Any]:
    """A function that, on its first call, loads the saved program for those
    argument shapes, or builds (``jax.jit(make_fn())``) and saves it."""
    program: list[Callable[..., Any]] = []

    def call(*args):
        if not program:
            import hashlib

            import jax
            import numpy as np

            from vqkeras.exported import load_or_export

            name = str(key[0]) if isinstance(key, tuple) and key else "phase"
            digest = hashlib.sha256(repr(key).encode()).hexdigest()
            examples = tuple(np.asarray(a) for a in args)
            fn = load_or_export(name, {"key": digest}, examples, lambda: jax.jit(make_fn()))
            program.append(fn if fn is not None else jax.jit(make_fn()))
        return program[0](*args)

    return call


def value_and_grad(loss_fn: Callable[[Any], Any]) -> Callable[[Any], tuple[Any, Any]]:
    """Return `f(x) -> (loss_fn(x), d loss_fn / dx)` for the active backend.

    `loss_fn` must map one tensor to a scalar using `keras.ops` only.
    """
    backend = keras_backend()
    if backend == "jax":
        import jax

        return jax.value_and_grad(loss_fn)
    if backend == "tensorflow":
        import tensorflow as tf

        def _vg(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = loss_fn(x)
            return loss, tape.gradient(loss, x)

        return _vg
    if backend == "torch":
        import torch

        def _vg_torch(x):
            with torch.enable_grad():
                x = x.detach().requires_grad_(True)
                loss = loss_fn(x)
                (grad,) = torch.autograd.grad(loss, x)
            return loss.detach(), grad

        return _vg_torch
    raise NotImplementedError(
        f"Gradient-based phase reconstruction needs the jax, tensorflow or torch backend. "
        f"Received: backend={backend!r}"
    )
