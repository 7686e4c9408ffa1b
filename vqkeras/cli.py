"""The ``vqkeras`` command: a thin argparse layer over the library's functions.

Each subcommand imports what it needs only when it runs, so ``vqkeras --help``
is instant and the Keras backend can be chosen with ``--backend`` first.

Boundary policy (docs/design.md, "Command line"): arguments are checked when
they are parsed, naming the flag; every expected failure (bad input, missing
or unreadable file, permissions, read-only or full disk, a missing backend)
is one line on stderr and exit code 2; anything else is a bug, shown as one
line and exit code 1 with a hint, and as a traceback with ``--debug`` or
``VQKERAS_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import logging
import math
import os
import sys
from collections.abc import Sequence

log = logging.getLogger("vqkeras")

EXIT_USER_ERROR = 2
EXIT_BUG = 1
BACKENDS = ("jax", "tensorflow", "torch")


class UserError(Exception):
    """An error caused by the user's input: printed as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vqkeras compress: error: argument --bitrate: ...``."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- argument types
def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _cmd_data_render(args: argparse.Namespace) -> None:
    from vqkeras.data.render import render_dataset

    out = render_dataset(args.out, soundfont=args.soundfont, pitch_step=args.pitch_step,
                         seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    print(out)


def _mix_families(text: str) -> list[str]:
    """``--families``: a comma list of codec-mix family names."""
    from vqkeras.data.codec_mix import FAMILIES

    families = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown) or 'no family given'}: the "
                                         f"families are {', '.join(FAMILIES)}")
    return families


def _cmd_data_mix(args: argparse.Namespace) -> None:
    from vqkeras.data.codec_mix import MixSizes, build_mix

    sizes = MixSizes().only(args.families) if args.families else None
    print(build_mix(args.out, sizes=sizes, seed=args.seed, overwrite=args.overwrite,
                    progress=not args.quiet))


def _selected_runs(args: argparse.Namespace) -> list:
    """The runs of ``-f`` that ``--run`` / ``--run-index`` pick (all by default)."""
    from vqkeras.experiments.config import load_config
    from vqkeras.experiments.runs import select_runs

    return select_runs(load_config(args.file).expand(), args.runs, args.run_index)


def _cmd_train(args: argparse.Namespace) -> None:
    runs = _selected_runs(args)
    if args.list_runs:
        print("\n".join(run.run_name for run in runs))
        return
    from vqkeras.experiments.training import train

    for run_config in runs:
        print(train(run_config, resume=not args.restart, wait=args.wait))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from vqkeras.experiments.evaluation import evaluate

    for run_config in _selected_runs(args):
        result = evaluate(run_config, split=args.split)
        print(result.summary_text())


def _cmd_status(args: argparse.Namespace) -> None:
    from vqkeras.experiments.runs import run_status, status_table

    print(status_table([run_status(run) for run in _selected_runs(args)]))


def _cmd_sweep(args: argparse.Namespace) -> None:
    from vqkeras.experiments.sweep import run_sweep, sweep_table

    results = run_sweep(args.file, names=args.runs, index=args.run_index, address=args.address,
                        gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                        num_cpus=args.num_cpus, backend=args.backend)
    print(sweep_table(results))
    failed = [r.run for r in results if r.status == "failed"]
    if failed:
        raise UserError(f"{len(failed)} of {len(results)} runs failed: {', '.join(failed)} "
                        f"(see the table above, and train.log in their run folders)")


def _cmd_predict(args: argparse.Namespace) -> None:
    from vqkeras.experiments.prediction import predict

    print(predict(args.input, args.output, model=args.model, iterations=args.iterations))


def _cmd_report(args: argparse.Namespace) -> None:
    from vqkeras.experiments.report import run_report

    for path in run_report(args.experiments, reports_root=args.reports_root, backend=args.backend):
        print(path)


