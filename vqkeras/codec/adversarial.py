"""Adversarial fine-tuning of a decoder against a spectrogram patch discriminator.

One training step, written in `keras.ops`; only the gradient and the
compilation differ per backend. JAX runs it as a pure function of the
variables' values (`Layer.stateless_call`, `Optimizer.stateless_apply`,
`jax.value_and_grad`, `jax.jit`); TensorFlow (`tf.GradientTape` under
`tf.function`, whose optimizers have no ``stateless_apply``) and torch
(`torch.autograd.grad`, eager) update the variables in place:

1. generator: ``fake = G(x)``; its loss is
   ``recon_weight * recon(y, fake) + adv_weight * LSGAN(D(fake)) +
   fm_weight * feature_matching(D(y), D(fake))`` with the discriminator's
   weights held fixed; one optimizer step on G's weights;
2. discriminator: the least-squares loss on ``y`` (real) and the step's
   ``fake`` (no gradient to G); one optimizer step on D's weights.

The reconstruction term is weighted well above the other two (as DAC and
Vocos do), so the decoder keeps what it learnt and the discriminator only
sharpens it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import keras
from keras import ops

from vqkeras.cache import keras_backend
from vqkeras.codec.discriminator import split_outputs
from vqkeras.losses import feature_matching, lsgan_discriminator_loss, lsgan_generator_loss

__all__ = ["AdversarialTrainer"]


def _gradients(loss_fn: Callable[[], tuple[Any, Any]], variables: list) -> tuple[Any, Any, list]:
    """``(loss, aux, d loss / d variables)`` of ``loss_fn()`` on TensorFlow or torch."""
    backend = keras_backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss, aux = loss_fn()
        return loss, aux, tape.gradient(loss, variables)
    if backend == "torch":
        import torch

        with torch.enable_grad():
            loss, aux = loss_fn()
            grads = torch.autograd.grad(loss, [v.value for v in variables])
        return loss, aux, list(grads)
    raise NotImplementedError(f"adversarial training needs the jax, tensorflow or torch backend. "
                              f"Received: backend={backend!r}")


def _compile(fn: Callable) -> Callable:
    backend = keras_backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=True, reduce_retracing=True)
    return fn


class AdversarialTrainer:
    """Train ``generator`` against ``discriminator`` with a reconstruction loss.

    Parameters
    ----------
    generator : keras.Model
        Maps a batch ``x`` to images shaped like ``y`` (the codec's decoder:
        quantized latents -> dB images).
    discriminator : keras.Model
        A `vqkeras.codec.discriminator.build_patch_discriminator` model.
    scales, depth : int
        The discriminator's scales and convolutions per scale.
    recon_loss : keras.losses.Loss
        Per-example reconstruction loss (e.g. `vqkeras.losses.SpectrogramStructureLoss`).
    recon_weight, adv_weight, fm_weight : float
        Weights of the three generator terms.
    generator_learning_rate, discriminator_learning_rate : float
        Adam learning rates (betas 0.5 / 0.9, as GAN fine-tunes usually use).

    Attributes
    ----------
    history : dict of list of float
        Per-step ``recon``, ``adv``, ``fm``, ``disc`` losses.
    """

    def __init__(self, generator: keras.Model, discriminator: keras.Model, *, scales: int,
                 depth: int, recon_loss: keras.losses.Loss, recon_weight: float = 1.0,
                 adv_weight: float = 1.0, fm_weight: float = 1.0,
                 generator_learning_rate: float = 1e-4,
                 discriminator_learning_rate: float = 1e-4) -> None:
        self.generator = generator
        self.discriminator = discriminator
        self.scales, self.depth = int(scales), int(depth)
        self.recon_loss = recon_loss
        self.weights = (float(recon_weight), float(adv_weight), float(fm_weight))
        self.g_optimizer = keras.optimizers.Adam(generator_learning_rate, beta_1=0.5, beta_2=0.9)
        self.d_optimizer = keras.optimizers.Adam(discriminator_learning_rate, beta_1=0.5,
                                                 beta_2=0.9)
        self.g_optimizer.build(generator.trainable_variables)
        self.d_optimizer.build(discriminator.trainable_variables)
        self.history: dict[str, list[float]] = {"recon": [], "adv": [], "fm": [], "disc": []}
        self._jax = keras_backend() == "jax"
        self._step = _compile(self._stateless_step if self._jax else self._stateful_step)

    def _discriminate(self, d_tv, d_ntv, images):
        outputs, _ = self.discriminator.stateless_call(d_tv, d_ntv, images)
        return split_outputs(outputs, scales=self.scales, depth=self.depth)

    def _stateless_step(self, state, x, y):
        import jax

        g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = state
        recon_w, adv_w, fm_w = self.weights
        real_features, _ = self._discriminate(d_tv, d_ntv, y)
        real_features = [ops.stop_gradient(f) for f in real_features]

        def g_loss(params):
            fake, new_ntv = self.generator.stateless_call(params, g_ntv, x, training=True)
            fake_features, fake_logits = self._discriminate(d_tv, d_ntv, fake)
            recon = ops.mean(self.recon_loss.call(y, fake))
            adv = lsgan_generator_loss(fake_logits)
            fm = feature_matching(real_features, fake_features)
            total = recon_w * recon + adv_w * adv + fm_w * fm
            return total, (fake, new_ntv, recon, adv, fm)

        (_, (fake, g_ntv, recon, adv, fm)), g_grads = jax.value_and_grad(g_loss, has_aux=True)(g_tv)
        g_tv, g_ov = self.g_optimizer.stateless_apply(g_ov, g_grads, g_tv)
        fake = ops.stop_gradient(fake)

        def d_loss(params):
            _, real_logits = self._discriminate(params, d_ntv, y)
            _, fake_logits = self._discriminate(params, d_ntv, fake)
            loss = lsgan_discriminator_loss(real_logits, fake_logits)
            return loss, loss

        (disc, _), d_grads = jax.value_and_grad(d_loss, has_aux=True)(d_tv)
        d_tv, d_ov = self.d_optimizer.stateless_apply(d_ov, d_grads, d_tv)
        return (g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov), (recon, adv, fm, disc)

    def _stateful_step(self, x, y):
        recon_w, adv_w, fm_w = self.weights
        g_vars = self.generator.trainable_variables
        d_vars = self.discriminator.trainable_variables
        split = lambda out: split_outputs(out, scales=self.scales, depth=self.depth)  # noqa: E731
        real_features = [ops.stop_gradient(f) for f in split(self.discriminator(y))[0]]

        def g_loss():
            fake = self.generator(x, training=True)
            fake_features, fake_logits = split(self.discriminator(fake))
            recon = ops.mean(self.recon_loss.call(y, fake))
            adv = lsgan_generator_loss(fake_logits)
            fm = feature_matching(real_features, fake_features)
            return recon_w * recon + adv_w * adv + fm_w * fm, (fake, recon, adv, fm)

        _, (fake, recon, adv, fm), grads = _gradients(g_loss, g_vars)
        self.g_optimizer.apply(grads, g_vars)
        fake = ops.stop_gradient(fake)

        def d_loss():
            _, real_logits = split(self.discriminator(y))
            _, fake_logits = split(self.discriminator(fake))
            loss = lsgan_discriminator_loss(real_logits, fake_logits)
            return loss, None

        disc, _, grads = _gradients(d_loss, d_vars)
        self.d_optimizer.apply(grads, d_vars)
        return recon, adv, fm, disc

    def _current_state(self):
        values = lambda vs: [v.value for v in vs]  # noqa: E731
        g, d = self.generator, self.discriminator
        return (values(g.trainable_variables), values(g.non_trainable_variables),
                values(d.trainable_variables), values(d.non_trainable_variables),
                values(self.g_optimizer.variables), values(self.d_optimizer.variables))

    def train(self, batches: Iterable[tuple[Any, Any]], steps: int, *,
              progress: bool = True) -> dict[str, list[float]]:
        """Run ``steps`` steps over ``batches`` (an iterable of ``(x, y)`` numpy pairs).

        The models' and optimizers' variables hold the result when this returns.
        """
        from tqdm.auto import tqdm

        state = self._current_state() if self._jax else None
        bar = tqdm(total=int(steps), desc="adversarial fine-tune", unit="step",
                   disable=not progress)
        iterator = iter(batches)
        for _ in range(int(steps)):
            x, y = next(iterator)
            x, y = ops.convert_to_tensor(x), ops.convert_to_tensor(y)
            if self._jax:
                state, losses = self._step(state, x, y)
            else:
                losses = self._step(x, y)
            values = [float(ops.convert_to_numpy(v)) for v in losses]
            if not all(math.isfinite(v) for v in values):
                raise FloatingPointError(f"adversarial fine-tune diverged (losses {values})")
            for key, value in zip(("recon", "adv", "fm", "disc"), values):
                self.history[key].append(value)
            bar.set_postfix(recon=f"{values[0]:.4g}", disc=f"{values[3]:.3f}", refresh=False)
            bar.update()
        bar.close()
        if self._jax:
            self._write_back(state)
        return self.history

    def _write_back(self, state) -> None:
        g_tv, g_ntv, d_tv, d_ntv, g_ov, d_ov = state
        g, d = self.generator, self.discriminator
        for variables, values in ((g.trainable_variables, g_tv), (g.non_trainable_variables, g_ntv),
                                  (d.trainable_variables, d_tv),
                                  (d.non_trainable_variables, d_ntv),
                                  (self.g_optimizer.variables, g_ov),
                                  (self.d_optimizer.variables, d_ov)):
            for variable, value in zip(variables, values):
                variable.assign(value)
