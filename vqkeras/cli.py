"""The ``vqkeras`` command: a thin argparse layer over the library's functions.

Each subcommand imports what it needs only when it runs, so ``vqkeras --help``
is instant and the Keras backend can be chosen with ``--backend`` first.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

log = logging.getLogger("vqkeras")


class UserError(Exception):
    """An error caused by the user's input: printed as one line, no traceback."""


def _cmd_data_render(args: argparse.Namespace) -> None:
    from vqkeras.data.render import render_dataset

    out = render_dataset(args.out, soundfont=args.soundfont, pitch_step=args.pitch_step,
                         seed=args.seed, progress=not args.quiet, overwrite=args.overwrite)
    print(out)


def _cmd_train(args: argparse.Namespace) -> None:
    from vqkeras.experiments.config import load_config
    from vqkeras.experiments.training import train

    config = load_config(args.file)
    for run_config in config.expand():
        print(train(run_config, resume=not args.restart))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from vqkeras.experiments.config import load_config
    from vqkeras.experiments.evaluation import evaluate

    config = load_config(args.file)
    for run_config in config.expand():
        result = evaluate(run_config, split=args.split)
        print(result.summary_text())


def _cmd_predict(args: argparse.Namespace) -> None:
    from vqkeras.experiments.prediction import predict

    print(predict(args.input, args.output, model=args.model, iterations=args.iterations))


def _cmd_report(args: argparse.Namespace) -> None:
    from vqkeras.experiments.report import run_report

    for path in run_report(args.experiments, reports_root=args.reports_root, backend=args.backend):
        print(path)


def _cmd_compress(args: argparse.Namespace) -> None:
    from vqkeras.codec import compress

    print(compress(args.input, args.output, model=args.model, bitrate=args.bitrate))


def _cmd_decompress(args: argparse.Namespace) -> None:
    from vqkeras.codec import decompress

    print(decompress(args.input, args.output, model=args.model, iterations=args.iterations))


def _cmd_codec_train_default(args: argparse.Namespace) -> None:
    from vqkeras.codec.default_model import train_default_model

    print(train_default_model(data_dir=args.data, out_dir=args.out))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqkeras", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["jax", "tensorflow", "torch"],
                        help="Keras backend (default: $KERAS_BACKEND, else jax)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare datasets").add_subparsers(dest="data_command", required=True)
    render = data.add_parser("render", help="render a soundfont into an NSynth-layout dataset")
    render.add_argument("--soundfont", help="SF2/SF3 file (default: FluidR3_GM if installed, else TimGM6mb)")
    render.add_argument("--out", required=True, help="output folder")
    render.add_argument("--pitch-step", type=int, default=None,
                        help="render every n-th pitch of each instrument (default 8: ~2,800 notes)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--overwrite", action="store_true", help="render again even if the folder is complete")
    render.add_argument("-q", "--quiet", action="store_true")
    render.set_defaults(func=_cmd_data_render)

    train = sub.add_parser("train", help="train the run(s) of an experiment YAML")
    train.add_argument("-f", "--file", required=True, help="experiment YAML")
    train.add_argument("--restart", action="store_true", help="ignore checkpoints and start over")
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("evaluate", help="evaluate trained run(s) on a split")
    evaluate.add_argument("-f", "--file", required=True, help="experiment YAML")
    evaluate.add_argument("--split", default="test", choices=["train", "valid", "test"])
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = sub.add_parser("predict", help="reconstruct a sound file through a trained model")
    predict.add_argument("input", help="input WAV")
    predict.add_argument("-o", "--output", required=True, help="output WAV")
    predict.add_argument("--model", required=True, help="trained model (.keras) or run folder")
    predict.add_argument("--iterations", type=int, help="phase reconstruction iterations")
    predict.set_defaults(func=_cmd_predict)

    report = sub.add_parser("report", help="run experiments' notebooks into reports/")
    report.add_argument("experiments", nargs="+", help="experiment YAML(s)")
    report.add_argument("--reports-root", default="reports")
    report.set_defaults(func=_cmd_report)

    compress = sub.add_parser("compress", help="compress a WAV file into a .vqz file")
    compress.add_argument("input")
    compress.add_argument("output")
    compress.add_argument("--model", help="codec model (default: the shipped one)")
    compress.add_argument("--bitrate", type=float, help="target bitrate in kbit/s (picks the number of stages)")
    compress.set_defaults(func=_cmd_compress)

    decompress = sub.add_parser("decompress", help="decompress a .vqz file into a WAV file")
    decompress.add_argument("input")
    decompress.add_argument("output")
    decompress.add_argument("--model", help="codec model (default: the shipped one)")
    decompress.add_argument("--iterations", type=int, help="phase reconstruction iterations")
    decompress.set_defaults(func=_cmd_decompress)

    codec = sub.add_parser("codec", help="codec maintenance").add_subparsers(dest="codec_command", required=True)
    default = codec.add_parser("train-default", help="train the model shipped in vqkeras/assets")
    default.add_argument("--data", default="data/nsynth-rendered")
    default.add_argument("--out", default=None, help="output folder (default: vqkeras/assets)")
    default.set_defaults(func=_cmd_codec_train_default)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    from vqkeras.errors import VQKerasError

    try:
        args.func(args)
    except (VQKerasError, UserError, FileNotFoundError) as err:
        print(f"vqkeras {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
