"""IDX reader on Debian's Fashion-MNIST and on damaged files."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from vqkeras.data.mnist import load_idx, load_mnist
from vqkeras.errors import DatasetError

from conftest import FASHION_MNIST_DIR

needs_fashion = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_DIR} (apt install dataset-fashion-mnist)")


@needs_fashion
def test_fashion_mnist_test_split():
    images, labels = load_mnist(FASHION_MNIST_DIR, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert np.all(np.bincount(labels) == 1000)  # Fashion-MNIST test is balanced
    # Published mean pixel of Fashion-MNIST is ~0.286 of full scale.
    assert images.mean() / 255 == pytest.approx(0.286, abs=0.01)
    # Label 1 is "trouser": tall narrow objects, darker side columns than "bag" (8).
    trouser = images[labels == 1].mean(axis=0)
    assert trouser[:, 12:16].mean() > 2 * trouser[:, :4].mean()


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def test_idx_round_trip_types(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4) - 5
    (tmp_path / "a-idx3-int").write_bytes(_idx_bytes(a, 0x0C))
    np.testing.assert_array_equal(load_idx(tmp_path / "a-idx3-int"), a)
    f = np.linspace(-1, 1, 6, dtype=np.float32)
    (tmp_path / "f-idx1.gz").write_bytes(gzip.compress(_idx_bytes(f, 0x0D)))
    np.testing.assert_array_equal(load_idx(tmp_path / "f-idx1.gz"), f)


def test_idx_damaged(tmp_path):
    good = _idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)
    cases = {"trunc": good[:-5], "trail": good + b"\x00", "magic": b"\x01\x02" + good[2:],
             "short": good[:2], "header": good[:9]}
    messages = {"trunc": "truncated", "trail": "trailing data", "magic": "not an IDX file",
                "short": "too short", "header": "truncated header"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetError, match=messages[name]):
            load_idx(tmp_path / name)
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetError, match="gzip"):
        load_idx(tmp_path / "bad.gz")
    with pytest.raises(DatasetError, match="not found"):
        load_idx(tmp_path / "missing")


def test_load_mnist_mismatch_and_missing(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((4, 28, 28), np.uint8), 0x08))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(3, np.uint8), 0x08)))
    with pytest.raises(DatasetError, match="4 test images but 3 labels"):
        load_mnist(tmp_path, "test")
    with pytest.raises(DatasetError, match="train-images"):
        load_mnist(tmp_path, "train")
    with pytest.raises(DatasetError, match="not found"):
        load_mnist(tmp_path / "nope")