def _fast_start(args: argparse.Namespace) -> None:
    """Codec commands: reuse compiled programs across processes (`vqkeras.cache`)."""
    from vqkeras.cache import enable_compilation_cache, skip_optional_imports

    if getattr(args, "real_process", False):
        skip_optional_imports()  # only in a process of our own: a caller may need sklearn
    enable_compilation_cache()


def _run_codec_batch(args: argparse.Namespace, pairs, code_one, desc: str) -> None:
    from tqdm.auto import tqdm

    from vqkeras.codec.batch import run_batch

    def report(result) -> None:
        if result.error is None:
            tqdm.write(str(result.target), file=sys.stdout)
        else:
            tqdm.write(f"vqkeras {args.command}: error: {result.error}", file=sys.stderr)

    results = run_batch(pairs, code_one, desc=desc, report=report)
    failed = sum(r.error is not None for r in results)
    if failed:
        raise UserError(f"{failed} of {len(results)} files failed (see above)")


def _cmd_compress(args: argparse.Namespace) -> None:
    _fast_start(args)
    from vqkeras.codec import batch, compress
    from vqkeras.codec.codec_model import load_codec_model

    if not batch.is_batch(args.inputs, args.output):
        print(compress(args.inputs[0], args.output, model=args.model, bitrate=args.bitrate))
        return
    pairs = batch.plan_outputs(batch.expand_inputs(args.inputs, batch.AUDIO_SUFFIXES), args.output, ".vqz")
    model = load_codec_model(args.model)
    _run_codec_batch(args, pairs, lambda source, target: compress(
        source, target, model=model, bitrate=args.bitrate, progress=False), "compress")


def _cmd_decompress(args: argparse.Namespace) -> None:
    _fast_start(args)
    from vqkeras.codec import batch, decompress
    from vqkeras.codec.codec_model import load_codec_model

    if not batch.is_batch(args.inputs, args.output):
        print(decompress(args.inputs[0], args.output, model=args.model, iterations=args.iterations,
                         **_max_samples(args)))
        return
    pairs = batch.plan_outputs(batch.expand_inputs(args.inputs, batch.VQZ_SUFFIXES), args.output,
                               f".{args.format}")
    model = load_codec_model(args.model)
    _run_codec_batch(args, pairs, lambda source, target: decompress(
        source, target, model=model, iterations=args.iterations, progress=False,
        **_max_samples(args)), "decompress")


def _max_samples(args: argparse.Namespace) -> dict:
    return {} if args.max_samples is None else {"max_samples": args.max_samples}


def _cmd_codec_train_default(args: argparse.Namespace) -> None:
    from vqkeras.codec.default_model import train_default_model

    print(train_default_model(data_dir=args.data, out_dir=args.out))


def _cmd_codec_finetune(args: argparse.Namespace) -> None:
    from vqkeras.codec.finetune import FinetuneConfig, finetune_decoder

    try:
        config = FinetuneConfig(objective=args.objective, epochs=args.epochs,
                                batch_size=args.batch_size, learning_rate=args.learning_rate,
                                ssim_weight=args.ssim_weight, recon_weight=args.recon_weight,
                                adv_weight=args.adv_weight, fm_weight=args.fm_weight,
                                max_train=args.max_train, seed=args.seed)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(finetune_decoder(args.model, args.data, args.out, config))


def _cmd_codec_fit_context(args: argparse.Namespace) -> None:
    from vqkeras.codec.default_model import fit_context_model

    print(fit_context_model(args.model, args.data, args.out, max_train=args.max_train))


