"""The ``skembed`` command: embed files, search them, compare and tokenize sentences.

Subcommands: ``encode``, ``search``, ``similarity``, ``tokenize``, ``info``, ``eval``. This module
imports only the standard library at start so that ``skembed --help`` answers at once;
numpy, torch and the model load inside the subcommand that needs them.

A mistake in the command line or its input (a missing file, an unknown column, an empty
input, a model that is not there) is reported as one line on stderr, ``skembed: error:
...``, with exit status 2; never a traceback.

``eval`` scores a model on a task's files with :mod:`skembed.evaluate`.

Adding a subcommand: write
``_add_<name>(subparsers, common)``, which declares the arguments and sets ``run=`` to a
``_run_<name>(args) -> int`` that imports what it needs inside, and list it in
``_COMMANDS``. ``common`` holds the model options; :func:`_fitted_embedder` turns them
into a fitted :class:`~skembed.SentenceEmbedder`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

EXIT_USAGE = 2
TEXT_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
TEXT_SUFFIXES |= {".parquet": "parquet", ".pq": "parquet"}
OUTPUT_SUFFIXES = (".npy", ".parquet")


class UsageError(Exception):
    """A mistake in the command line or its input: one line on stderr, exit status 2."""


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
                print(f"skembed: error: {_one_line(exc)}", file=sys.stderr)
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
    parser = _Parser(
        prog="skembed",
        description="Sentence embeddings from local Hugging Face encoders, offline.",
        epilog="Run 'skembed COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    common = _Parser(add_help=False)
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
        type=_positive_int,
        metavar="K",
        help="keep the first K dimensions of each vector (Matryoshka models)",
    )
    model.add_argument(
        "--max-length",
        type=_positive_int,
        metavar="N",
        help="tokens per text, longer texts are truncated (default: the model's limit)",
    )
    model.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help="texts per encoder call (default: SentenceEmbedder's)",
    )
    model.add_argument("--device", help="auto (default: CUDA if present), cpu, cuda, cuda:1, ...")
    model.add_argument(
        "--backend",
        choices=("auto", "torch", "onnx"),
        help="what runs the encoder: auto (default: ONNX Runtime on the CPU when installed, "
        "else PyTorch), torch, or onnx (ONNX Runtime, CPU)",
    )
    model.add_argument(
        "--precision",
        choices=("fp32", "int8"),
        help="fp32 (default) or int8: a quantized graph on ONNX Runtime, faster, vectors "
        "close to fp32 (needs pip install 'skembed[onnx]')",
    )
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for add in _COMMANDS:
        add(subparsers, common)
    return parser


# -- encode ----------------------------------------------------------------------------------


def _add_encode(subparsers, common) -> None:
    p = subparsers.add_parser(
        "encode",
        parents=[common],
        help="embed every text of a file into .npy or Parquet",
        description="Embed every text of INPUT and write the vectors to OUTPUT, one row per "
        "text in input order. Large inputs stream in chunks: memory stays bounded, and .npy "
        "is written through a memory map.",
    )
    p.add_argument("input", metavar="INPUT", help=_INPUT_HELP)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help=".npy (array, n_texts x dim) or .parquet (columns text, embedding)",
    )
    p.add_argument("--column", help=_COLUMN_HELP)
    p.add_argument(
        "--dtype",
        choices=("float32", "float16"),
        default="float32",
        help="type of the written vectors; float16 halves the file, to about 1e-3 of float32 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
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
        type=_positive_int,
        metavar="K",
        help="with --static: dimensions the table keeps (PCA; default: 256, at most the "
        "model's own)",
    )
    p.set_defaults(run=_run_encode)


def _run_encode(args) -> int:
    from . import outputs

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
        embedder = _fitted_embedder(args, ["load the model"])
    dim = embedder.embedding_dim_
    if args.resume:
        return _run_resumable_encode(args, source, n, embedder, output)
    with outputs.atomic_output(output) as partial:
        if output.suffix.lower() == ".npy":
            writer = outputs.NpyWriter(partial, n, dim, args.dtype)
        else:
            _pyarrow("writing Parquet")
            writer = outputs.ParquetWriter(partial, dim, args.dtype)
        with _TruncationCount(embedder) as truncation, _progress(n, args) as bar:
            for chunk in source.chunks(args.chunk_size):
                if writer.rows + len(chunk) > n:
                    raise UsageError(f"{source.name} changed while it was read; run encode again")
                writer.write(chunk, truncation.transform(embedder, chunk))
                bar.update(len(chunk))
        if writer.rows != n:
            raise UsageError(f"{source.name} changed while it was read; run encode again")
        writer.close()
    print(f"skembed: wrote {n:,} vectors of {dim} {args.dtype} to {output}", file=sys.stderr)
    return 0


def _run_resumable_encode(args, source, n: int, embedder, output: Path) -> int:
    """Encode into .npy, recording progress after each chunk so a killed run can go on."""
    import hashlib

    from . import outputs

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
    state = outputs.Resumable(output, key)
    done, done_sha256 = state.start()
    writer = outputs.NpyWriter(state.partial, n, embedder.embedding_dim_, args.dtype, done)
    rows = hashlib.sha256()
    seen = 0
    with _TruncationCount(embedder) as truncation, _progress(n, args) as bar:
        bar.update(done)
        for chunk in source.chunks(args.chunk_size):
            skip = min(len(chunk), max(done - seen, 0))
            for text in chunk:  # every row read, written before or now, enters the hash
                rows.update(text.encode("utf-8", "surrogatepass") + b"\n")
                seen += 1
                if seen == done and rows.hexdigest() != done_sha256:
                    raise outputs.ResumeError(
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
    print(
        f"skembed: wrote {n:,} vectors of {embedder.embedding_dim_} {args.dtype} to {output}"
        + (f" ({done:,} of them by the interrupted run)" if done else ""),
        file=sys.stderr,
    )
    return 0


# -- search ----------------------------------------------------------------------------------


def _add_search(subparsers, common) -> None:
    p = subparsers.add_parser(
        "search",
        parents=[common],
        help="find the texts of a corpus closest in meaning to queries",
        description="Embed the texts of CORPUS (or load an index saved with --save-index) "
        "and print, for each query, the k most similar texts: cosine score, row, text.",
    )
    p.add_argument(
        "corpus",
        metavar="CORPUS",
        help=_INPUT_HELP + "; or a folder written by --save-index (its model is used)",
    )
    p.add_argument("queries", nargs="*", metavar="QUERY", help="texts to search for")
    p.add_argument("--queries", dest="queries_file", metavar="FILE", help="queries from a file")
    p.add_argument("--column", help=_COLUMN_HELP + " (corpus and queries files)")
    p.add_argument(
        "-k", type=_positive_int, default=5, metavar="K", help="results per query (default: 5)"
    )
    p.add_argument(
        "--index",
        choices=("exact", "hnsw"),
        help="exact (default: every corpus text is scored) or hnsw (approximate, much faster "
        "on large corpora; needs pip install 'skembed[ann]'); a saved index keeps its own",
    )
    p.add_argument(
        "--ef-search",
        type=_positive_int,
        metavar="N",
        help="for --index hnsw: candidates kept per query, more finds more of the true "
        "neighbours and is slower (default: 64)",
    )
    p.add_argument(
        "--save-index", metavar="FOLDER", help="also save the index here, to search it again"
    )
    p.set_defaults(run=_run_search)


def _run_search(args) -> int:
    from .search import SemanticSearch

    queries = list(args.queries)
    if args.queries_file:
        queries += TextFile(args.queries_file, args.column).read()
    if not queries:
        raise UsageError("no queries: give them as arguments or in a file with --queries FILE")
    corpus = Path(args.corpus)
    texts = None
    if corpus.is_dir():
        index = SemanticSearch.load(corpus)
        if args.index not in (None, index.index):
            raise UsageError(
                f"the index saved in {args.corpus!r} is {index.index!r}; --index {args.index} "
                "applies when the corpus is a file of texts: drop it, or pass the corpus file"
            )
    else:
        texts = TextFile(args.corpus, args.column).read()
        if not texts:
            raise UsageError(f"corpus {args.corpus!r} holds no texts; nothing to search")
        index = SemanticSearch(
            embedder=_embedder(args), n_neighbors=args.k, index=args.index or "exact"
        )
    if args.ef_search is not None:
        if index.index != "hnsw":
            raise UsageError("--ef-search applies to --index hnsw; this search is exact")
        index.set_params(ef_search=args.ef_search)  # a query-time setting, also when loaded
    if texts is not None:
        index.fit(texts)
    if args.save_index:
        index.save(args.save_index)
        print(
            f"skembed: saved the index of {index.n_samples_fit_:,} texts to {args.save_index}",
            file=sys.stderr,
        )
    results = index.search(queries, args.k)
    for number, (query, hits) in enumerate(zip(queries, results, strict=True)):
        if number:
            print()
        print(f"query: {_flat(query)}")
        for text, score, row in hits:
            print(f"  {score:.4f}  [{row}]  {_flat(text)}")
    return 0


# -- similarity ------------------------------------------------------------------------------


def _add_similarity(subparsers, common) -> None:
    p = subparsers.add_parser(
        "similarity",
        parents=[common],
        help="print the cosine similarity matrix of two or more sentences",
        description="Embed each TEXT and print the matrix of their cosine similarities.",
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="two or more texts")
    p.set_defaults(run=_run_similarity)


def _run_similarity(args) -> int:
    import numpy as np

    if len(args.texts) < 2:
        raise UsageError("similarity compares texts: give two or more, e.g. 'a cat' 'a dog'")
    embedder = _fitted_embedder(args, args.texts)
    X = embedder.transform(args.texts).astype(np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X /= np.where(norms == 0, 1, norms)
    S = X @ X.T
    for i, text in enumerate(args.texts):
        print(f"[{i}] {_flat(text)}")
    width = max(6, len(f"[{len(S) - 1}]"))
    print("\n" + " " * width + "".join(f"{f'[{j}]':>8}" for j in range(len(S))))
    for i, row in enumerate(S):
        print(f"{f'[{i}]':<{width}}" + "".join(f"{s:8.3f}" for s in row))
    return 0


# -- tokenize --------------------------------------------------------------------------------


def _add_tokenize(subparsers, common) -> None:
    p = subparsers.add_parser(
        "tokenize",
        parents=[common],
        help="show the tokens and ids the model sees, and where a long text is cut",
        description="Print the tokens and ids of each TEXT as the encoder sees them; for a "
        "text longer than --max-length, where it is truncated.",
    )
    p.add_argument("texts", nargs="+", metavar="TEXT", help="one or more texts")
    p.set_defaults(run=_run_tokenize)


def _run_tokenize(args) -> int:
    embedder = _fitted_embedder(args, args.texts)
    for number, tok in enumerate(embedder.tokenize(args.texts)):
        if number:
            print()
        print(f"text: {tok.text!r}")
        print(f"{len(tok.tokens)} tokens (max_length {embedder.max_length_})")
        cut = _truncation_point(embedder, tok) if tok.truncated else None
        width = max(len(str(i)) for i in tok.ids)
        for position, (token, token_id) in enumerate(zip(tok.tokens, tok.ids, strict=True)):
            if cut is not None and position == cut[0]:
                print(f"  --- {cut[1]}")
            print(f"  {position:>5}  {token_id:>{width}}  {token}")
    return 0


def _truncation_point(embedder, tok) -> tuple[int, str]:
    """Return (position of the first token after the cut, a line saying what was cut)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedder.model_path_, local_files_only=True)
    full = tokenizer(tok.text, add_special_tokens=False, return_offsets_mapping=True)
    special = tokenizer.get_special_tokens_mask(tok.ids, already_has_special_tokens=True)
    text_positions = [i for i, flag in enumerate(special) if not flag]
    kept = len(text_positions)
    end = full["offset_mapping"][kept - 1][1] if kept else 0
    total = len(full["input_ids"])
    tail = tok.text[max(0, end - 30) : end]
    return (text_positions[-1] + 1 if kept else 0), (
        f"truncated here: {total - kept:,} of {total:,} text tokens dropped; the kept text "
        f"ends at character {end:,}: ...{tail!r}"
    )


