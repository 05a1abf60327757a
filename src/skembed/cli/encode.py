"""``skembed encode``: embed every text of a file into .npy or Parquet, resumably.

Large inputs stream in chunks, so memory stays bounded; the output appears whole or not at
all (:mod:`skembed._outputs`). With ``--resume`` a .npy output is written in place beside
its final name, and a record of the rows written, kept after each chunk, lets a killed run
go on from its last chunk (:class:`Resumable`).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from ..exceptions import TruncationWarning
from .common import (
    COLUMN_HELP,
    ENCODER_OPTIONS,
    INPUT_HELP,
    UsageError,
    add_command,
    fitted_embedder,
    positive_int,
    progress,
)

OUTPUT_SUFFIXES = (".npy", ".parquet")


def add(subparsers, common) -> None:
    """Declare ``skembed encode``."""
    p = add_command(
        subparsers,
        common,
        "encode",
        run,
        help="embed every text of a file into .npy or Parquet",
        description="Embed every text of INPUT and write the vectors to OUTPUT, one row per "
        "text in input order. Large inputs stream in chunks: memory stays bounded, and .npy "
        "is written through a memory map.",
    )
    p.add_argument("input", metavar="INPUT", help=INPUT_HELP)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help=".npy (array, n_texts x dim) or .parquet (columns text, embedding)",
    )
    p.add_argument("--column", help=COLUMN_HELP)
    p.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="type of the written vectors; float16 halves the file, to about 1e-3 of float32 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--chunk-size",
        type=positive_int,
        default=10_000,
        metavar="N",
        help="texts read and embedded at a time (default: %(default)s)",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep what an interrupted run wrote (.npy only) and continue from there; the "
        "input, model and options must be the same",
    )
    # a switch, not a --pooling value: it swaps the estimator (StaticEmbedder) and the
    # encoder's options (pooling, max length, batches, backend...) no longer apply
    static = p.add_argument_group("static vectors (no encoder at transform)")
    static.add_argument(
        "--static",
        action="store_true",
        help="sum the rows of a static token table distilled from the model "
        "(skembed.StaticEmbedder): tens of times faster than the encoder, less accurate, "
        "blind to word order. The first run on a machine distils the table (about half a "
        "minute for the default model on 2 cores), later runs read it from the cache. "
        "Takes --model and --dims, not the encoder's options",
    )
    static.add_argument(
        "--dims",
        type=positive_int,
        metavar="K",
        help="with --static: dimensions the table keeps (PCA; default: 256, at most the "
        "model's own)",
    )


def run(args) -> int:
    """Run ``skembed encode``; return the exit status."""
    from .. import _outputs
    from .._any_embedder import vectors_identity
    from .._textfiles import TextFile, import_pyarrow

    output = Path(args.output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UsageError(
            f"output {str(output)!r} must end in .npy or .parquet, the formats encode writes"
        )
    if not output.parent.is_dir():
        raise UsageError(f"the folder of output {str(output)!r} does not exist; create it first")
    source = TextFile(args.input, args.column)
    n = source.count()  # a first pass: checks every text before the model loads
    if n == 0:
        raise UsageError(f"{source.name} holds no texts; nothing to encode")
    if args.static:
        embedder = _fitted_static_embedder(args)
    elif args.dims is not None:
        raise UsageError(
            "--dims applies to --static (the dimensions of its distilled table): add "
            "--static, or use --truncate-dim K to shorten the encoder's vectors"
        )
    else:
        embedder = fitted_embedder(args, ["load the model"])
    dim = embedder.embedding_dim_
    if args.resume:
        return _run_resumable(args, source, n, embedder, output)
    with _outputs.atomic_output(output) as partial:
        if output.suffix.lower() == ".npy":
            writer = _outputs.NpyWriter(partial, n, dim, args.dtype)
        else:
            import_pyarrow("writing Parquet")
            writer = _outputs.ParquetWriter(partial, dim, args.dtype, vectors_identity(embedder))
        with _TruncationCount(embedder) as truncation, progress(n, args) as bar:
            for chunk in source.chunks(args.chunk_size):
                if writer.rows + len(chunk) > n:
                    raise UsageError(f"{source.name} changed while it was read; run encode again")
                writer.write(chunk, truncation.transform(embedder, chunk))
                bar.update(len(chunk))
        if writer.rows != n:
            raise UsageError(f"{source.name} changed while it was read; run encode again")
        writer.close()
    if output.suffix.lower() == ".npy":
        _outputs.write_identity(output, vectors_identity(embedder))
    print(f"skembed: wrote {n:,} vectors of {dim} {args.dtype} to {output}", file=sys.stderr)
    return 0


def _run_resumable(args, source, n: int, embedder, output: Path) -> int:
    """Encode into .npy, recording progress after each chunk so a killed run can go on."""
    import hashlib

    from .. import _outputs
    from .._any_embedder import vectors_identity

    if output.suffix.lower() != ".npy":
        raise UsageError("--resume writes .npy outputs only; use a .npy output")
    stat = source.path.stat()
    # a progress bar (StaticEmbedder's, over its distillation) changes no vector
    params = {**embedder.get_params(), "show_progress": False}
    key = {
        "input": str(source.path.resolve()),
        "input size": stat.st_size,
        "input modification time": stat.st_mtime_ns,
        "column": args.column,
        "rows": n,
        "model": embedder.fingerprint_,
        "settings": repr(sorted(params.items())),
        "dtype": args.dtype,
    }
    state = Resumable(output, key)
    done, done_sha256 = state.start()
    writer = _outputs.NpyWriter(state.partial, n, embedder.embedding_dim_, args.dtype, done)
    rows = hashlib.sha256()
    seen = 0
    with _TruncationCount(embedder) as truncation, progress(n, args) as bar:
        bar.update(done)
        for chunk in source.chunks(args.chunk_size):
            skip = min(len(chunk), max(done - seen, 0))
            for text in chunk:  # every row read, written before or now, enters the hash
                rows.update(text.encode("utf-8", "surrogatepass") + b"\n")
                seen += 1
                if seen == done and rows.hexdigest() != done_sha256:
                    raise _outputs.ResumeError(
                        f"cannot resume {output}: the first {done:,} texts of "
                        f"{source.name} are not the ones the interrupted run read. Run again "
                        "without --resume to start over"
                    )
            rest = chunk[skip:]
            if not rest:
                continue
            writer.write(rest, truncation.transform(embedder, rest))
            writer.flush()
            state.save(writer.rows, rows.hexdigest())
            bar.update(len(rest))
    if writer.rows != n:
        raise UsageError(f"{source.name} changed while it was read; run encode again")
    writer.close()
    state.finish()
    _outputs.write_identity(output, vectors_identity(embedder))
    print(
        f"skembed: wrote {n:,} vectors of {embedder.embedding_dim_} {args.dtype} to {output}"
        + (f" ({done:,} of them by the interrupted run)" if done else ""),
        file=sys.stderr,
    )
    return 0


class Resumable:
    """The state of a resumable ``skembed encode`` into a .npy output.

    The rows go to ``.<name>.resume.partial`` beside the output, and
    ``.<name>.resume.json`` records what they are: the input file's path, size and
    modification time, the model's fingerprint and the settings (``key``), how many rows are
    written and the sha256 of those rows' texts. It is rewritten after each chunk, once the
    chunk's rows are on the disk, so a run killed at any point resumes from its last chunk.
    """

    def __init__(self, output: Path, key: dict):
        self.output = output
        self.partial = output.with_name(f".{output.name}.resume.partial")
        self.state = output.with_name(f".{output.name}.resume.json")
        self.key = key

    def start(self) -> tuple[int, str | None]:
        """Return (rows written, sha256 of their texts) of an earlier run, or (0, None).

        Raises ResumeError when the earlier run's input, model or settings differ.
        """
        import json

        from .. import _outputs

        if not (self.state.is_file() and self.partial.is_file()):
            return 0, None
        saved = json.loads(self.state.read_text())
        changed = sorted(k for k in self.key if saved.get("key", {}).get(k) != self.key[k])
        if changed:
            raise _outputs.ResumeError(
                f"cannot resume {self.output}: {', '.join(changed)} changed since the "
                f"interrupted run (recorded in {self.state}). Run again without --resume to "
                "start over"
            )
        return int(saved["rows"]), saved["rows_sha256"]

    def save(self, rows: int, rows_sha256: str) -> None:
        """Record that the first ``rows`` rows are written (atomically)."""
        import json

        from .._files import atomic_file

        with atomic_file(self.state) as tmp:
            tmp.write_text(json.dumps({"key": self.key, "rows": rows, "rows_sha256": rows_sha256}))

    def finish(self) -> None:
        """Rename the complete rows to the output and forget the state."""
        os.replace(self.partial, self.output)
        self.state.unlink(missing_ok=True)


class _TruncationCount:
    """Sum the truncation warnings of every chunk into one warning at the end."""

    def __init__(self, embedder):
        # a StaticEmbedder has no length limit: it never warns, the count stays 0
        self.max_length = getattr(embedder, "max_length_", None)
        self.truncated = 0
        self.seen = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.truncated and exc_info[0] is None:
            total = TruncationWarning(self.truncated, self.seen, self.max_length)
            # the command's option for what the warning names as the parameter
            message = str(total).replace("long_texts='windows'", "--long-texts windows")
            print(f"skembed: warning: {message}", file=sys.stderr)

    def transform(self, embedder, texts: list[str]):

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TruncationWarning)
            vectors = embedder.transform(texts)
        for warning in caught:
            if isinstance(warning.message, TruncationWarning):
                self.truncated += warning.message.truncated
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        self.seen += len(texts)
        return vectors


def _fitted_static_embedder(args):
    """Return the StaticEmbedder of --static, its table distilled or read from the cache."""
    from ..static import StaticEmbedder

    for name in ENCODER_OPTIONS:
        if getattr(args, name, None) is not None:
            option = "--" + name.replace("_", "-")
            raise UsageError(
                f"{option} configures the encoder, which --static does not run: its vectors "
                f"sum the rows of a distilled table. Drop {option}, or drop --static to "
                "encode with the encoder"
            )
    options = {} if args.dims is None else {"dims": args.dims}
    embedder = StaticEmbedder(model=args.model, show_progress=args.progress, **options)
    embedder.fit(["load the table"])
    if embedder.distill_seconds_:
        print(
            f"skembed: built the static table of {args.model} in "
            f"{embedder.distill_seconds_:.1f} s (cached in {embedder.table_path_})",
            file=sys.stderr,
        )
    return embedder
