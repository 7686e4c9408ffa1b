"""CIFAR-10 python and binary formats, and refusal of malicious pickles."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from vqkeras.data.cifar10 import load_cifar10, load_label_names, safe_unpickle
from vqkeras.errors import DatasetError

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def batches():
    """Six small batches: (data uint8 (n, 3072) channel-planar, labels)."""
    rng = np.random.default_rng(0)
    return {name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
            for name, n in [(f"data_batch_{i}", 7) for i in range(1, 6)] + [("test_batch", 5)]}


@pytest.fixture
def python_dir(tmp_path, batches):
    tmp_path = tmp_path / "cifar-10-batches-py"
    tmp_path.mkdir()
    for name, (data, labels) in batches.items():
        batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [n.encode() for n in NAMES], b"num_cases_per_batch": 7, b"num_vis": 3072}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path


@pytest.fixture
def binary_dir(tmp_path, batches):
    tmp_path = tmp_path / "cifar-10-batches-bin"
    tmp_path.mkdir()
    for name, (data, labels) in batches.items():
        records = np.concatenate([np.asarray(labels, np.uint8)[:, None], data], axis=1)
        (tmp_path / f"{name}.bin").write_bytes(records.tobytes())
    (tmp_path / "batches.meta.txt").write_text("\n".join(NAMES) + "\n\n")
    return tmp_path


def _check(images, labels, batches, names):
    data = np.concatenate([batches[n][0] for n in names])
    assert images.shape == (len(data), 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, np.concatenate([batches[n][1] for n in names]))
    # Channel-planar rows: red plane first, row-major 32x32.
    assert images[0, 0, 1, 0] == data[0, 1] and images[0, 1, 0, 1] == data[0, 1024 + 32]
    assert images[-1, 31, 31, 2] == data[-1, 3071]


def test_python_version(python_dir, batches):
    _check(*load_cifar10(python_dir, "train"), batches, [f"data_batch_{i}" for i in range(1, 6)])
    _check(*load_cifar10(python_dir, "test"), batches, ["test_batch"])
    assert load_label_names(python_dir) == NAMES


def test_binary_version(binary_dir, batches):
    _check(*load_cifar10(binary_dir, "train"), batches, [f"data_batch_{i}" for i in range(1, 6)])
    _check(*load_cifar10(binary_dir, "test"), batches, ["test_batch"])
    assert load_label_names(binary_dir) == NAMES


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_without_running(python_dir, tmp_path):
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Exploit(marker)}
    (python_dir / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to unpickle global (posix|os)\.system"):
        load_cifar10(python_dir, "test")
    assert not marker.exists()
    (python_dir / "evil").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(DatasetError, match="refusing"):
        safe_unpickle(python_dir / "evil")
    assert not marker.exists()
    # A builtins.eval trick is refused too.
    (python_dir / "eval").write_bytes(b"cbuiltins\neval\n(V__import__('os')\ntR.")
    with pytest.raises(DatasetError, match="builtins.eval"):
        safe_unpickle(python_dir / "eval")


def test_damaged_and_missing(python_dir, binary_dir, tmp_path):
    raw = (python_dir / "test_batch").read_bytes()
    (python_dir / "test_batch").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="not a readable pickle"):
        load_cifar10(python_dir, "test")
    (python_dir / "test_batch").unlink()
    with pytest.raises(DatasetError, match="missing \\['test_batch'\\]"):
        load_cifar10(python_dir, "test")
    raw = (binary_dir / "test_batch.bin").read_bytes()
    (binary_dir / "test_batch.bin").write_bytes(raw[:-100])
    with pytest.raises(DatasetError, match="not a whole number"):
        load_cifar10(binary_dir, "test")
    with pytest.raises(DatasetError, match="not found"):
        load_cifar10(tmp_path / "nowhere")
