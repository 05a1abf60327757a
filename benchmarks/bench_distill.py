"""StaticEmbedder distilled from the default model, against the encoder, in one run.

Prints three tables: the distillation (seconds, table size), throughput (texts/s, best of
N rounds for the static estimator, one round of the encoder, which takes seconds to
minutes; ratio to ``SentenceEmbedder()``, the exact default with its cache cleared) on the
2,910 distinct STS-B dev sentences and on SciFact abstracts, and quality on the
development and training splits only (never a held-out test split): STS-B dev, SICK-R
train+trial, Banking77 8/label on the training file (docs/quality.md's protocol) and
SciFact train-query retrieval. The encoder's quality is measured on STS-B dev in this run;
on the slower tasks its figures are docs/quality.md's (same data, same protocol, an earlier
run), marked as such. Distillation runs into a fresh table folder, so it is always paid.

``StaticEmbedder(weighting="learned")`` learns its token weights from the encoder's vectors
of the texts it is fitted on, so each task fits it on texts it never scores (``--no-learned``
skips that row, whose fits run the encoder over about 28,000 short texts):

- STS-B dev and SICK-R train+trial: the STS-B *train* sentences (SICK has no split that is
  not scored: its train and trial files are both scored, and its test file is held out);
- Banking77: the texts of the rows that the 8/label examples are drawn from (the training
  side of ``evaluate.classification``'s split; never its evaluation rows), labels unused;
- SciFact: the corpus's titles, what an index holds before any query comes (the train
  queries are what is scored; the abstracts would take about 11 minutes through the encoder
  on 2 cores).

    python benchmarks/bench_distill.py [--rounds 3] [--long 200] [--sweep] [--no-learned]

model2vec itself does not run here: plain ``model2vec`` installs but cannot distil (that
needs the ``distill`` extra), and ``pip install --dry-run 'model2vec[distill]'`` would
replace transformers 5.24.0 by 5.3.0 and tokenizers 0.23.3 by 0.22.2, the pins
sentence-transformers and skembed run on. Its recipe ([CLS] token [SEP], mean, PCA 256,
SIF 1e-4) runs instead on skembed's encoder path as a row of this run; model2vec's own
figures from issue 18 (STS-B *test*) are printed for context, not as a same-split
comparison.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# the same CPU name and SciFact abstracts as the throughput benchmark (run from benchmarks/)
from bench_throughput import SCIFACT, cpu_model, read_scifact

from skembed.exceptions import TruncationWarning

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_rate(embed, texts: list[str], rounds: int) -> float:
    """Return the best texts/s over rounds of embed(texts)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        embed(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def model2vec_recipe(est):
    """Return (a copy of est with model2vec's framing, seconds): [CLS] token [SEP] rows.

    The same vocabulary, encoder path, mean pooling, PCA and SIF weights as est; only the
    framing differs (StaticEmbedder puts the leading special token alone before a token).
    """
    import dataclasses

    from skembed import _distil, _encoding, _locate, _models, _tokens, static
    from skembed._backends import forward_for, threads

    start = time.perf_counter()
    loaded = _models.load(_locate.find_model(est.model), "cpu")
    _, meta = _distil.read(  # the distilled vocabulary of est
        _distil.tokens_file(est.fingerprint_), est.fingerprint_, None, "vectors"
    )
    kept = meta["kept"]
    prefix, suffix = _distil.frame(loaded)
    ids = np.flatnonzero(kept)
    token_ids = _tokens.TokenIds(
        [np.asarray([*prefix, i, *suffix], dtype=np.int64) for i in ids.tolist()],
        np.zeros(len(ids), dtype=bool),
    )
    width = len(prefix) + 1 + len(suffix)
    with threads("onnx", None) as n:
        pooled = _encoding.encode_last_layer(
            loaded,
            forward_for(loaded, "onnx", "fp32", n),
            token_ids,
            pooling="mean",
            batching=_encoding.Batching(_distil.DISTIL_BATCH, _distil.DISTIL_BATCH * width),
        )
    vectors = np.zeros((len(kept), pooled.shape[1]), dtype=np.float32)
    vectors[ids] = pooled
    rows, _ = _distil.build_table(vectors, kept, static.table_settings(est))
    seconds = time.perf_counter() - start
    copy = static.StaticEmbedder(**est.get_params()).fit(["warm up"])
    # the variant table in place of the fitted one, for scoring only
    copy._table = dataclasses.replace(static.loaded_table(est), vectors=rows)  # noqa: SLF001
    return copy, seconds


def learned_row(sts, sick, banking, measured) -> tuple[str, list[str]]:
    """Score StaticEmbedder(weighting="learned") fitted on each task's training texts only.

    Adds the row to measured; returns its label and one table line per fit (texts, fit
    seconds, pickle size).
    """
    import gzip
    import json
    import pickle

    from skembed import datasets, evaluate, static
    from skembed.datasets import read_stsb

    train = read_stsb(SHARED / "stsb" / "sts-train.csv")
    bank = datasets.read_labelled_csv(banking)
    draw, _ = evaluate.stratified_split(bank.labels, 0.25, 42, banking)
    with gzip.open(SCIFACT, "rt", encoding="utf-8") as fh:
        titles = [t for t in (json.loads(line).get("title", "") for line in fh) if t.strip()]
    fits, lines = {}, []
    for name, texts in (
        ("STS-B train sentences (for STS-B dev and SICK-R)", train.first + train.second),
        ("Banking77: texts of the training side of the split", [bank.texts[i] for i in draw]),
        ("SciFact corpus titles", titles),
    ):
        start = time.perf_counter()
        fits[name] = static.StaticEmbedder(weighting="learned").fit(texts)
        seconds = time.perf_counter() - start
        size = len(pickle.dumps(fits[name]))
        lines.append(f"| {name} | {len(set(texts)):,} | {seconds:.1f} | {size:,} |")
        print(f"  learned on {name}: {seconds:.0f} s", file=sys.stderr, flush=True)
    on_sts, on_bank, on_titles = fits.values()
    start = time.perf_counter()
    label = "StaticEmbedder(weighting='learned')"
    measured[f"`{label}` (256 dims), fitted on each task's training texts"] = (
        evaluate.sts(on_sts, sts)["spearman"],
        evaluate.sts(on_sts, sick)["spearman"],
        evaluate.classification(on_bank, banking, n_per_label=8, n_runs=10)["accuracy"],
        evaluate.retrieval(on_titles, SHARED / "scifact", split="train")["ndcg@10"],
    )
    print(f"  quality of {label}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return label, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the static estimator")
    parser.add_argument("--long", type=int, default=200, help="SciFact abstracts to embed")
    parser.add_argument("--sweep", action="store_true", help="STS-B dev over dims and weighting")
    parser.add_argument(
        "--no-learned",
        action="store_true",
        help="skip weighting='learned' (encoder over ~28k texts)",
    )
    args = parser.parse_args()

    from skembed import SentenceEmbedder, _distil, clear_cache, evaluate, static
    from skembed.datasets import read_stsb

    warnings.simplefilter("ignore", TruncationWarning)  # abstracts are cut at 256, as in MTEB
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.2f} at start; skembed {commit}; teacher all-MiniLM-L6-v2"
    )

    # -- distillation, into a fresh folder so that it is paid in this run
    fresh = tempfile.TemporaryDirectory()
    _distil.folder = lambda: Path(fresh.name)  # the benchmark's own cache
    start = time.perf_counter()
    est = static.StaticEmbedder().fit(["warm up"])
    fit_seconds = time.perf_counter() - start
    table_mb = Path(est.table_path_).stat().st_size / 1e6
    tokens_mb = _distil.tokens_file(est.fingerprint_).stat().st_size / 1e6
    import pickle

    pickle_bytes = len(pickle.dumps(est))
    start = time.perf_counter()
    clear_cache()  # a new process: only the disk is left
    static.StaticEmbedder().fit(["warm up"])
    reread = time.perf_counter() - start
    start = time.perf_counter()
    static.StaticEmbedder(dims=128, weighting="zipf").fit(["warm up"])
    other_settings = time.perf_counter() - start
    print("\n| distillation (dims=256, weighting='sif') | value |\n|---|---|")
    print(
        f"| first fit: {est.n_tokens_:,} tokens through the encoder, PCA, weights | "
        f"{fit_seconds:.1f} s |"
    )
    print(f"| later fit: table read from disk | {reread:.2f} s |")
    print(
        f"| fit with other dims/weighting: token vectors read, PCA again | {other_settings:.2f} s |"
    )
    print(f"| table file (256 dims, float32) | {table_mb:.1f} MB |")
    print(
        f"| token vectors file (384 dims, float32, shared by all settings) | {tokens_mb:.1f} MB |"
    )
    print(f"| pickle of the fitted estimator | {pickle_bytes:,} bytes |")
    print(f"| PCA variance kept | {est.explained_variance_:.3f} |")

    # -- throughput
    pairs = read_stsb(SHARED / "stsb" / "sts-dev.csv")
    short = list(dict.fromkeys(pairs.first + pairs.second))
    long = read_scifact(args.long)
    encoder = SentenceEmbedder().fit(["warm up"])
    raw = SentenceEmbedder(pooling="static_mean").fit(["warm up"])
    wide = static.StaticEmbedder(input_rows=True).fit(["warm up"])
    recipe, recipe_seconds = model2vec_recipe(est)
    print(f"(model2vec's framing, [CLS] token [SEP], distilled in {recipe_seconds:.1f} s)")

    def cold(embedder):
        def run(texts):
            clear_cache()  # every round pays the encoder (or the row lookup), as a first call
            return embedder.transform(texts)

        return run

    print(
        "\n| workload | `SentenceEmbedder()` texts/s (1 round) | `pooling='static_mean'` "
        "texts/s | `StaticEmbedder()` texts/s | × encoder | `StaticEmbedder(input_rows=True)` "
        "texts/s | × encoder |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, texts in (
        (f"STS-B dev sentences ({len(short):,})", short),
        (f"SciFact abstracts ({len(long)})", long),
    ):
        static_rate = best_rate(est.transform, texts, args.rounds)
        wide_rate = best_rate(wide.transform, texts, args.rounds)
        raw_rate = best_rate(cold(raw), texts, args.rounds)
        encoder_rate = best_rate(cold(encoder), texts, 1)
        print(
            f"| {name} | {encoder_rate:,.1f} | {raw_rate:,.0f} | {static_rate:,.0f} | "
            f"{static_rate / encoder_rate:.0f}× | {wide_rate:,.0f} | "
            f"{wide_rate / encoder_rate:.0f}× |",
            flush=True,
        )
    print(f"(static rows: best of {args.rounds} rounds; the encoder: one round, cache cleared)")

    # -- quality
    sts = SHARED / "stsb" / "sts-dev.csv"
    sick = [SHARED / "sick" / "SICK_train.txt", SHARED / "sick" / "SICK_trial.txt"]
    banking = SHARED / "banking77" / "train.csv"
    clear_cache()
    encoder_sts = evaluate.sts(encoder, sts)["spearman"]
    estimators = {
        "model2vec's recipe on skembed's path ([CLS] token [SEP], 256 dims, SIF)": recipe,
        "`SentenceEmbedder(pooling='static_mean')` (raw input rows, 384 dims)": raw,
        "`StaticEmbedder()` (distilled, 256 dims, SIF)": est,
        "`StaticEmbedder(input_rows=True)` (distilled + input rows, 512 dims)": wide,
        # unfitted: evaluate fits a clone on each task's texts (no labels), as with TF-IDF
        "`StaticEmbedder(frequencies='fit', sif_coefficient=1e-3)` (fitted on each task's texts)": (
            static.StaticEmbedder(frequencies="fit", sif_coefficient=1e-3)
        ),
    }
    measured = {}
    for label, embedder in estimators.items():
        start = time.perf_counter()
        measured[label] = (
            evaluate.sts(embedder, sts)["spearman"],
            evaluate.sts(embedder, sick)["spearman"],
            evaluate.classification(embedder, banking, n_per_label=8, n_runs=10)["accuracy"],
            evaluate.retrieval(embedder, SHARED / "scifact", split="train")["ndcg@10"],
        )
        print(f"  quality of {label}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if not args.no_learned:
        learned_label, learned_fits = learned_row(sts, sick, banking, measured)
    # docs/quality.md (benchmarks/quality.json): the encoder on the slow tasks
    print(
        "\n| estimator | STS-B dev Spearman | SICK-R train+trial Spearman | "
        "Banking77 8/label accuracy | SciFact train nDCG@10 |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| `SentenceEmbedder()` (encoder, mean) | {encoder_sts:.4f} | 0.7801* | 0.7858* | "
        "0.6602* |"
    )
    for label, values in measured.items():
        print(f"| {label} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    print(
        "| model2vec 0.10 distilling the same teacher (issue 18; not this run, other splits) "
        "| 0.661 (STS-B **test**) | - | 0.668 (its protocol) | - |"
    )
    print("\n* docs/quality.md: same data and protocol, an earlier run (minutes of encoding)")
    if not args.no_learned:
        print(
            f"\n| `{learned_label}` fitted on | texts | fit s | pickle bytes |\n|---|---|---|---|"
        )
        for line in learned_fits:
            print(line)
    distilled = measured["`StaticEmbedder()` (distilled, 256 dims, SIF)"][0]
    print(f"StaticEmbedder() / encoder on STS-B dev: {distilled / encoder_sts:.3f}")

    if args.sweep:
        print(
            "\n| dims | weighting | STS-B dev Spearman | SciFact train nDCG@10 | table build s |"
            "\n|---|---|---|---|---|"
        )
        for dims in (128, 256, None):
            for weighting, a in (
                ("sif", 1e-3),
                ("sif", 1e-4),
                ("sif", 1e-5),
                ("zipf", None),
                ("none", None),
            ):
                if dims not in (256,) and (weighting, a) not in (("sif", 1e-4),):
                    continue
                params = {"dims": dims, "weighting": weighting}
                if a is not None:
                    params["sif_coefficient"] = a
                start = time.perf_counter()
                swept = static.StaticEmbedder(**params).fit(["warm up"])
                built = time.perf_counter() - start
                spearman = evaluate.sts(swept, sts)["spearman"]
                ndcg = evaluate.retrieval(swept, SHARED / "scifact", split="train")["ndcg@10"]
                label = f"sif a={a:g}" if weighting == "sif" else weighting
                print(
                    f"| {dims or 384} | {label} | {spearman:.4f} | {ndcg:.4f} | {built:.1f} |",
                    flush=True,
                )
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
