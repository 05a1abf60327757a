"""The skembed command, called in-process through main(argv) (and once as a subprocess):
outputs that round-trip to the estimator's own vectors, and user mistakes reported in one
line with exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skembed import SentenceEmbedder, _models, clear_cache
from skembed.cli import main
from tiny_models import CORPUS

TEXTS = CORPUS + ["", "the sea is blue, the sky is blue", "Ünïcödé and emoji 🙂"]


def skembed(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_lines(path: Path, texts: list[str]) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def test_help_answers_as_a_subprocess_and_lists_the_commands():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "skembed.cli", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for command in ("encode", "search", "similarity", "tokenize", "info"):
        assert f"\n    {command}" in result.stdout
    assert result.stderr == ""


# -- encode ----------------------------------------------------------------------------------


def test_encode_a_text_file_to_npy_round_trips_to_transform(tiny_model, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    code, out, err = skembed(
        capsys, "encode", source, "-o", tmp_path / "X.npy", "--model", tiny_model,
        "--chunk-size", 3,
    )  # fmt: skip
    assert code == 0 and out == ""
    assert err == f"skembed: wrote {len(TEXTS)} vectors of 32 float32 to {tmp_path / 'X.npy'}\n"
    X = np.load(tmp_path / "X.npy")
    expected = SentenceEmbedder(model=tiny_model).fit(TEXTS).transform(TEXTS)
    assert X.dtype == np.float32 and X.shape == expected.shape
    np.testing.assert_allclose(X, expected, atol=1e-6)
    assert not (tmp_path / "X.npy.partial").exists()


def test_encode_applies_the_model_options(tiny_bert, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    code, _, _ = skembed(
        capsys, "encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert,
        "--pooling", "cls", "--max-length", 5, "--batch-size", 2, "--device", "cpu",
    )  # fmt: skip
    assert code == 0
    embedder = SentenceEmbedder(model=tiny_bert, pooling="cls", max_length=5)
    with pytest.warns(UserWarning, match="truncated"):
        expected = embedder.fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(np.load(tmp_path / "X.npy"), expected, atol=1e-6)


def test_encode_sums_truncation_over_chunks_into_one_warning(tiny_bert, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    code, _, err = skembed(
        capsys, "encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert,
        "--max-length", 6, "--chunk-size", 2,
    )  # fmt: skip
    lengths = [len(t.ids) for t in SentenceEmbedder(model=tiny_bert).fit(TEXTS).tokenize(TEXTS)]
    n_long = sum(n > 6 for n in lengths)
    assert code == 0 and n_long >= 3
    assert err.splitlines()[0] == (
        f"skembed: warning: {n_long} of {len(TEXTS)} texts were longer than 6 tokens and were "
        "truncated; --long-texts windows embeds all of each text"
    )


def test_encode_a_csv_column_to_parquet_keeps_texts_and_vectors(tiny_bert, tmp_path, capsys):
    frame = pd.DataFrame({"id": range(len(TEXTS)), "sentence": TEXTS})
    frame.to_csv(tmp_path / "in.csv", index=False)
    code, _, _ = skembed(
        capsys, "encode", tmp_path / "in.csv", "--column", "sentence",
        "-o", tmp_path / "out.parquet", "--model", tiny_bert, "--chunk-size", 4,
    )  # fmt: skip
    assert code == 0
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["text", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert table.column("text").to_pylist() == TEXTS
    X = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    expected = SentenceEmbedder(model=tiny_bert).fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(X, expected, atol=1e-6)


@pytest.mark.parametrize("fmt", ["tsv", "jsonl", "parquet", "single-column-csv"])
def test_every_input_format_gives_the_vectors_of_the_text_file(tiny_bert, tmp_path, capsys, fmt):
    frame = pd.DataFrame({"text": TEXTS, "label": range(len(TEXTS))})
    if fmt == "tsv":
        frame.to_csv(tmp_path / "in.tsv", sep="\t", index=False)
    elif fmt == "jsonl":
        frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True, force_ascii=False)
    elif fmt == "parquet":
        frame.to_parquet(tmp_path / "in.parquet", row_group_size=4)
    else:
        frame[["text"]].to_csv(tmp_path / "in.csv", index=False)
    source = next(tmp_path.glob("in.*"))
    column = [] if fmt == "single-column-csv" else ["--column", "text"]
    code, _, err = skembed(
        capsys, "encode", source, *column, "-o", tmp_path / "X.npy", "--model", tiny_bert,
        "--chunk-size", 3,
    )  # fmt: skip
    assert code == 0, err
    write_lines(tmp_path / "texts.txt", TEXTS)
    skembed(
        capsys, "encode", tmp_path / "texts.txt", "-o", tmp_path / "Y.npy", "--model", tiny_bert
    )
    np.testing.assert_allclose(np.load(tmp_path / "X.npy"), np.load(tmp_path / "Y.npy"), atol=1e-6)


def test_encode_writes_float16_npy_that_rounds_transform(tiny_bert, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    code, _, err = skembed(
        capsys, "encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert,
        "--dtype", "float16", "--chunk-size", 4,
    )  # fmt: skip
    assert code == 0
    assert err == f"skembed: wrote {len(TEXTS)} vectors of 32 float16 to {tmp_path / 'X.npy'}\n"
    X = np.load(tmp_path / "X.npy")
    expected = SentenceEmbedder(model=tiny_bert).fit(TEXTS).transform(TEXTS)
    assert X.dtype == np.float16 and X.shape == expected.shape
    # float16 keeps 11 significant bits: each value within 2**-11 of float32, relatively
    np.testing.assert_allclose(X.astype(np.float32), expected, rtol=2**-11, atol=1e-7)
    assert (tmp_path / "X.npy").stat().st_size == 128 + len(TEXTS) * 32 * 2  # header, 2 B each


def test_encode_writes_float16_parquet(tiny_bert, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    code, _, err = skembed(
        capsys, "encode", source, "-o", tmp_path / "X.parquet", "--model", tiny_bert,
        "--dtype", "float16",
    )  # fmt: skip
    assert code == 0, err
    table = pq.read_table(tmp_path / "X.parquet")
    assert table.schema.field("embedding").type == pa.list_(pa.float16(), 32)
    assert table.column("text").to_pylist() == TEXTS
    X = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    expected = SentenceEmbedder(model=tiny_bert).fit(TEXTS).transform(TEXTS)
    assert X.dtype == np.float16
    np.testing.assert_allclose(X.astype(np.float32), expected, rtol=2**-11, atol=1e-7)


def cosines(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    return np.einsum("ij,ij->i", A, B)


def encode_each(capsys, tmp_path, model: str, option: str, values) -> dict[str, np.ndarray]:
    """Run `skembed encode` once per value of an option; return the vectors of each."""
    source = write_lines(tmp_path / "texts.txt", TEXTS[:-1])  # no empty text: cosine needs a norm
    for value in values:
        code, _, err = skembed(
            capsys, "encode", source, "-o", tmp_path / f"{value}.npy", "--model", model,
            option, value,
        )  # fmt: skip
        assert code == 0, err
    return {value: np.load(tmp_path / f"{value}.npy") for value in values}


def test_encode_with_int8_precision_runs_onnx_close_to_fp32(tiny_bert, tmp_path, capsys):
    vectors = encode_each(capsys, tmp_path, tiny_bert, "--precision", ("fp32", "int8"))
    fp32, int8 = vectors["fp32"], vectors["int8"]
    expected = SentenceEmbedder(model=tiny_bert, precision="int8").fit(TEXTS).transform(TEXTS[:-1])
    np.testing.assert_allclose(int8, expected, atol=1e-5)
    similarity = cosines(int8, fp32)
    assert similarity.min() > 0.98, similarity


def test_encode_on_the_onnx_backend_gives_the_fp32_vectors(tiny_bert, tmp_path, capsys):
    vectors = encode_each(capsys, tmp_path, tiny_bert, "--backend", ("torch", "onnx"))
    similarity = cosines(vectors["onnx"], vectors["torch"])
    assert similarity.min() > 0.9999, similarity


def test_encode_shows_a_progress_bar_when_asked(tiny_bert, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    code, _, err = skembed(
        capsys, "encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert, "--progress"
    )
    assert code == 0 and f"{len(TEXTS)}/{len(TEXTS)}" in err


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list, str]]:
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    write_lines(tmp_path / "ok.txt", ["a text"])
    pd.DataFrame({"text": ["a", "b"], "label": [1, 2]}).to_csv(tmp_path / "two.csv", index=False)
    (tmp_path / "missing_key.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    (tmp_path / "not_text.jsonl").write_text('{"text": "a"}\n{"text": 3}\n')
    (tmp_path / "broken.jsonl").write_text('{"text": "a"}\n{"text": \n')
    pd.DataFrame({"text": ["a", None, "c"]}).to_parquet(tmp_path / "null.parquet")
    pd.DataFrame({"text": [1, 2]}).to_parquet(tmp_path / "ints.parquet")
    (tmp_path / "short.csv").write_text("a,text\n1,x\n2\n", encoding="utf-8")
    ok, out = tmp_path / "ok.txt", tmp_path / "X.npy"
    return {
        "missing file": (
            [tmp_path / "nope.txt", "-o", out],
            "input file '.*nope.txt' does not exist",
        ),
        "unknown column": (
            [tmp_path / "two.csv", "--column", "body", "-o", out],
            r"two.csv has no column 'body'; its columns are \['text', 'label'\]",
        ),
        "column needed": (
            [tmp_path / "two.csv", "-o", out],
            r"two.csv has columns \['text', 'label'\]; pick the text column with --column",
        ),
        "empty input": ([tmp_path / "empty.txt", "-o", out], "empty.txt holds no texts"),
        "bad output suffix": ([ok, "-o", tmp_path / "X.csv"], "must end in .npy or .parquet"),
        "no output folder": ([ok, "-o", tmp_path / "no" / "X.npy"], "does not exist; create it"),
        "missing key": (
            [tmp_path / "missing_key.jsonl", "--column", "text", "-o", out],
            r"missing_key.jsonl, line 2: no key 'text' \(keys: \['body'\]\)",
        ),
        "not text": (
            [tmp_path / "not_text.jsonl", "--column", "text", "-o", out],
            r"not_text.jsonl, line 2: 'text' is int \(3\), not text",
        ),
        "broken json": ([tmp_path / "broken.jsonl", "-o", out], r"broken.jsonl, line 2: not JSON"),
        "parquet null": (
            [tmp_path / "null.parquet", "-o", out],
            r"null.parquet, row 1: 'text' is missing \(null\), not text; fill or drop it",
        ),
        "parquet ints": ([tmp_path / "ints.parquet", "-o", out], "holds int64, not text"),
        "short csv row": (
            [tmp_path / "short.csv", "--column", "text", "-o", out],
            r"short.csv, line 3: 1 fields, no 'text'",
        ),
        "column on text": ([ok, "--column", "text", "-o", out], "--column applies to CSV"),
        "missing model": ([ok, "-o", out, "--model", tmp_path / "nomodel"], "was not found"),
        "bad pooling": (
            [ok, "-o", out, "--pooling", "avg"],
            r"pooling='avg' is not 'auto' or one of",
        ),
        "bad max length": ([ok, "-o", out, "--max-length", "0"], "'0' must be 1 or more"),
        "missing -o": ([ok], "the following arguments are required: -o/--output"),
        "bad backend": (
            [ok, "-o", out, "--backend", "tensorflow"],
            r"argument --backend: invalid choice: '?tensorflow'? \(choose from '?auto'?, "
            r"'?torch'?, '?onnx'?, '?openvino'?\)",
        ),
        "bad precision": (
            [ok, "-o", out, "--precision", "fp16"],
            r"argument --precision: invalid choice: '?fp16'? \(choose from '?fp32'?, '?bf16'?, "
            r"'?int8'?\)",
        ),
        "bad dtype": (
            [ok, "-o", out, "--dtype", "float64"],
            r"argument --dtype: invalid choice: '?float64'? \(choose from '?float32'?, "
            r"'?float16'?\)",
        ),
        "int8 on torch": (
            [ok, "-o", out, "--backend", "torch", "--precision", "int8"],
            r"precision='int8' runs on ONNX Runtime; use backend='onnx' or 'auto'",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_inputs(Path("/tmp"))))
def test_a_user_mistake_is_one_line_on_stderr_and_exit_status_2(tiny_bert, tmp_path, capsys, case):
    argv, message = _bad_inputs(tmp_path)[case]
    if "--model" not in argv:
        argv = [*argv, "--model", tiny_bert]
    code, out, err = skembed(capsys, "encode", *argv)
    assert code == 2 and out == ""
    assert err.startswith("skembed: error: ") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert not list(tmp_path.glob("X.*")), "no output is left behind"


# -- search ----------------------------------------------------------------------------------


def test_search_prints_the_top_k_with_scores_and_rows(tiny_bert, tmp_path, capsys):
    corpus = write_lines(tmp_path / "corpus.txt", TEXTS)
    code, out, _ = skembed(
        capsys, "search", corpus, "The dog chased the cat", "I love apples", "-k", 2,
        "--model", tiny_bert,
    )  # fmt: skip
    assert code == 0
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    lines = blocks[0].splitlines()
    assert lines[0] == "query: The dog chased the cat"
    assert lines[1] == "  1.0000  [1]  The dog chased the cat"
    assert len(lines) == 3 and blocks[1].splitlines()[1] == "  1.0000  [0]  I love apples"
    from skembed.search import SemanticSearch

    hit = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS).search(["I love apples"], 2)
    assert (
        blocks[1].splitlines()[2]
        == f"  {hit[0][1].score:.4f}  [{hit[0][1].index}]  {hit[0][1].text}"
    )


def test_search_saves_an_index_and_answers_the_same_from_it(tiny_bert, tmp_path, capsys):
    corpus = write_lines(tmp_path / "corpus.txt", TEXTS)
    (tmp_path / "queries.txt").write_text("a dog\nmoney\n", encoding="utf-8")
    argv = ["--queries", tmp_path / "queries.txt", "-k", 3]
    code, first, err = skembed(
        capsys, "search", corpus, *argv, "--model", tiny_bert, "--save-index", tmp_path / "idx"
    )
    assert code == 0 and "saved the index of 10 texts" in err
    code, again, _ = skembed(capsys, "search", tmp_path / "idx", *argv)
    assert code == 0 and again == first and first.count("query: ") == 2


def test_search_with_an_hnsw_index_saves_it_and_answers_as_exact_search(
    tiny_bert, tmp_path, capsys
):
    corpus = write_lines(tmp_path / "corpus.txt", TEXTS)
    argv = ["The dog chased the cat", "money", "-k", 4, "--model", tiny_bert]
    code, exact, _ = skembed(capsys, "search", corpus, *argv)
    assert code == 0
    code, approximate, err = skembed(
        capsys, "search", corpus, *argv, "--index", "hnsw", "--ef-search", 8,
        "--save-index", tmp_path / "idx",
    )  # fmt: skip
    assert code == 0, err
    assert approximate == exact  # ten texts: the graph finds every true neighbour
    meta = json.loads((tmp_path / "idx" / "index.json").read_text(encoding="utf-8"))
    assert (meta["index"], meta["ef_search"]) == ("hnsw", 8)
    code, again, _ = skembed(capsys, "search", tmp_path / "idx", *argv[:4], "--ef-search", 32)
    assert code == 0 and again == exact


def test_search_builds_a_binary_index_from_encode_output_and_opens_it(tiny_bert, tmp_path, capsys):
    corpus = write_lines(tmp_path / "corpus.txt", TEXTS)
    code, _, err = skembed(
        capsys, "encode", corpus, "-o", tmp_path / "vectors.npy", "--model", tiny_bert
    )
    assert code == 0, err
    argv = ["The dog chased the cat", "money", "-k", 3]
    code, from_vectors, err = skembed(
        capsys, "search", corpus, *argv, "--model", tiny_bert, "--index", "binary",
        "--vectors", tmp_path / "vectors.npy", "--rescore-multiplier", 4,
        "--save-index", tmp_path / "idx",
    )  # fmt: skip
    assert code == 0, err
    from skembed.cli.common import flat
    from skembed.search import SemanticSearch

    expected = SemanticSearch(SentenceEmbedder(model=tiny_bert), index="binary").fit(TEXTS)
    hits = expected.set_params(rescore_multiplier=4).search(["money"], 3)[0]
    assert from_vectors.split("\n\n")[1].splitlines()[1:] == [
        f"  {hit.score:.4f}  [{hit.index}]  {flat(hit.text)}" for hit in hits
    ]
    meta = json.loads((tmp_path / "idx" / "index.json").read_text(encoding="utf-8"))
    assert (meta["index"], meta["rescore_multiplier"]) == ("binary", 4)
    code, opened, _ = skembed(capsys, "search", tmp_path / "idx", *argv)
    assert code == 0 and opened == from_vectors


def test_search_long_texts_as_windows_prints_the_matching_characters(tiny_bert, tmp_path, capsys):
    long = " ".join(["the cat sat on the mat"] * 8 + ["my bank card was declined at the shop"])
    corpus = write_lines(tmp_path / "corpus.txt", [long, "hello world"])
    code, out, err = skembed(
        capsys, "search", corpus, "bank card declined", "-k", 1, "--model", tiny_bert,
        "--max-length", 16, "--long-texts", "windows",
    )  # fmt: skip
    assert code == 0, err
    from skembed.search import SemanticSearch

    search = SemanticSearch(
        SentenceEmbedder(model=tiny_bert, max_length=16), long_texts="windows"
    ).fit([long, "hello world"])
    (hit,) = search.search(["bank card declined"], 1)[0]
    assert hit.span is not None
    start, end = hit.span
    assert (
        out.splitlines()[1]
        == f"  {hit.score:.4f}  [{hit.index} chars {start}-{end}]  {hit.passage}"
    )


def test_search_index_mistakes_are_one_line(tiny_bert, tmp_path, capsys, monkeypatch):
    corpus = write_lines(tmp_path / "corpus.txt", TEXTS)
    skembed(capsys, "search", corpus, "a", "--model", tiny_bert, "--save-index", tmp_path / "idx")
    cases = {
        ("--index", "annoy"): r"argument --index: invalid choice: '?annoy'? \(choose from",
        ("--ef-search", 16): (
            "--ef-search applies to --index hnsw and binary_hnsw; this search is exact"
        ),
        ("--index", "hnsw", "--ef-search", 0): "argument --ef-search: '0' must be 1 or more",
    }
    for options, message in cases.items():
        code, out, err = skembed(capsys, "search", corpus, "a", "--model", tiny_bert, *options)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert re.search(message, err), err
    code, _, err = skembed(capsys, "search", tmp_path / "idx", "a", "--index", "hnsw")
    assert code == 2
    assert err == (
        f"skembed: error: the index saved in {str(tmp_path / 'idx')!r} is 'exact'; --index hnsw "
        "applies when the corpus is a file of texts: drop it, or pass the corpus file\n"
    )
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    code, _, err = skembed(capsys, "search", corpus, "a", "--model", tiny_bert, "--index", "hnsw")
    assert code == 2 and err.count("\n") == 1
    assert "needs faiss-cpu, which is not installed: pip install 'skembed[ann]'" in err


def test_search_without_queries_says_how_to_give_them(tiny_bert, tmp_path, capsys):
    corpus = write_lines(tmp_path / "corpus.txt", TEXTS)
    code, _, err = skembed(capsys, "search", corpus, "--model", tiny_bert)
    assert code == 2
    assert (
        err
        == "skembed: error: no queries: give them as arguments or in a file with --queries FILE\n"
    )


# -- similarity, tokenize, info --------------------------------------------------------------


def test_similarity_prints_the_cosine_matrix(tiny_roberta, capsys):
    texts = ["I love apples", "apples are my favourite fruit", "the dog chased the cat"]
    code, out, _ = skembed(capsys, "similarity", *texts, "--model", tiny_roberta)
    assert code == 0
    lines = out.splitlines()
    assert lines[:3] == [f"[{i}] {t}" for i, t in enumerate(texts)]
    assert lines[4].split() == ["[0]", "[1]", "[2]"]
    matrix = np.array([[float(v) for v in line.split()[1:]] for line in lines[5:8]])
    X = SentenceEmbedder(model=tiny_roberta).fit(texts).transform(texts)
    np.testing.assert_allclose(matrix, X @ X.T, atol=6e-4)
    assert matrix.diagonal().tolist() == [1.0, 1.0, 1.0]


def test_similarity_needs_two_texts(tiny_bert, capsys):
    code, _, err = skembed(capsys, "similarity", "alone", "--model", tiny_bert)
    assert code == 2 and "give two or more" in err


def test_tokenize_shows_tokens_ids_and_where_the_text_is_cut(tiny_bert, capsys):
    code, out, _ = skembed(
        capsys, "tokenize", "the dog chased the cat", "--model", tiny_bert, "--max-length", 4
    )
    assert code == 0
    tok = SentenceEmbedder(model=tiny_bert, max_length=4).fit(["x"]).tokenize(["the dog"])[0]
    lines = out.splitlines()
    assert lines[:2] == ["text: 'the dog chased the cat'", "4 tokens (max_length 4)"]
    rows = [line.split() for line in lines[2:] if not line.startswith("  ---")]
    assert [r[2] for r in rows] == ["[CLS]", "the", "dog", "[SEP]"]
    assert [int(r[1]) for r in rows] == tok.ids
    assert lines[5] == (
        "  --- truncated here: 3 of 5 text tokens dropped; the kept text ends at character 7: "
        "...'the dog'"
    )


def test_tokenize_of_a_short_text_has_no_cut(tiny_roberta, capsys):
    code, out, _ = skembed(capsys, "tokenize", "I love apples", "--model", tiny_roberta)
    assert code == 0 and "truncated" not in out and out.splitlines()[2].split()[2] == "<s>"


def test_tokenize_shows_the_prompt_and_lower_casing_and_loads_no_transformers(st_folders, capsys):
    # a folder that lower-cases (an uncased tokenizer) and has prompts; its description cached by
    # an ONNX Runtime run, as on any machine that has embedded with it once
    folder = str(st_folders("bert", "mean_prompts"))
    SentenceEmbedder(model=folder, backend="onnx").fit(["x"]).transform(["x"])
    argv = ["tokenize", "A Dog Chased The Cat", "--model", folder]
    argv += ["--prompt-name", "query", "--max-length", "10"]
    code = (
        "import sys\n"
        "from skembed.cli import main\n"
        f"status = main({argv!r})\n"
        "print(status, [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    *shown, last = result.stdout.splitlines()
    assert last == "0 []", result.stderr
    prompted = SentenceEmbedder(model=folder, prompt_name="query", max_length=10).fit(["x"])
    (expected,) = prompted.tokenize(["A Dog Chased The Cat"])
    rows = [line.split() for line in shown[2:] if not line.startswith("  ---")]
    assert [r[2] for r in rows] == expected.tokens and expected.truncated
    words = expected.tokens[1:-1]  # between [CLS] and [SEP]
    assert words == [t.lower() for t in words]  # lower-cased as the encoder sees them
    plain = SentenceEmbedder(model=folder, prompt="").fit(["x"])
    prompt = plain.tokenize([prompted.prompt_])[0].tokens[1:-1]
    assert expected.tokens[1 : 1 + len(prompt)] == prompt  # the query prompt comes first
    (cut,) = [line for line in shown if line.startswith("  ---")]
    assert "text tokens dropped; the kept text ends at character" in cut


def test_info_describes_the_model(tiny_bert, capsys):
    code, out, _ = skembed(capsys, "info", "--model", tiny_bert, "--device", "cpu")
    assert code == 0
    fields = {k.strip(): v.strip() for k, v in (line.split("  ", 1) for line in out.splitlines())}
    assert fields["dimension"] == "32" and fields["max length"] == "64 tokens"
    assert fields["fingerprint"] == f"sha256 {_models.fingerprint(Path(tiny_bert))}"
    assert fields["device"] == "cpu" and fields["folder"] == str(Path(tiny_bert).resolve())


def test_an_unknown_option_or_command_is_one_line(capsys):
    code, _, err = skembed(capsys, "info", "--colour")
    assert code == 2 and err == (
        "skembed: error: unrecognized arguments: --colour (see 'skembed --help')\n"
    )
    code, _, err = skembed(capsys, "encdoe")
    assert code == 2 and "invalid choice: 'encdoe'" in err and err.count("\n") == 1


def test_no_command_prints_the_help_and_fails(capsys):
    code, out, err = skembed(capsys)
    assert code == 2 and out == "" and "encode" in err and err.startswith("usage: skembed")


def test_version_prints_the_package_version(capsys):
    from skembed import __version__

    code, out, _ = skembed(capsys, "--version")
    assert code == 0 and out == f"skembed {__version__}\n"


def test_blank_lines_of_a_jsonl_file_are_skipped(tiny_bert, tmp_path, capsys):
    records = [{"text": t, "n": i} for i, t in enumerate(TEXTS)]
    (tmp_path / "in.jsonl").write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8"
    )
    code, _, _ = skembed(
        capsys, "encode", tmp_path / "in.jsonl", "--column", "text", "-o", tmp_path / "X.npy",
        "--model", tiny_bert,
    )  # fmt: skip
    assert code == 0 and np.load(tmp_path / "X.npy").shape == (len(TEXTS), 32)


def test_eval_sts_prints_metrics_and_writes_json(tiny_bert, tmp_path, capsys):
    from skembed import evaluate

    rows = [
        ("5.0", "I love apples", "I love apples"),
        ("0.5", "the dog chased the cat", "my card was declined"),
        ("3.0", "hello world", "hello you"),
        ("1.0", "the sky is blue", "how do I transfer money"),
    ]
    data = tmp_path / "sts.csv"
    data.write_text("".join(f"g\tf\ty\t{i}\t{s}\t{a}\t{b}\n" for i, (s, a, b) in enumerate(rows)))
    out = tmp_path / "metrics.json"
    argv = ["eval", "sts", "--data", str(data), "--model", tiny_bert, "--json", str(out)]
    assert main(argv) == 0
    expected = evaluate.sts(SentenceEmbedder(model=tiny_bert), str(data))
    printed = capsys.readouterr().out
    assert f"spearman  {expected['spearman']:.4f}" in printed
    record = json.loads(out.read_text())
    assert record["task"] == "sts"
    assert record["metrics"]["spearman"] == pytest.approx(expected["spearman"], abs=1e-6)


def test_eval_with_a_missing_data_path_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["eval", "sts", "--data", str(tmp_path / "nope.csv")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"skembed: error: --data {str(tmp_path / 'nope.csv')!r} does not exist"


# -- encode --static -------------------------------------------------------------------------


def static_vectors(model: str, texts: list[str]) -> np.ndarray:
    from skembed import StaticEmbedder

    return StaticEmbedder(model=model, dims=16).fit(texts).transform(texts)


def encode_static(capsys, tmp_path, model: str, output: str, chunk_size: int):
    """Run ``skembed encode --static --dims 16`` on TEXTS; return (code, stdout, stderr)."""
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    return skembed(
        capsys, "encode", source, "-o", tmp_path / output, "--model", model,
        "--static", "--dims", 16, "--chunk-size", chunk_size,
    )  # fmt: skip


def test_encode_static_writes_the_static_embedders_vectors(tiny_model, tmp_path, capsys):
    code, out, err = encode_static(capsys, tmp_path, tiny_model, "X.npy", 3)
    assert code == 0 and out == ""
    assert err.endswith(f"wrote {len(TEXTS)} vectors of 16 float32 to {tmp_path / 'X.npy'}\n")
    X = np.load(tmp_path / "X.npy")
    assert X.dtype == np.float32 and X.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(X, static_vectors(tiny_model, TEXTS), atol=1e-6)


def test_encode_static_to_parquet_keeps_texts_and_vectors(tiny_bert, tmp_path, capsys):
    code, _, err = encode_static(capsys, tmp_path, tiny_bert, "X.parquet", 4)
    assert code == 0, err
    table = pq.read_table(tmp_path / "X.parquet")
    assert table.column("text").to_pylist() == TEXTS
    X = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(X, static_vectors(tiny_bert, TEXTS), atol=1e-6)


def test_encode_static_resumes_an_interrupted_run(tiny_bert, tmp_path, capsys, monkeypatch):
    from skembed import StaticEmbedder

    texts = [f"{text} {i}" for i in range(4) for text in TEXTS]
    source = write_lines(tmp_path / "texts.txt", texts)
    argv = ["encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert, "--static"]
    argv += ["--dims", 16, "--chunk-size", 5, "--resume"]
    transform, calls = StaticEmbedder.transform, []

    def interrupted_at_the_third_chunk(self, X):
        calls.append(len(X))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return transform(self, X)

    monkeypatch.setattr(StaticEmbedder, "transform", interrupted_at_the_third_chunk)
    assert skembed(capsys, *argv)[0] == 130
    monkeypatch.setattr(StaticEmbedder, "transform", transform)
    code, _, err = skembed(capsys, *argv, "--progress")  # a progress bar is no new setting
    assert code == 0, err
    assert f"wrote {len(texts)} vectors of 16 float32" in err and "(10 of them by the" in err
    X = np.load(tmp_path / "X.npy")
    np.testing.assert_allclose(X, static_vectors(tiny_bert, texts), atol=1e-6)


def test_encode_static_in_a_subprocess_runs_no_encoder_once_the_table_is_cached(
    tiny_roberta, tmp_path
):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    expected = static_vectors(tiny_roberta, TEXTS)  # distils into this run's SKEMBED_HOME
    argv = ["encode", str(source), "-o", str(tmp_path / "X.npy"), "--model", tiny_roberta]
    code = (
        "import sys\n"
        "from skembed.cli import main\n"
        f"status = main({[*argv, '--static', '--dims', '16']!r})\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'transformers') if m in sys.modules]\n"
        "print(status, heavy)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.stdout == "0 []\n", result.stderr
    assert "built the static table" not in result.stderr  # read from the cache
    np.testing.assert_allclose(np.load(tmp_path / "X.npy"), expected, atol=1e-6)


@pytest.mark.parametrize(
    "option",
    [
        ["--pooling", "mean"],
        ["--max-length", "8"],
        ["--batch-size", "4"],
        ["--backend", "onnx"],
        ["--precision", "int8"],
        ["--prompt", "query: "],
        ["--truncate-dim", "8"],
        ["--device", "cpu"],
    ],
    ids=lambda option: option[0],
)
def test_encode_static_refuses_the_encoders_options_naming_them(
    tiny_bert, tmp_path, capsys, option
):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    argv = ["encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert, "--static"]
    code, out, err = skembed(capsys, *argv, *option)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith(f"skembed: error: {option[0]} configures the encoder, which --static")
    assert f"Drop {option[0]}, or drop --static" in err
    assert not list(tmp_path.glob("X.*"))


def test_encode_dims_without_static_says_to_add_it(tiny_bert, tmp_path, capsys):
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    argv = ["encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert, "--dims", "16"]
    code, _, err = skembed(capsys, *argv)
    assert code == 2
    assert err == (
        "skembed: error: --dims applies to --static (the dimensions of its distilled table): "
        "add --static, or use --truncate-dim K to shorten the encoder's vectors\n"
    )


def test_encode_static_says_when_it_built_the_table_and_reads_it_next_time(
    tiny_bert, tmp_path, capsys, monkeypatch
):
    from skembed import _distil

    monkeypatch.setattr(_distil, "folder", lambda: tmp_path / "static")
    source = write_lines(tmp_path / "texts.txt", TEXTS)
    argv = ["encode", source, "-o", tmp_path / "X.npy", "--model", tiny_bert, "--static"]
    first = skembed(capsys, *argv, "--dims", 16)[2]
    assert re.match(rf"skembed: built the static table of {re.escape(tiny_bert)} in \d", first)
    assert f"(cached in {tmp_path / 'static'}" in first
    clear_cache()  # as in a new process: only the disk is left
    again = skembed(capsys, *argv, "--dims", 16)[2]
    assert again.startswith("skembed: wrote") and "built" not in again