def _add_run_selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", required=True, help="experiment YAML")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--run", dest="runs", action="append", metavar="NAME",
                       help="only this run; a glob such as 'vq-*' picks several; repeatable")
    which.add_argument("--run-index", type=_non_negative_int, metavar="I",
                       help="only the I-th run (0-based, `train --list-runs` order), e.g. "
                            "$SLURM_ARRAY_TASK_ID")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vqkeras", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend (default: $KERAS_BACKEND, else jax)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and the backends' own log lines (or set VQKERAS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    data = sub.add_parser("data", help="prepare datasets").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser)
    render = data.add_parser("render", help="render a soundfont into an NSynth-layout dataset")
    render.add_argument("--soundfont", help="SF2/SF3 file, or FluidR3_GM / TimGM6mb by name "
                                            "(default: FluidR3_GM if installed, else TimGM6mb)")
    render.add_argument("--out", required=True, help="output folder")
    render.add_argument("--pitch-step", type=_positive_int, default=None,
                        help="render every n-th pitch of each instrument (default 8: ~2,800 notes)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--overwrite", action="store_true",
                        help="render again into a folder that an earlier render made (never a foreign folder)")
    render.add_argument("-q", "--quiet", action="store_true")
    render.set_defaults(func=_cmd_data_render)
    mix = data.add_parser(
        "mix", help="collect the codec's training mix (notes, drums, samples, speech)",
        description="Write 4-s, 16 kHz clips into OUT/{train,test}/<family>/ plus manifest.csv, "
                    "from FluidR3_GM and TimGM6mb notes, hydrogen-drumkits, lmms-common and "
                    "espeak-ng (see docs/codec.md, 'Training data').")
    mix.add_argument("--out", required=True, help="output folder")
    mix.add_argument("--seed", type=int, default=0)
    mix.add_argument("--families", type=_mix_families, default=None, metavar="NAMES",
                     help="comma list of families to collect (default: all five; "
                          "notes,drums,samples,speech: the shipped model's four-family mix)")
    mix.add_argument("--overwrite", action="store_true",
                     help="rebuild a folder that an earlier mix wrote (never a foreign folder)")
    mix.add_argument("-q", "--quiet", action="store_true")
    mix.set_defaults(func=_cmd_data_mix)

    train = sub.add_parser("train", help="train the run(s) of an experiment YAML")
    _add_run_selectors(train)
    train.add_argument("--restart", action="store_true", help="ignore checkpoints and start over")
    train.add_argument("--list-runs", action="store_true",
                       help="print the (selected) run names, one a line, and train nothing")
    train.add_argument("--wait", action="store_true",
                       help="if another process is training a run, wait for it instead of refusing")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate trained run(s) on a split")
    _add_run_selectors(evaluate)
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.set_defaults(func=_cmd_evaluate)

    status = sub.add_parser("status", help="per run: state, epochs done, last validation error",
                            description="Read the run folders only: works while the runs train "
                                        "elsewhere (docs/sweeps.md, 'Run states').")
    _add_run_selectors(status)
    status.set_defaults(func=_cmd_status)

    sweep = sub.add_parser("sweep", help="train the unfinished runs as Ray tasks, in parallel",
                           description="One Ray task per unfinished run (needs the cluster extra: "
                                       "pip install 'vqkeras[cluster]'); ends with a table of "
                                       "run, status, wall time, host, device (docs/sweeps.md).")
    _add_run_selectors(sweep)
    sweep.add_argument("--address", help="Ray cluster to run on (e.g. ray://head:10001, head:6379 or "
                                         "auto; default: a local Ray instance for this command)")
    sweep.add_argument("--gpus-per-run", type=_non_negative_float, default=None,
                       help="GPUs per run (default: 1 if the cluster has GPUs, else 0)")
    sweep.add_argument("--cpus-per-run", type=_positive_float, default=1.0, help="CPUs per run (default 1)")
    sweep.add_argument("--num-cpus", type=_positive_int, default=None,
                       help="CPUs of the local Ray instance (default: all; not with --address)")
    sweep.set_defaults(func=_cmd_sweep)

    predict = sub.add_parser("predict", help="reconstruct a sound file through a trained model")
    predict.add_argument("input", help="input WAV")
    predict.add_argument("-o", "--output", required=True,
                         help="output file: .wav, .flac, .ogg or .mp3 (never the input)")
    predict.add_argument("--model", required=True, help="trained model (.keras) or run folder")
    predict.add_argument("--iterations", type=_non_negative_int, help="phase reconstruction iterations")
    predict.set_defaults(func=_cmd_predict)

    report = sub.add_parser("report", help="run experiments' notebooks into reports/")
    report.add_argument("experiments", nargs="+", help="experiment YAML(s)")
    report.add_argument("--reports-root", default="reports")
    report.set_defaults(func=_cmd_report)

    compress = sub.add_parser(
        "compress", help="compress sound files into .vqz files",
        description="vqkeras compress IN.wav OUT.vqz, or several inputs (files, folders, "
                    "globs) into an output folder: OUT/<name>.vqz, in one process.")
    compress.add_argument("inputs", nargs="+", metavar="input",
                          help="sound file(s), folder(s) or glob(s) such as 'notes/*.wav'")
    compress.add_argument("output", help="output .vqz file, or a folder for several inputs")
    compress.add_argument("--model", help="codec model (default: the shipped one)")
    compress.add_argument("--bitrate", type=_positive_float,
                          help="cap in kbit/s on the real file rate, header included (the most "
                               "stages that fit; an error if one stage does not)")
    compress.set_defaults(func=_cmd_compress)

    decompress = sub.add_parser(
        "decompress", help="decompress .vqz files into sound files",
        description="vqkeras decompress IN.vqz OUT.wav, or several inputs (files, folders, "
                    "globs) into an output folder: OUT/<name>.<format>, in one process.")
    decompress.add_argument("inputs", nargs="+", metavar="input", help=".vqz file(s), folder(s) or glob(s)")
    decompress.add_argument("output", help="output file (.wav, .flac, .ogg or .mp3), or a folder "
                                           "for several inputs")
    decompress.add_argument("--format", default="wav", choices=["wav", "flac", "ogg", "mp3"],
                            help="file format when writing into a folder (default: wav)")
    decompress.add_argument("--model", help="codec model (default: the shipped one)")
    decompress.add_argument("--iterations", type=_non_negative_int, help="phase reconstruction iterations")
    decompress.add_argument("--max-samples", type=_positive_int, default=None,
                            help="refuse files that decode to more samples (all channels) than "
                                 "this (default: one hour of 48-kHz stereo, 345600000)")
    decompress.set_defaults(func=_cmd_decompress)

    codec = sub.add_parser("codec", help="codec maintenance").add_subparsers(
        dest="codec_command", required=True, parser_class=_Parser)
    default = codec.add_parser("train-default", help="train the model shipped in vqkeras/assets")
    default.add_argument("--data", default="data/codec-mix",
                         help="training mix folder (built there by `vqkeras data mix` if missing)")
    default.add_argument("--out", default=None, help="output folder (default: vqkeras/assets)")
    default.set_defaults(func=_cmd_codec_train_default)
    tune = codec.add_parser(
        "finetune", help="fine-tune a bundle's decoder (encoder, codebooks and codes frozen)")
    tune.add_argument("--model", default=None, help="bundle to start from (default: shipped)")
    tune.add_argument("--data", default="data/codec-mix", help="training mix folder")
    tune.add_argument("--out", required=True, help="folder of the new bundle")
    tune.add_argument("--objective", choices=("structure", "adversarial"), default="structure",
                      help="MSE + multi-scale SSIM, or that plus a patch-discriminator GAN loss")
    tune.add_argument("--epochs", type=_positive_int, default=4)
    tune.add_argument("--batch-size", type=_positive_int, default=16)
    tune.add_argument("--learning-rate", type=float, default=2e-4)
    tune.add_argument("--ssim-weight", type=float, default=0.05,
                      help="weight of 1 - SSIM next to the per-pixel MSE")
    tune.add_argument("--recon-weight", type=float, default=1000.0,
                      help="adversarial: weight of the reconstruction loss (MSE + SSIM term)")
    tune.add_argument("--adv-weight", type=float, default=1.0,
                      help="adversarial: weight of the least-squares GAN loss")
    tune.add_argument("--fm-weight", type=float, default=1.0,
                      help="adversarial: weight of discriminator feature matching")
    tune.add_argument("--max-train", type=_positive_int, default=None,
                      help="train on this many clips (default: all of the mix's TRAIN split)")
    tune.add_argument("--seed", type=_non_negative_int, default=0)
    tune.set_defaults(func=_cmd_codec_finetune)
    fit = codec.add_parser(
        "fit-context", help="add context tables (format version 4) to a codec bundle",
        description="Code the mix's TRAIN clips with the bundle's frozen model, count each "
                    "code's contexts (previous cell, previous stage) and write a new bundle: "
                    "the same weights plus context.npz, a new model id and the bitrate per "
                    "stage count measured again (docs/codec.md, 'Context model').")
    fit.add_argument("--model", default=None, help="codec bundle (default: the shipped one)")
    fit.add_argument("--data", default="data/codec-mix", help="codec mix folder "
                                                              "(vqkeras data mix --out DIR)")
    fit.add_argument("--out", required=True, help="new bundle folder (must not exist, or be empty)")
    fit.add_argument("--max-train", type=_positive_int, default=None,
                     help="count a seeded subset of this many training clips (default: all)")
    fit.set_defaults(func=_cmd_codec_fit_context)
    return parser


