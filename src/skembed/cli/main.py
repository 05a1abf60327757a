"""The ``skembed`` command: its parser, and ``main``, which runs a subcommand.

Subcommands: ``encode``, ``search``, ``similarity``, ``tokenize``, ``info``, ``eval``. The
command imports only the standard library at start so that ``skembed --help`` answers at
once; numpy, torch and the model load inside the subcommand that needs them.

A mistake in the command line or its input (a missing file, an unknown column, an empty
input, a model that is not there) is reported as one line on stderr, ``skembed: error:
...``, with exit status 2; never a traceback.

Adding a subcommand: a module of :mod:`skembed.cli` with ``add(subparsers, common)``, which
declares the arguments and sets ``run=`` to a ``run(args) -> int`` that imports what it
needs inside, listed in ``COMMANDS`` here. ``common`` holds the model options;
:func:`skembed.cli.common.fitted_embedder` turns them into a fitted
:class:`~skembed.SentenceEmbedder`.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from . import encode, evaluation, inspect, search
from .common import Parser, UsageError, model_options, one_line

EXIT_USAGE = 2
COMMANDS = (encode.add, search.add, *inspect.COMMANDS, evaluation.add)

# Exceptions that mean "the user asked for something that cannot be done", reported in one
# line. ModelNotFoundError is a FileNotFoundError (OSError), ModelMismatchError a ValueError;
# ImportError is an optional library that is missing (faiss for --index hnsw, ONNX Runtime
# for --precision int8), and its message says what to install.
_USER_ERRORS = (UsageError, OSError, ValueError, TypeError, ImportError)


def main(argv: list[str] | None = None) -> int:
    """Run the skembed command with ``argv`` (default ``sys.argv[1:]``); return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after ``skembed``.

    Returns
    -------
    int
        0 on success, 2 for a usage or input error (reported on stderr), 130 on Ctrl-C.
    """
    parser = build_parser()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            args = parser.parse_args(argv)
            if args.command is None:
                parser.print_help(sys.stderr)
                return EXIT_USAGE
            return args.run(args) or 0
        except SystemExit as exc:  # --help and --version exit through argparse
            return exc.code if isinstance(exc.code, int) else 0
        except _USER_ERRORS as exc:
            if not _interrupted(exc):
                print(f"skembed: error: {one_line(exc)}", file=sys.stderr)
                return EXIT_USAGE
            print("skembed: interrupted", file=sys.stderr)
            return 130
        except KeyboardInterrupt:
            print("skembed: interrupted", file=sys.stderr)
            return 130


def _interrupted(exc: BaseException) -> bool:
    """Return True when Ctrl-C caused exc: a library turned the KeyboardInterrupt into it.

    (An import interrupted half-way raises ImportError, for example.)
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the skembed command, with every subcommand."""
    parser = Parser(
        prog="skembed",
        description="Sentence embeddings from local Hugging Face encoders, offline.",
        epilog="Run 'skembed COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    common = model_options()
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers, common)
    return parser


class _Version(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from .. import __version__

        print(f"skembed {__version__}")
        parser.exit()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"skembed: warning: {one_line(message)}", file=sys.stderr)