# -- info ------------------------------------------------------------------------------------


def _add_info(subparsers, common) -> None:
    p = subparsers.add_parser(
        "info",
        parents=[common],
        help="show the model: folder, architecture, pooling, prompts, dense layers, "
        "normalisation, dimension, max length, fingerprint, device",
        description="Load the model chosen by the model options and describe it.",
    )
    p.set_defaults(run=_run_info)


def _run_info(args) -> int:
    from .models import resolve_device

    embedder = _fitted_embedder(args, ["info"])
    pipeline = embedder._model().pipeline
    include = "" if pipeline.include_prompt else ", prompt tokens left out"
    dense = [f"{d.weight.shape[1]} -> {d.out_features} {d.activation}" for d in pipeline.dense]
    rows = [
        ("model", args.model),
        ("folder", embedder.model_path_),
        ("found as", embedder.model_origin_),
        ("architecture", _architecture(Path(embedder.model_path_))),
        ("dimension", embedder.embedding_dim_),
        ("max length", f"{embedder.max_length_} tokens"),
        ("layers", f"{embedder.n_layers_} (0 is the embedding output)"),
        ("pooling", f"{embedder.pooling_}{include}"),
        ("dense", "; ".join(dense) or "none"),
        ("normalize", "unit length" if embedder.normalize_ else "no"),
        ("prompt", repr(embedder.prompt_) if embedder.prompt_ else "none"),
        (
            "prompts",
            ", ".join(f"{k}={v!r}" for k, v in sorted(embedder.prompts_.items())) or "none",
        ),
        ("fingerprint", f"sha256 {embedder.fingerprint_}"),
        ("device", resolve_device(embedder.device)),
    ]
    for key, value in rows:
        print(f"{key:<13} {value}")
    return 0


