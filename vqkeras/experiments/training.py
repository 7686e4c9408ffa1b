"""Train one run of an experiment into its run folder, resumably.

Run folder layout (see docs/design.md, "Run folder")::

    runs/<experiment>/<run_name>/
        config.yaml  model.keras  done  history.csv  tensorboard/
        checkpoints/epoch-0003.keras  checkpoints/state.json

Every epoch ends with a checkpoint (model + optimizer state) and a small JSON
state; an interrupted run resumes from the last complete epoch, and a
finished run (``done`` marker) is skipped.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vqkeras.experiments.config import ExperimentConfig, input_shape, load_config
from vqkeras.errors import ConfigError
from vqkeras.files import atomic_path, atomic_write_text

__all__ = ["check_backend", "load_run", "train"]

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
DONE_FILE = "done"
HISTORY_FILE = "history.csv"
STATE_FILE = "state.json"
# Keys that may change between an interrupted run and its resumption.
_RESUMABLE_KEYS = ("description", "runs_root")
_RESUMABLE_TRAINING_KEYS = ("epochs", "verbose", "keep_checkpoints", "tensorboard")


def check_backend(config: ExperimentConfig) -> str:
    """Raise `ConfigError` unless ``config.backend`` is the active Keras backend."""
    import keras

    active = keras.backend.backend()
    if config.backend != active:
        raise ConfigError(f"backend: the experiment asks for {config.backend!r} but Keras is running "
                          f"on {active!r}; set KERAS_BACKEND={config.backend} before starting Python "
                          f"(or run `vqkeras --backend {config.backend} ...`)")
    return active


def _save_model_atomic(model, path: Path) -> None:
    with atomic_path(path) as tmp:  # keeps the .keras suffix Keras insists on
        model.save(tmp)


def _comparable(config_dict: dict) -> dict:
    data = {k: v for k, v in config_dict.items() if k not in _RESUMABLE_KEYS and k != "phase_reconstruction"}
    data["training"] = {k: v for k, v in data["training"].items() if k not in _RESUMABLE_TRAINING_KEYS}
    return data


def _read_state(run_dir: Path) -> dict:
    """``checkpoints/state.json``, or ``{}`` if it is missing or damaged (with a warning)."""
    path = run_dir / "checkpoints" / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        log.warning("%s is damaged (%s); looking for checkpoints on disk", path, err)
        return {}
    return state if isinstance(state, dict) else {}


def _file_digest(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checkpoint_entry(path: Path, completed_epochs: int, seed_generators: list) -> dict:
    """What state.json records about one checkpoint, to check it against the disk later."""
    return {"checkpoint": path.name, "completed_epochs": completed_epochs,
            "bytes": path.stat().st_size, "sha256": _file_digest(path),
            "seed_generators": seed_generators}


def _find_checkpoint(run_dir: Path, load) -> tuple[Any, dict] | None:
    """The newest checkpoint that is intact and loads: ``(loaded, entry)``, or None.

    Checkpoints are tried newest first. One whose size or SHA-256 differs from
    what ``state.json`` recorded (a torn or damaged file), or that ``load``
    cannot read, is skipped, and the fallback is logged as a warning. The
    returned entry has ``completed_epochs``, ``checkpoint`` and, when
    ``state.json`` recorded it, ``seed_generators``.
    """
    import re

    folder = run_dir / "checkpoints"
    state = _read_state(run_dir)
    recorded = {e.get("checkpoint"): e for e in state.get("checkpoints", []) if isinstance(e, dict)}
    if state.get("checkpoint") and state["checkpoint"] not in recorded:
        recorded[state["checkpoint"]] = state  # a state.json written before checkpoints were listed
    problems = []
    if state.get("checkpoint") and not (folder / state["checkpoint"]).is_file():
        problems.append(f"{state['checkpoint']} named in {STATE_FILE} is missing")
    for path in sorted(folder.glob("epoch-*.keras"), reverse=True):
        match = re.fullmatch(r"epoch-(\d+)\.keras", path.name)
        if match is None:
            continue
        entry = recorded.get(path.name)
        if entry is not None and "bytes" in entry and (
                path.stat().st_size != entry["bytes"] or _file_digest(path) != entry.get("sha256")):
            problems.append(f"{path.name} is damaged ({path.stat().st_size} bytes, "
                            f"{STATE_FILE} recorded {entry['bytes']} and another checksum)")
            continue
        try:
            loaded = load(path)
        except Exception as err:  # a torn .keras file fails in many ways (BadZipFile, ValueError...)
            problems.append(f"{path.name} does not load ({type(err).__name__})")
            continue
        if problems:
            log.warning("%s: resuming from %s because %s", run_dir, path.name, "; ".join(problems))
        if entry is None:
            log.warning("%s: %s is not recorded in %s; its random-generator states are not "
                        "restored (the run will not be bit-identical to an uninterrupted one)",
                        run_dir, path.name, STATE_FILE)
            entry = {"checkpoint": path.name, "completed_epochs": int(match.group(1))}
        return loaded, entry
    if problems:
        log.warning("%s: no usable checkpoint (%s); starting the run from scratch",
                    run_dir, "; ".join(problems))
    return None


def _truncate_history(path: Path, completed_epochs: int) -> None:
    """Drop history rows of epochs that were not checkpointed (they are redone)."""
    if not path.is_file():
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    if "epoch" not in header:
        return
    col = header.index("epoch")
    kept = [r for r in body if r and r[col].isdigit() and int(r[col]) < completed_epochs]
    if len(kept) != len(body):
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            csv.writer(f).writerows([header, *kept])


def _clear_run(run_dir: Path) -> None:
    """Remove what `train` writes (and evaluations of the old model), nothing else."""
    for name in ("checkpoints", "tensorboard", "evaluation"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in (MODEL_FILE, DONE_FILE, HISTORY_FILE):
        (run_dir / name).unlink(missing_ok=True)


def _seed_generators(model) -> list:
    """Every `keras.random.SeedGenerator` in the model, in a stable order.

    Their states are not part of a `.keras` file, so the checkpoint's JSON
    state keeps them: a resumed run draws the same random numbers (quantizer
    restarts, dropout) as an uninterrupted one.
    """
    return [sg for layer in model._flatten_layers(include_self=True)
            for sg in getattr(layer, "_seed_generators", [])]


def _restore_seed_states(model, states: list) -> None:
    generators = _seed_generators(model)
    if len(generators) != len(states):
        log.warning("checkpoint has %d random-generator states, the model %d: not restored",
                    len(states), len(generators))
        return
    for generator, value in zip(generators, states):
        generator.state.assign(np.asarray(value, dtype="uint32"))


def _make_checkpoint_callback(run_dir: Path, *, seed: int, keep: int):
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        """Save model + optimizer and ``state.json`` after every epoch, keep the last ``keep``."""

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            folder = run_dir / "checkpoints"
            folder.mkdir(exist_ok=True)
            name = f"epoch-{epoch + 1:04d}.keras"
            _save_model_atomic(self.model, folder / name)
            seed_states = [np.asarray(keras.ops.convert_to_numpy(g.state)).tolist()
                           for g in _seed_generators(self.model)]
            kept = {p.name for p in sorted(folder.glob("epoch-*.keras"))[-keep:]}
            # Every kept checkpoint's size and hash: a resume checks them against the disk.
            entries = [e for e in _read_state(run_dir).get("checkpoints", [])
                       if isinstance(e, dict) and e.get("checkpoint") in kept - {name}]
            entries.append(_checkpoint_entry(folder / name, epoch + 1, seed_states))
            state = {"completed_epochs": epoch + 1, "checkpoint": name, "seed": seed,
                     # Shuffling of epoch e uses np.random.default_rng([seed, e]).
                     "shuffle_rng": {"seed": seed, "next_epoch": epoch + 1},
                     "seed_generators": seed_states,
                     "logs": {k: float(v) for k, v in (logs or {}).items()},
                     "checkpoints": entries}
            atomic_write_text(folder / STATE_FILE, json.dumps(state, indent=1))
            for old in sorted(folder.glob("epoch-*.keras"))[:-keep]:
                old.unlink(missing_ok=True)

    return EpochCheckpoint()


@contextlib.contextmanager
def _dtype_policy(precision: str):
    """Run the block under the Keras global dtype policy `precision`, then restore the previous one.

    Models built (or reloaded from a checkpoint) inside take it: a mixed
    policy computes in 16 bits with float32 variables. Outside, the caller's
    policy is back, so evaluation reloads the saved model in float32.
    """
    import keras

    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _has_tensorboard() -> bool:
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        log.warning("the tensorboard package is not installed: no tensorboard/ logs "
                    "(pip install tensorboard)")
        return False
    return True


def _make_progbar(total_epochs: int):
    import keras

    class RunProgbar(keras.callbacks.ProgbarLogger):
        """Keras's progress bar, showing "Epoch 3/10" although fit() runs one epoch at a time."""

        def set_params(self, params):
            super().set_params(params)
            self.epochs = total_epochs

    return RunProgbar()


