"""`vqkeras.xla_flags`: the XLA:CPU flag that gives JAX's convolutions to Eigen.

The flag must not change what a model computes (same outputs and gradients as
XLA's default, up to float rounding), it must really move the convolutions'
weight gradients out of YNNPACK on this jaxlib, and setting it must never override a user's
``XLA_FLAGS``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from vqkeras import xla_flags
from vqkeras.xla_flags import FAST_CPU_CONVOLUTIONS, enable_fast_cpu_convolutions

# A small thesis block (3x3 and 1x1 residual convs, space-to-depth + 2x2 conv, sub-pixel
# 2x2 conv + depth-to-space) trained one step; prints outputs, gradients and whether a
# weight-gradient convolution runs inside a YNNPACK fusion in the compiled program.
_PROBE = r"""
import json, os, sys
import numpy as np
import jax, jax.numpy as jnp
import keras
from vqkeras.experiments.models.blocks import downsample, residual_stack, upsample

keras.utils.set_random_seed(0)
inputs = keras.Input((64, 32, 1))
x = downsample(inputs, 32, (2, 2), "space_to_depth", name="down")
x = residual_stack(x, num_hiddens=32, num_residual_layers=1, num_residual_hiddens=16, name="res")
x = upsample(x, 1, (2, 2), "subpixel", name="up")
model = keras.Model(inputs, x)
data = np.random.default_rng(1).random((8, 64, 32, 1)).astype("float32")
weights = [v.value for v in model.trainable_variables]

def loss(weights, x):
    y, _ = model.stateless_call(weights, [], x)
    return jnp.mean(jnp.square(y - x)), y

grad = jax.jit(jax.grad(loss, has_aux=True))
grads, y = grad(weights, data)
hlo = grad.lower(weights, data).compile().as_text()
import re
ynn_bodies = set(re.findall(r"calls=%?([\w.\-]+)[^\n]*\"__ynn_fusion\"", hlo))
bodies = dict(re.findall(r"^%?([\w.\-]+) [^\n]*\{\n(.*?)\n\}", hlo, re.M | re.S))
# A weight gradient is a convolution whose window spans the image (the kernels are <= 3x3).
windows = lambda body: re.findall(r"convolution\([^\n]*window=\{size=(\d+)x(\d+)", body)
wgrad_in_ynn = any(int(h) > 3 and int(w) > 3 for name in ynn_bodies
                   for h, w in windows(bodies.get(name, "")))
print("RESULT " + json.dumps({"y": np.asarray(y).ravel().tolist(),
                              "grads": [np.asarray(g).ravel().tolist() for g in grads],
                              "wgrad_in_ynn": wgrad_in_ynn,
                              "ynn_anywhere": "__ynn_fusion" in hlo}))
"""


def _probe(flags: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    if flags is not None:
        env["XLA_FLAGS"] = flags
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_flag_keeps_results_and_moves_weight_gradients_out_of_ynnpack():
    default, fast = _probe(None), _probe(FAST_CPU_CONVOLUTIONS)
    np.testing.assert_allclose(fast["y"], default["y"], rtol=1e-4, atol=1e-5)
    assert len(fast["grads"]) == len(default["grads"]) == 8  # 4 convolutions x (kernel, bias)
    for g_fast, g_default in zip(fast["grads"], default["grads"]):
        assert np.any(np.asarray(g_fast) != 0)  # gradients reach every weight
        np.testing.assert_allclose(g_fast, g_default, rtol=1e-3, atol=1e-5)
    # What the flag is for: on this jaxlib YNNPACK runs the weight gradients by default,
    # and with the flag they go to Eigen.
    assert default["wgrad_in_ynn"], "jaxlib no longer gives weight gradients to YNNPACK: revisit the flag"
    assert not fast["wgrad_in_ynn"]


def test_enable_appends_and_respects_the_users_flags(monkeypatch):
    monkeypatch.setattr(xla_flags, "_backend_started", lambda: False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert enable_fast_cpu_convolutions()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_enable_fast_math=false", FAST_CPU_CONVOLUTIONS]
    assert enable_fast_cpu_convolutions()  # idempotent
    assert os.environ["XLA_FLAGS"].count(FAST_CPU_CONVOLUTIONS) == 1

    user = "--xla_cpu_experimental_ynn_fusion_type="  # the user turned YNNPACK off: theirs wins
    monkeypatch.setenv("XLA_FLAGS", user)
    assert not enable_fast_cpu_convolutions()
    assert os.environ["XLA_FLAGS"] == user

    monkeypatch.delenv("XLA_FLAGS")
    assert enable_fast_cpu_convolutions()
    assert os.environ["XLA_FLAGS"] == FAST_CPU_CONVOLUTIONS


def test_enable_after_jax_started_changes_nothing(monkeypatch, caplog):
    monkeypatch.setattr(xla_flags, "_backend_started", lambda: True)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    assert not enable_fast_cpu_convolutions()
    assert "XLA_FLAGS" not in os.environ
    assert "new process" in caplog.text


@pytest.mark.backend
def test_backend_started_reflects_this_process(backend):
    # Under JAX the suite has run computations by now; under TensorFlow JAX may be unused.
    import jax.numpy as jnp

    jnp.zeros(1).block_until_ready()
    assert xla_flags._backend_started()