def _architecture(folder: Path) -> str:
    """Return the model type and class named by a folder's config.json, e.g. 'bert (BertModel)'."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    classes = ", ".join(config.get("architectures") or [])
    return f"{config.get('model_type', 'unknown')}" + (f" ({classes})" if classes else "")


# -- eval ------------------------------------------------------------------------------------

_EVAL_TASKS = {
    "sts": "sts",
    "pairs": "pair_classification",
    "classification": "classification",
    "clustering": "clustering",
    "retrieval": "retrieval",
}


def _add_eval(subparsers, common) -> None:
    p = subparsers.add_parser(
        "eval",
        parents=[common],
        help="score the model on a task: sts, pairs, classification, clustering, retrieval",
        description="Evaluate an embedder on plain files as MTEB does, print the metrics and "
        "optionally write them as JSON. Formats: docs/quality.md and skembed.datasets.",
    )
    p.add_argument("task", choices=sorted(_EVAL_TASKS), help="what to measure")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="PATH",
        help="data file (or BEIR folder for retrieval); repeat for sts to join files",
    )
    p.add_argument("--layer", type=int, help="hidden-state layer to pool (default: the last)")
    p.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    import json

    from . import evaluate

    for path in args.data:
        if not Path(path).exists():
            raise UsageError(f"--data {path!r} does not exist")
    if args.task != "sts" and len(args.data) > 1:
        raise UsageError(f"{args.task} takes one --data path, got {len(args.data)}")
    embedder = _embedder(args)
    if args.layer is not None:
        embedder.set_params(layer=args.layer)
    data = args.data if args.task == "sts" else args.data[0]
    metrics = getattr(evaluate, _EVAL_TASKS[args.task])(embedder, data)
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.json:
        record = {"task": args.task, "data": args.data, "params": _plain(embedder.get_params())}
        Path(args.json).write_text(json.dumps({**record, "metrics": metrics}, indent=2) + "\n")
    return 0


def _plain(params: dict) -> dict:
    return {
        k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v)
        for k, v in params.items()
    }


_COMMANDS = (_add_encode, _add_search, _add_similarity, _add_tokenize, _add_info, _add_eval)


# -- reading texts from files ----------------------------------------------------------------

_INPUT_HELP = "a text file with one text per line, or .csv, .tsv, .jsonl or .parquet (see --column)"
_COLUMN_HELP = "the text column of a CSV, TSV, JSONL or Parquet file (needed if it has several)"


class TextFile:
    """The texts of one file, read in one pass or in chunks, checked as they are read.

    A plain text file holds one text per line (an empty line is an empty text). CSV and TSV
    have a header row; JSONL holds one object per line; in those and in Parquet,
    ``column`` names the text column, and may be left out when there is only one.
    """

    def __init__(self, path: str | os.PathLike, column: str | None = None):
        self.path = Path(path)
        self.name = str(path)
        if not self.path.exists():
            raise UsageError(f"input file {self.name!r} does not exist")
        if self.path.is_dir():
            raise UsageError(f"input {self.name!r} is a folder; pass a file")
        self.format = TEXT_SUFFIXES.get(self.path.suffix.lower(), "lines")
        if self.format == "lines" and column is not None:
            raise UsageError(
                f"--column applies to CSV, TSV, JSONL and Parquet input; {self.name!r} is "
                "read as plain text, one text per line (use a .csv/.tsv/.jsonl/.parquet name)"
            )
        self.column = self._pick_column(column) if self.format != "lines" else None

    def count(self) -> int:
        """Return the number of texts, reading (and checking) the whole file once."""
        if self.format == "parquet":
            _, pq = _pyarrow("reading Parquet")
            return pq.ParquetFile(self.path).metadata.num_rows
        return sum(1 for _ in self._texts())

    def read(self) -> list[str]:
        """Return all the texts."""
        return [text for chunk in self.chunks(100_000) for text in chunk]

    def chunks(self, size: int) -> Iterator[list[str]]:
        """Yield the texts ``size`` at a time, in file order."""
        if self.format == "parquet":
            yield from self._parquet_chunks(size)
            return
        texts = self._texts()
        while chunk := list(islice(texts, size)):
            yield chunk

    # -- formats -----------------------------------------------------------------------

    def _columns(self) -> list[str]:
        if self.format == "parquet":
            _, pq = _pyarrow("reading Parquet")
            return list(pq.ParquetFile(self.path).schema_arrow.names)
        if self.format == "jsonl":
            for _, record in self._records():
                return list(record)
            return []
        with self._open() as fh:
            return next(self._csv_reader(fh), [])

    def _pick_column(self, column: str | None) -> str:
        columns = self._columns()
        if column is None:
            if len(columns) == 1:
                return columns[0]
            raise UsageError(
                f"{self.name} has columns {columns[:10]}; pick the text column with --column"
                if columns
                else f"{self.name} holds no texts (no header or records)"
            )
        if column not in columns:
            raise UsageError(
                f"{self.name} has no column {column!r}; its columns are {columns[:10]}"
            )
        return column

    def _texts(self) -> Iterator[str]:
        if self.format == "lines":
            with self._open() as fh:
                for line in fh:
                    yield line[:-1] if line.endswith("\n") else line
        elif self.format == "jsonl":
            for line_no, record in self._records():
                yield self._text(record.get(self.column), f"line {line_no}", record)
        else:
            yield from self._csv_texts()

    def _csv_texts(self) -> Iterator[str]:
        import csv

        with self._open() as fh:
            reader = self._csv_reader(fh)
            header = next(reader)
            j = header.index(self.column)
            try:
                for row in reader:
                    if len(row) <= j:
                        raise UsageError(
                            f"{self.name}, line {reader.line_num}: {len(row)} fields, no "
                            f"{self.column!r} (field {j + 1}); every row needs the header's "
                            f"{len(header)} fields"
                        )
                    yield row[j]
            except csv.Error as exc:
                raise UsageError(f"{self.name}, line {reader.line_num}: {exc}") from None

    def _records(self) -> Iterator[tuple[int, dict]]:
        import json

        with self._open() as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UsageError(f"{self.name}, line {line_no}: not JSON ({exc})") from None
                if not isinstance(record, dict):
                    raise UsageError(
                        f"{self.name}, line {line_no}: a JSON {type(record).__name__}; JSONL "
                        'input holds one object per line, e.g. {"text": "..."}'
                    )
                yield line_no, record

    def _parquet_chunks(self, size: int) -> Iterator[list[str]]:
        pa, pq = _pyarrow("reading Parquet")
        file = pq.ParquetFile(self.path)
        kind = file.schema_arrow.field(self.column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise UsageError(
                f"{self.name}: column {self.column!r} holds {kind}, not text; pick the text "
                "column with --column"
            )
        row = 0
        for batch in file.iter_batches(batch_size=size, columns=[self.column]):
            texts = batch.column(0).to_pylist()
            for i, text in enumerate(texts):
                self._text(text, f"row {row + i}")
            row += len(texts)
            yield texts

    def _text(self, value, where: str, record: dict | None = None) -> str:
        if isinstance(value, str):
            return value
        if value is None and record is not None and self.column not in record:
            raise UsageError(
                f"{self.name}, {where}: no key {self.column!r} (keys: {list(record)[:10]})"
            )
        what = "missing (null)" if value is None else f"{type(value).__name__} ({value!r:.40})"
        raise UsageError(
            f"{self.name}, {where}: {self.column!r} is {what}, not text; fill or drop it first"
        )

    def _csv_reader(self, fh):
        import csv

        return csv.reader(fh, delimiter="\t" if self.format == "tsv" else ",")

    def _open(self):
        # utf-8-sig: a byte-order mark, which some editors write, is not part of the first text
        return open(self.path, encoding="utf-8-sig", newline=None if self.format == "lines" else "")


# -- shared by the subcommands -------------------------------------------------------------


# the model options that configure the encoder (all but --model): SentenceEmbedder's
_ENCODER_OPTIONS = (
    "pooling",
    "max_length",
    "prompt",
    "prompt_name",
    "truncate_dim",
    "batch_size",
    "device",
    "backend",
    "precision",
)


def _embedder(args):
    """Return an unfitted SentenceEmbedder configured by the model options."""
    from .embedder import SentenceEmbedder

    options = {
        name: getattr(args, name)
        for name in _ENCODER_OPTIONS
        if getattr(args, name, None) is not None
    }
    # the process cache helps estimators that re-embed the same texts; a command does not
    return SentenceEmbedder(model=args.model, cache=False, **options)


def _fitted_embedder(args, texts: list[str]):
    """Return a SentenceEmbedder configured by the model options, with its model loaded."""
    return _embedder(args).fit(texts)


def _fitted_static_embedder(args):
    """Return the StaticEmbedder of --static, its table distilled or read from the cache."""
    from .static import StaticEmbedder

    for name in _ENCODER_OPTIONS:
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
            print(
                f"skembed: warning: {self.truncated:,} of {self.seen:,} texts were longer than "
                f"{self.max_length} tokens and were truncated",
                file=sys.stderr,
            )

    def transform(self, embedder, texts: list[str]):
        from .embedder import TruncationWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TruncationWarning)
            vectors = embedder.transform(texts)
        for warning in caught:
            if issubclass(warning.category, TruncationWarning):
                self.truncated += int(str(warning.message).split(" of ")[0].replace(",", ""))
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        self.seen += len(texts)
        return vectors


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None


def _progress(total: int, args):
    if not args.progress:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc="skembed encode", file=sys.stderr)


def _pyarrow(purpose: str):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{purpose} needs pyarrow: pip install pyarrow") from None
    return pa, pq


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Version(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("skembed")
        except PackageNotFoundError:
            from . import __version__ as number
        print(f"skembed {number}")
        parser.exit()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"skembed: warning: {_one_line(message)}", file=sys.stderr)


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _flat(text: str) -> str:
    """Return text on one line, so that each result prints as one row ('' when empty)."""
    if not text:
        return "''"
    return " ".join(text.split()) if ("\n" in text or "\r" in text) else text


if __name__ == "__main__":
    sys.exit(main())
