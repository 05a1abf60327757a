"""``skembed search``: the texts of a corpus closest in meaning to queries (SemanticSearch)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from .common import COLUMN_HELP, INPUT_HELP, UsageError, add_command, embedder, flat, positive_int


def add(subparsers, common) -> None:
    """Declare ``skembed search``."""
    p = add_command(
        subparsers,
        common,
        "search",
        run,
        help="find the texts of a corpus closest in meaning to queries",
        description="Embed the texts of CORPUS (or load an index saved with --save-index) "
        "and print, for each query, the k most similar texts: cosine score, row, text.",
    )
    p.add_argument(
        "corpus",
        metavar="CORPUS",
        help=INPUT_HELP + "; or a folder written by --save-index (its model is used)",
    )
    p.add_argument("queries", nargs="*", metavar="QUERY", help="texts to search for")
    p.add_argument("--queries", dest="queries_file", metavar="FILE", help="queries from a file")
    p.add_argument("--column", help=COLUMN_HELP + " (corpus and queries files)")
    p.add_argument(
        "-k", type=positive_int, default=5, metavar="K", help="results per query (default: 5)"
    )
    p.add_argument(
        "--index",
        choices=("exact", "hnsw", "int8", "binary", "binary_hnsw"),
        help="exact (default: every corpus text is scored), hnsw (approximate, much faster on "
        "large corpora), int8 (int8 codes, every one scored: a quarter of the memory) or "
        "binary (sign bits, candidates rescored with int8 codes: the least memory, fast) or "
        "binary_hnsw (the same through a graph: the fastest); hnsw and the binary kinds "
        "need pip install 'skembed[ann]'; a saved index keeps its own",
    )
    p.add_argument(
        "--vectors",
        metavar="FILE",
        help="the corpus's vectors, made already by skembed encode (.npy or .parquet, same "
        "model options): the corpus is not embedded again",
    )
    p.add_argument(
        "--rescore-multiplier",
        type=positive_int,
        metavar="M",
        help="for the binary kinds: K*M candidates by Hamming distance are rescored (default: 10)",
    )
    p.add_argument(
        "--ef-search",
        type=positive_int,
        metavar="N",
        help="for --index hnsw and binary_hnsw: candidates kept per query, more finds more "
        "of the true neighbours and is slower (default: 64)",
    )
    p.add_argument(
        "--save-index", metavar="FOLDER", help="also save the index here, to search it again"
    )


def run(args) -> int:
    """Run ``skembed search``; return the exit status."""
    from .._textfiles import TextFile
    from ..search import BUILD_CHUNK, SemanticSearch

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
        chunks = TextFile(args.corpus, args.column).chunks(BUILD_CHUNK)
        first = next(chunks, None)
        if not first:
            raise UsageError(f"corpus {args.corpus!r} holds no texts; nothing to search")
        # streamed: the texts are read, embedded and indexed a chunk at a time
        texts = itertools.chain(first, itertools.chain.from_iterable(chunks))
        index = SemanticSearch(
            embedder=embedder(args),
            n_neighbors=args.k,
            index=args.index or "exact",
            long_texts=args.long_texts or "truncate",
        )
    if args.vectors and texts is None:
        raise UsageError("--vectors builds an index from a corpus file; drop it for a saved index")
    if args.rescore_multiplier is not None:
        index.set_params(rescore_multiplier=args.rescore_multiplier)
    if args.ef_search is not None:
        if index.index not in ("hnsw", "binary_hnsw"):
            raise UsageError(
                f"--ef-search applies to --index hnsw and binary_hnsw; this search is {index.index}"
            )
        index.set_params(ef_search=args.ef_search)  # a query-time setting, also when loaded
    if texts is not None:
        index.fit(texts, vectors=args.vectors)
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
        print(f"query: {flat(query)}")
        for hit in hits:  # with windows: the part of the text that matched
            where = "" if hit.span is None else f" chars {hit.span[0]}-{hit.span[1]}"
            print(f"  {hit.score:.4f}  [{hit.index}{where}]  {flat(hit.passage)}")
    return 0