def _distribution(batch_size: int):
    """`keras.distribution.DataParallel` over all JAX devices when there are several."""
    import keras

    if keras.backend.backend() != "jax":
        return None
    import jax

    devices = jax.devices()
    if len(devices) < 2:
        return None
    if batch_size % len(devices):
        raise ConfigError(f"training.batch_size: {batch_size} must be a multiple of the number of "
                          f"devices ({len(devices)}) for data-parallel training")
    log.info("data-parallel training on %d %s devices", len(devices), devices[0].platform)
    return keras.distribution.DataParallel(devices=devices)


def train(config: ExperimentConfig | str | Path | dict, *, run_dir: str | Path | None = None,
          resume: bool = True, callbacks: Sequence[Any] = (), wait: bool = False) -> Path:
    """Train one run and return its run folder.

    Parameters
    ----------
    config : ExperimentConfig, path or dict
        One run (call ``config.expand()`` first for a sweep).
    run_dir : str or Path, optional
        Run folder (default ``config.run_dir()``: ``runs/<name>/<run_name>``).
    resume : bool
        Continue from the last complete epoch if the folder holds checkpoints,
        and skip a finished run. False starts over (deletes the run's outputs).
    callbacks : sequence of keras.callbacks.Callback
        Extra callbacks (e.g. `vqkeras.phase.AudioReconstructionCallback`).
    wait : bool
        If another process is training this run (it holds ``run_dir/.lock``),
        wait for it instead of raising `RunBusyError`.

    Returns
    -------
    Path
        The run folder, with ``model.keras``, ``history.csv`` and ``done``.

    Raises
    ------
    ConfigError
        The config has a sweep, its backend is not the active one, or the run
        folder holds a different experiment.
    RunBusyError
        Another process is training the run (see `vqkeras.experiments.runs`).
    """
    from vqkeras.experiments.runs import record_run, run_lock

    config = load_config(config)
    if config.sweep is not None:
        raise ConfigError(f"{config.name}: has a sweep; train each of config.expand() instead")
    backend = check_backend(config)
    run_dir = Path(run_dir) if run_dir is not None else config.run_dir()

    def finished() -> bool:
        return resume and (run_dir / DONE_FILE).is_file() and (run_dir / MODEL_FILE).is_file()

    if finished():
        # Skipped (or refused as another configuration): nothing is written, so no
        # lock, and run.json keeps the host and device that trained the run.
        return _train(config, run_dir=run_dir, resume=resume, callbacks=callbacks)
    with run_lock(run_dir, wait=wait):
        if finished():  # by the process we waited for
            return _train(config, run_dir=run_dir, resume=resume, callbacks=callbacks)
        with record_run(run_dir, backend=backend):
            return _train(config, run_dir=run_dir, resume=resume, callbacks=callbacks)