def _os_error_message(err: OSError) -> str:
    """One line for an operating-system error, naming the file and the cause."""
    reason = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
              errno.EDQUOT: "disk quota exceeded"}.get(err.errno, err.strerror or str(err))
    where = f"{err.filename}: " if err.filename else ""
    return f"{where}{reason}" if reason else f"{where}{err}"


def _check_backend_installed(backend: str) -> None:
    module = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}.get(backend)
    if module is None:
        raise UserError(f"KERAS_BACKEND={backend!r} is not one of {list(BACKENDS)}")
    if importlib.util.find_spec(module) is None:
        raise UserError(f"--backend {backend}: the {module} package is not installed "
                        f"(pip install {module}, or use --backend jax)")


def _classify(err: BaseException) -> str | None:
    """The one-line message of an expected failure, or None for a bug."""
    from vqkeras.errors import VQKerasError

    if isinstance(err, (VQKerasError, UserError)):
        return str(err)
    if isinstance(err, OSError):
        return _os_error_message(err)
    if isinstance(err, ModuleNotFoundError):
        return f"a required package is missing: {err.name} (pip install {err.name})"
    if isinstance(err, MemoryError):
        return "out of memory"
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is a dependency
        return None
    if isinstance(err, soundfile.LibsndfileError):
        return f"audio file error: {err}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0, 1 for a bug, 2 for bad input).

    With ``argv=None`` (the installed ``vqkeras`` command) the backends' C++
    start-up lines are also filtered from stderr (`vqkeras.quiet`); a caller
    passing ``argv`` (tests, scripts) keeps its own stderr untouched.
    """
    filter_fd = argv is None
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a one-line argument error (code 2)
        return int(exit_.code or 0)
    args.real_process = argv is None
    debug = args.debug or os.environ.get("VQKERAS_DEBUG", "") not in ("", "0")
    backend = args.backend or os.environ.get("KERAS_BACKEND") or "jax"
    try:
        _check_backend_installed(backend)
    except UserError as err:
        print(f"vqkeras {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    os.environ["KERAS_BACKEND"] = backend
    from vqkeras.quiet import quiet_backends

    quiet_backends(filter_fd=filter_fd and not debug)  # before any backend is imported
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose or debug else logging.INFO)
    prefix = f"vqkeras {args.command}"
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # the boundary: nothing escapes as a traceback by default
        message = _classify(err)
        if debug:
            import traceback

            traceback.print_exc()
        if message is not None:
            print(f"{prefix}: error: {' '.join(message.split())}", file=sys.stderr)
            return EXIT_USER_ERROR
        detail = " ".join(str(err).split())[:300]
        print(f"{prefix}: internal error: {type(err).__name__}: {detail} (a bug: rerun with "
              f"--debug or VQKERAS_DEBUG=1 for the traceback, and report it)", file=sys.stderr)
        return EXIT_BUG
    return 0


if __name__ == "__main__":
    sys.exit(main())
