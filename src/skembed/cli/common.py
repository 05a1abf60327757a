"""What the subcommands of ``skembed`` share: the model options, errors, small formatters.

Only the standard library is imported here, so that ``skembed --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys

INPUT_HELP = "a text file with one text per line, or .csv, .tsv, .jsonl or .parquet (see --column)"
COLUMN_HELP = "the text column of a CSV, TSV, JSONL or Parquet file (needed if it has several)"


class UsageError(Exception):
    """A mistake in the command line or its input: one line on stderr, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are UsageErrors (one line, exit status 2)."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_command(subparsers, common: Parser, name: str, run, **texts: str):
    """Return the parser of a subcommand that takes the model options and runs ``run(args)``.

    ``texts`` are argparse's ``help`` and ``description`` of the command.
    """
    parser = subparsers.add_parser(name, parents=[common], **texts)
    parser.set_defaults(run=run)
    return parser


def model_options() -> Parser:
    """Return the parser of the model options that every subcommand takes."""
    common = Parser(add_help=False)
    model = common.add_argument_group("model options")
    model.add_argument(
        "--model",
        default="default",
        help="'default' (all-MiniLM-L6-v2, the default), a local model folder, or a hub id "
        "in the local Hugging Face cache",
    )
    # None leaves SentenceEmbedder's own default in place, so the two never disagree
    model.add_argument(
        "--pooling",
        help="auto (default: the folder's own pooling, else mean), mean, max, cls, "
        "static_mean, mean_sqrt_len, weighted_mean or last",
    )
    model.add_argument(
        "--prompt", help="a string put before every text, e.g. 'query: ' (default: none)"
    )
    model.add_argument(
        "--prompt-name",
        metavar="NAME",
        help="one of the model's own prompts, e.g. query or document (skembed info lists "
        "them; default: the model's default prompt, if any)",
    )
    model.add_argument(
        "--truncate-dim",
        type=positive_int,
        metavar="K",
        help="keep the first K dimensions of each vector (Matryoshka models)",
    )
    model.add_argument(
        "--max-length",
        type=positive_int,
        metavar="N",
        help="tokens per text (default: the model's limit); longer texts are truncated, or "
        "cut into windows with --long-texts windows",
    )
    model.add_argument(
        "--long-texts",
        choices=("truncate", "windows"),
        help="what a long text becomes: truncate (default: its first --max-length tokens) or "
        "windows (all of it, in overlapping windows of --window-length tokens; its vector 0.3 "
        "its first window's and 0.7 the windows' mean; skembed search indexes each window)",
    )
    model.add_argument(
        "--window-length",
        type=positive_int,
        metavar="N",
        help="with --long-texts windows: tokens per window (default: 128, or --max-length "
        "when that is less)",
    )
    model.add_argument(
        "--window-overlap",
        type=int,
        metavar="N",
        help="with --long-texts windows: tokens consecutive windows share (default: a "
        "quarter of a window's own tokens)",
    )
    model.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="texts per encoder call (default: SentenceEmbedder's)",
    )
    model.add_argument("--device", help="auto (default: CUDA if present), cpu, cuda, cuda:1, ...")
    model.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx", "openvino"),
        help="what runs the encoder: auto (default: ONNX Runtime on the CPU when installed, "
        "else PyTorch; the engine of --precision bf16 or int8), torch, onnx (ONNX Runtime, "
        "CPU) or openvino (OpenVINO, CPU)",
    )
    model.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        help="fp32 (default); bf16: OpenVINO in bf16 on CPUs with AVX512_BF16 or AMX (fp32 "
        "elsewhere), vectors to cosine 0.9999 of fp32 (needs pip install 'skembed[openvino]'); "
        "int8: a quantized graph on ONNX Runtime (or OpenVINO with --backend openvino), "
        "vectors close to fp32 (needs pip install 'skembed[onnx]')",
    )
    return common


# the model options that configure the encoder (all but --model): SentenceEmbedder's
ENCODER_OPTIONS = (
    "pooling",
    "max_length",
    "long_texts",
    "window_length",
    "window_overlap",
    "prompt",
    "prompt_name",
    "truncate_dim",
    "batch_size",
    "device",
    "backend",
    "precision",
)


def embedder(args):
    """Return an unfitted SentenceEmbedder configured by the model options."""
    from ..embedder import SentenceEmbedder

    options = {
        name: getattr(args, name)
        for name in ENCODER_OPTIONS
        if getattr(args, name, None) is not None
    }
    # the process cache helps estimators that re-embed the same texts; a command does not
    return SentenceEmbedder(model=args.model, cache=False, **options)


def fitted_embedder(args, texts: list[str]):
    """Return a SentenceEmbedder configured by the model options, with its model loaded."""
    return embedder(args).fit(texts)


class _NoProgress:
    """A progress bar that shows nothing."""

    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def progress(total: int, args):
    """Return a progress bar over total texts on stderr with --progress, else a silent one."""
    if not args.progress:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc="skembed encode", file=sys.stderr)


def positive_int(text: str) -> int:
    """Return text as an int of 1 or more, for argparse's type=."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def one_line(message) -> str:
    """Return a message on one line."""
    return " ".join(str(message).split())


def flat(text: str) -> str:
    """Return text on one line, so that each result prints as one row ('' when empty)."""
    if not text:
        return "''"
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text