def _train(config: ExperimentConfig, *, run_dir: Path, resume: bool, callbacks: Sequence[Any]) -> Path:
    """`train` inside the run's lock."""
    import keras
    import yaml

    from vqkeras.experiments.datasets import load_split
    from vqkeras.experiments.models import build_model, compile_model

    backend = check_backend(config)
    if not resume:
        _clear_run(run_dir)
    config_path = run_dir / CONFIG_FILE
    has_progress = (run_dir / "checkpoints" / STATE_FILE).is_file() or (run_dir / DONE_FILE).is_file()
    if resume and has_progress and config_path.is_file():
        saved = yaml.safe_load(config_path.read_text()) or {}
        if _comparable(load_config(saved).to_dict()) != _comparable(config.to_dict()):
            raise ConfigError(f"{run_dir}: holds a run of a different configuration; train with "
                              f"resume=False (`vqkeras train --restart`) or pick another name/run folder")
        saved_epochs = (saved.get("training") or {}).get("epochs")
        if config.training.lr_schedule == "cosine" and saved_epochs not in (None, config.training.epochs):
            # The saved optimizer's schedule spans the old epoch count.
            raise ConfigError(f"{run_dir}: training.epochs: this run's cosine learning-rate schedule "
                              f"spans {saved_epochs} epochs, not {config.training.epochs}; restart it "
                              f"(`vqkeras train --restart`) to change them")
    if (run_dir / DONE_FILE).is_file() and (run_dir / MODEL_FILE).is_file():
        log.info("%s: already trained, skipping", run_dir)
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(config_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    for stale in run_dir.glob("checkpoints/.*.tmp*"):
        stale.unlink(missing_ok=True)  # half-written by a killed run

    keras.utils.set_random_seed(config.seed)
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    training = config.training
    train_split = load_split(config, "train")
    valid = load_split(config, "valid").images if training.validation else None
    train_images = train_split.images
    distribution = _distribution(training.batch_size)
    if distribution is not None:
        # Sharded batches must split evenly over the devices.
        n = len(train_images) - len(train_images) % training.batch_size
        train_images = train_images[:n]
        if valid is not None:
            valid = valid[: len(valid) - len(valid) % training.batch_size] if len(valid) >= training.batch_size else None
    if len(train_images) == 0:
        raise ConfigError(f"dataset: no training examples left (batch_size {training.batch_size})")

    scope = distribution.scope() if distribution is not None else contextlib.nullcontext()
    with scope, _dtype_policy(training.precision):
        import vqkeras.layers  # noqa: F401  (registers custom layers)

        found = (_find_checkpoint(run_dir, lambda p: keras.saving.load_model(p, compile=True))
                 if resume else None)
        if found is not None:
            model, state = found
            completed = int(state["completed_epochs"])
            log.info("%s: resuming after epoch %d of %d (%s)", run_dir, completed, training.epochs,
                     state["checkpoint"])
            if "seed_generators" in state:
                _restore_seed_states(model, state["seed_generators"])
        else:
            completed = 0
            (run_dir / HISTORY_FILE).unlink(missing_ok=True)
            model = build_model(config.model, input_shape(config))
            compile_model(model, learning_rate=training.learning_rate,
                          schedule=training.lr_schedule,
                          total_steps=training.epochs * math.ceil(len(train_images) / training.batch_size))
        _truncate_history(run_dir / HISTORY_FILE, completed)

        all_callbacks = [keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True)]
        if training.tensorboard and _has_tensorboard():
            all_callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard"),
                                                             write_graph=False, profile_batch=0))
        all_callbacks.append(_make_checkpoint_callback(run_dir, seed=config.seed,
                                                       keep=training.keep_checkpoints))
        all_callbacks.extend(callbacks)
        if training.verbose:
            all_callbacks.append(_make_progbar(training.epochs))
        for epoch in range(completed, training.epochs):
            # One fit() per epoch so the shuffle order depends only on (seed, epoch):
            # a resumed run sees exactly the data order of an uninterrupted one.
            order = (np.random.default_rng([config.seed, epoch]).permutation(len(train_images))
                     if training.shuffle else np.arange(len(train_images)))
            x = train_images[order]
            model.fit(x, x, batch_size=training.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                      shuffle=False, validation_data=(valid, valid) if valid is not None else None,
                      callbacks=all_callbacks, verbose=training.verbose)
    _save_model_atomic(model, run_dir / MODEL_FILE)
    (run_dir / DONE_FILE).write_text(json.dumps({"epochs": training.epochs, "backend": backend}) + "\n")
    return run_dir


def load_run(run_dir: str | Path, *, checkpoint: bool = False):
    """The config and trained model of a run folder.

    Parameters
    ----------
    run_dir : str or Path
    checkpoint : bool
        If True and the run is unfinished, load its latest checkpoint instead
        of raising.

    Returns
    -------
    (ExperimentConfig, VQVAE | Autoencoder)
    """
    from vqkeras.experiments.models import load_model

    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no {CONFIG_FILE})")
    config = load_config(config_path)
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        found = _find_checkpoint(run_dir, load_model) if checkpoint else None
        if found is None:
            raise FileNotFoundError(f"{run_dir}: the run has no trained model yet ({MODEL_FILE}); "
                                    f"train it first")
        return config, found[0]
    return config, load_model(model_path)
