"""NSynthDataset on a real rendered set: filters, bad files, caching, batches."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

from vqkeras.data.nsynth import NSynthDataset
from vqkeras.errors import AudioFileError, DatasetError
from vqkeras.features import SpectrogramConfig

CFG = SpectrogramConfig()


@pytest.fixture
def dataset_copy(rendered_dataset, tmp_path):
    """A writable copy of the shared rendered set (tests damage it)."""
    return shutil.copytree(rendered_dataset, tmp_path / "set")


def test_examples_and_filters(rendered_dataset):
    train = NSynthDataset(rendered_dataset, "train")
    assert len(train) > 10 and train.examples == sorted(train.examples, key=lambda e: e["note_str"])
    keys = [e["note_str"] for e in train.examples]
    assert keys == sorted(json.loads((rendered_dataset / "nsynth-train" / "examples.json").read_text()))
    family = train.examples[0]["instrument_family_str"]
    only = NSynthDataset(rendered_dataset, "train", families=[family])
    assert 0 < len(only) < len(train) and set(only.labels("instrument_family_str")) == {family}
    loud = NSynthDataset(rendered_dataset, "train", velocities=[127], pitch_range=(52, 60))
    assert len(loud) > 0 and set(loud.labels("velocity")) == {127}
    assert loud.labels("pitch").min() >= 52 and loud.labels("pitch").max() <= 60
    few = NSynthDataset(rendered_dataset, "train", max_examples=5)
    assert len(few) == 5 and few.examples[0] == train.examples[0] and few.examples[-1] == train.examples[-1]
    with pytest.raises(ValueError, match="unknown NSynth family"):
        NSynthDataset(rendered_dataset, "train", families=["kazoo"])
    with pytest.raises(ValueError, match="split"):
        NSynthDataset(rendered_dataset, "validation")


def test_waveforms_are_the_rendered_notes(rendered_dataset, timgm_soundfont):
    from vqkeras.data.render import render_note

    test = NSynthDataset(rendered_dataset, "test")
    waves = test.load_waveforms()
    assert waves.shape == (len(test), 64000) and waves.dtype == np.float32
    e = test.examples[0]
    expected = render_note(timgm_soundfont, e["instrument"], e["pitch"], e["velocity"])
    np.testing.assert_allclose(waves[0], expected, atol=1e-4)  # 16-bit quantisation


def test_missing_folder_json_and_audio(dataset_copy, tmp_path):
    with pytest.raises(DatasetError, match="split folder not found"):
        NSynthDataset(tmp_path / "nowhere", "train")
    (dataset_copy / "nsynth-valid" / "examples.json").unlink()
    with pytest.raises(DatasetError, match="missing examples.json"):
        NSynthDataset(dataset_copy, "valid")
    audio = sorted((dataset_copy / "nsynth-test" / "audio").glob("*.wav"))
    audio[1].unlink()
    with pytest.raises(DatasetError, match=audio[1].stem):
        NSynthDataset(dataset_copy, "test")


def test_malformed_examples_json(dataset_copy):
    index = dataset_copy / "nsynth-train" / "examples.json"
    entries = json.loads(index.read_text())
    name = sorted(entries)[2]
    del entries[name]["pitch"]
    index.write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match=f"{name}.*pitch"):
        NSynthDataset(dataset_copy, "train")
    index.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        NSynthDataset(dataset_copy, "train")


def test_one_bad_file_is_skipped_unless_strict(dataset_copy, caplog):
    audio = sorted((dataset_copy / "nsynth-train" / "audio").glob("*.wav"))
    audio[3].write_bytes(b"RIFF\x00\x00garbage")
    ds = NSynthDataset(dataset_copy, "train")
    n = len(ds)
    with caplog.at_level(logging.WARNING, logger="vqkeras.data.nsynth"):
        waves = ds.load_waveforms()
    assert audio[3].stem in caplog.text
    assert waves.shape[0] == n - 1 == len(ds)
    assert audio[3].stem not in [e["note_str"] for e in ds.examples]
    with pytest.raises(AudioFileError, match=audio[3].name):
        NSynthDataset(dataset_copy, "train", strict=True).load_waveforms()


def test_spectrogram_images_cached(dataset_copy, tmp_path, monkeypatch, caplog):
    audio = sorted((dataset_copy / "nsynth-valid" / "audio").glob("*.wav"))
    audio[0].write_text("not audio")  # skipped, and the cache stays consistent
    ds = NSynthDataset(dataset_copy, "valid")
    images = ds.spectrogram_images(CFG, cache_dir=tmp_path / "cache")
    assert images.shape == (len(ds), 500, 256, 1) == (len(audio) - 1, 500, 256, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1

    import vqkeras.features

    def boom(*args, **kwargs):
        raise AssertionError("recomputed instead of using the cache")

    monkeypatch.setattr(vqkeras.features, "waveform_to_image", boom)
    again = NSynthDataset(dataset_copy, "valid")
    with caplog.at_level(logging.INFO, logger="vqkeras.data.nsynth"):
        cached = again.spectrogram_images(CFG, cache_dir=tmp_path / "cache")
    assert "from cache" in caplog.text
    np.testing.assert_array_equal(cached, images)
    assert [e["note_str"] for e in again.examples] == [e["note_str"] for e in ds.examples]
    # Another config is another cache entry.
    with pytest.raises(AssertionError, match="recomputed"):
        NSynthDataset(dataset_copy, "valid").spectrogram_images(SpectrogramConfig(dynamic_range_db=80),
                                                                cache_dir=tmp_path / "cache")


def test_batches_cover_each_example_once(rendered_dataset):
    from vqkeras.data.pipeline import array_dataset

    ds = NSynthDataset(rendered_dataset, "test")
    waves = ds.load_waveforms()
    batches = list(ds.batches(4, shuffle=True, seed=1))
    assert [len(b) for b in batches[:-1]] == [4] * (len(batches) - 1)
    seen = np.concatenate(batches)
    assert seen.shape == waves.shape
    assert sorted(map(bytes, seen)) == sorted(map(bytes, waves))
    assert len(list(ds.batches(4, drop_remainder=True))) == len(waves) // 4
    pyds = array_dataset(waves, ds.labels("pitch"), batch_size=4, seed=0)
    assert len(pyds) == len(batches) and pyds[0][0].shape == (4, 64000)
