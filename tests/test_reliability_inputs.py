"""Every text gets a vector or a clear error: lone surrogates, very long texts, damaged caches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import skembed
from skembed import SentenceEmbedder, _cache, _tokens
from skembed._input import check_texts
from skembed._persistence import loaded_model
from skembed._pooling import STATISTICS

FIX = 'repair the text first, e.g. text.encode("utf-8", "replace").decode("utf-8")'


def surrogate_message(where: str, code: str, at: int) -> str:
    return (
        f"{where} has a lone surrogate (U+{code}) at character {at}, which is not valid "
        f"Unicode and cannot be tokenized; {FIX}"
    )


# -- lone surrogates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (["ok", "ok\ud800bad"], surrogate_message("X[1]", "D800", 2)),
        (["\udcff"], surrogate_message("X[0]", "DCFF", 0)),
        (["café", "日本", "é\udc80"], surrogate_message("X[2]", "DC80", 1)),
        (np.array(["a", "b\udfff"], dtype=object), surrogate_message("X[1]", "DFFF", 1)),
        # a surrogate before a None: the surrogate is the first bad item
        (["x\ud83d", None], surrogate_message("X[0]", "D83D", 1)),
    ],
    ids=["high", "low-alone", "after-non-ascii", "numpy-object", "before-none"],
)
def test_lone_surrogate_names_the_item_the_character_and_the_fix(X, message):
    with pytest.raises(ValueError) as info:
        check_texts(X)
    assert str(info.value) == message


def test_none_before_a_surrogate_is_the_first_bad_item():
    with pytest.raises(TypeError, match=r"^X\[1\] is NoneType"):
        check_texts(["a", None, "b\ud800"])


def test_valid_surrogate_pairs_and_astral_characters_are_accepted():
    texts = [
        "emoji 👩\u200d👩\u200d👧",
        "\U0001f600",
        "a\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16"),
    ]
    assert check_texts(texts) == texts


def test_transform_refuses_a_lone_surrogate_with_the_index(tiny_model):
    embedder = SentenceEmbedder(model=tiny_model).fit(["x"])
    with pytest.raises(ValueError) as info:
        embedder.transform(["ok", "ok\ud800bad"])
    assert str(info.value) == surrogate_message("X[1]", "D800", 2)


def test_transform_iter_names_the_index_in_the_whole_iterable(tiny_bert):
    embedder = SentenceEmbedder(model=tiny_bert).fit(["x"])
    texts = (f"text {i}" if i != 7 else "bad \udc80 text" for i in range(10))
    chunks = embedder.transform_iter(texts, chunk_size=3)
    assert next(chunks).shape == (3, embedder.embedding_dim_)
    assert next(chunks).shape == (3, embedder.embedding_dim_)
    with pytest.raises(ValueError) as info:
        next(chunks)
    assert str(info.value) == surrogate_message("X[7]", "DC80", 4)


# -- long texts: a prefix is tokenized, with exactly the whole text's ids and flag ------------

# pieces that make cuts awkward: multi-byte and astral characters, an emoji ZWJ sequence,
# CJK without spaces, combining accents, upper case that BERT lower-cases, punctuation,
# control characters, long words, runs of mixed whitespace
PIECES = [
    "word",
    "héllo",
    "ÉTÉ",
    "日本語のテキスト",
    "👩\u200d👩\u200d👧",
    "😀😀😀",
    "e\u0301\u0301",
    "\u0301",
    "transfer,money.",
    "it's",
    "a" * 150,
    "x\x00y\x07z",
    "مرحبا",
    "\u200bzero\u200dwidth",
]
SEPARATORS = [" ", "  ", "\n", "\t", " \n ", "", "\u3000", "\xa0"]


def awkward_text(seed: int, n_chars: int) -> str:
    rng = np.random.default_rng(seed)
    parts, total = [], 0
    while total < n_chars:
        part = PIECES[rng.integers(len(PIECES))] + SEPARATORS[rng.integers(len(SEPARATORS))]
        parts.append(part)
        total += len(part)
    return "".join(parts)


def straddling(piece: str, at: int, shift: int, filler: str) -> str:
    """Return filler up to `shift` characters before `at`, then piece, then words."""
    head = (filler * (at // len(filler) + 1))[: at - shift]
    return head + piece + " dog" * 1500


CUT = _tokens.PREFIX_MIN_CHARS  # where the first prefix of a text ends, for small max_length
# fillers without tokens (for BERT: spaces, control characters) bring the kept tokens up to
# the cut, so that a wrong cut would change them
STRADDLING = [
    straddling(piece, at, shift, filler)
    for piece in ["a" * 300, "é日👩\u200d👩\u200d👧" * 40, "日本語" * 200, "transfer", "  \n\t  "]
    for shift in (0, 1, 2, 3, 5, 150)
    for at, filler in [(CUT, "the cat "), (CUT, " "), (2 * CUT, "\x07 "), (4 * CUT, "\n")]
]
SPECIAL = {
    "no-whitespace": "x" * 5000,
    "no-whitespace-cjk": "日本語のテキスト" * 700,
    "only-other-spaces": "word\u3000" * 1500,
    "whitespace-then-words": " " * 5000 + "the cat " * 500,
    "words-then-no-spaces": "the cat " * 100 + "y" * 5000,
    "one-word-per-cut": ("z" * 1023 + " ") * 6,
    "emoji-only": "👩\u200d👩\u200d👧 " * 1000,
    "combining-after-space": "e \u0301" * 2000,
}
TEXTS = STRADDLING + list(SPECIAL.values()) + [awkward_text(seed, 7000) for seed in range(12)]


def whole_text_tokenization(loaded, text: str, max_length: int) -> tuple[list[int], bool]:
    (whole,) = _tokens.encode_batch(loaded, [text], max_length)
    return whole.ids, bool(whole.overflowing)


@pytest.mark.parametrize("max_length", [4, 16, 62, 300])
def test_long_texts_get_the_whole_texts_ids_and_truncation_flag(tiny_model, max_length):
    loaded = loaded_model(SentenceEmbedder(model=tiny_model).fit(["x"]))
    got = _tokens.tokenize(loaded, TEXTS, max_length)
    for i, text in enumerate(TEXTS):
        ids, truncated = whole_text_tokenization(loaded, text, max_length)
        assert (got.ids[i].tolist(), bool(got.truncated[i])) == (ids, truncated), i


def test_a_long_text_that_fits_is_not_flagged(tiny_bert):
    loaded = loaded_model(SentenceEmbedder(model=tiny_bert).fit(["x"]))
    text = " " * 5000 + "the cat chased the dog" + "\n" * 5000
    got = _tokens.tokenize(loaded, [text], 62)
    assert (got.ids[0].tolist(), bool(got.truncated[0])) == whole_text_tokenization(
        loaded, text, 62
    )
    assert not got.truncated[0]


def test_a_left_truncating_model_keeps_the_end_of_a_long_text(tiny_bert):
    loaded = loaded_model(SentenceEmbedder(model=tiny_bert).fit(["x"]))
    left = dataclasses.replace(loaded, truncation_side="left")
    text = "the cat " * 1000 + "hello world"
    got = _tokens.tokenize(left, [text], 6)
    assert left.tokenizer.decode(got.ids[0].tolist()) == "the cat hello world"
    assert got.truncated[0]


def test_ten_megabytes_of_words_are_read_from_a_prefix(tiny_model):
    loaded = loaded_model(SentenceEmbedder(model=tiny_model).fit(["x"]))
    big = "word " * 2_000_000
    size = _tokens.PREFIX_CHARS_PER_TOKEN * 256
    cut = _tokens.prefix_cut(big, size)
    (head,) = _tokens.encode_batch(loaded, [big[:cut]], 256)
    assert (size, cut) == (2048, 2044)  # the end of the last whole word within 2,048
    assert _tokens.prefix_is_enough(head, big, cut)


def test_embedding_a_ten_megabyte_text_gives_the_prefix_vector_and_one_warning(tiny_bert):
    embedder = SentenceEmbedder(model=tiny_bert).fit(["x"])
    big = "word " * 2_000_000
    with pytest.warns(UserWarning, match="^1 of 1 texts were longer than 64 tokens"):
        X = embedder.transform([big])
    # "word" is 4 WordPiece tokens: 100 of them are truncated to the same 64 tokens
    with pytest.warns(UserWarning, match="^1 of 1 texts were longer than 64 tokens"):
        short = embedder.transform(["word " * 100])
    np.testing.assert_array_equal(X, short)


# -- damaged files in cache_dir are never served ---------------------------------------------

CACHED = ["I love apples", "The dog chased the cat", "hello world", "my card was declined"]


def damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"not a numpy file at all")
    elif how == "2-d":
        np.save(path, np.zeros((3, 5), dtype=np.float32))
    elif how == "nan":
        entry = np.load(path)
        entry[0] = np.nan
        np.save(path, entry)


def cached_files(embedder, cache_dir: Path) -> list[Path]:
    (folder,) = [p for p in cache_dir.iterdir() if p.is_dir()]
    disk = _cache.DiskCache(cache_dir, folder.name)
    return [disk.path_of(text) for text in CACHED]


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "2-d", "nan"])
def test_a_damaged_cache_file_is_ignored_with_a_warning_recomputed_and_rewritten(
    tiny_bert, tmp_path, monkeypatch, how
):
    embedder = SentenceEmbedder(model=tiny_bert, cache_dir=tmp_path).fit(["x"])
    expected = embedder.transform(CACHED)
    files = cached_files(embedder, tmp_path)
    good = np.load(files[1])
    damage(files[1], how)
    skembed.clear_cache()  # the process cache would answer before the disk
    log = tmp_path / "encoder.log"
    monkeypatch.setenv("SKEMBED_ENCODER_LOG", str(log))
    with pytest.warns(_cache.DamagedCacheWarning) as record:
        X = embedder.transform(CACHED)
    assert len(record) == 1
    assert str(record[0].message).startswith(f"skembed cache file {files[1]} is damaged (")
    assert str(record[0].message).endswith(
        "); it was ignored and deleted, and the text is encoded again"
    )
    np.testing.assert_allclose(X, expected, atol=1e-6)
    assert len(log.read_text().splitlines()) == 1  # only the damaged text was encoded
    np.testing.assert_array_equal(np.load(files[1]), good)  # and its file written anew


def test_an_entry_of_the_wrong_width_is_not_served(tiny_bert, tmp_path):
    embedder = SentenceEmbedder(model=tiny_bert, cache_dir=tmp_path).fit(["x"])
    embedder.transform(CACHED)
    files = cached_files(embedder, tmp_path)
    width = embedder.n_layers_ * len(STATISTICS) * embedder.embedding_dim_ + 1
    np.save(files[2], np.ones(width - 1, dtype=np.float32))  # a model with another dim
    disk = _cache.DiskCache(tmp_path, files[2].parent.parent.name, entry_width=width)
    with pytest.warns(_cache.DamagedCacheWarning, match=rf"\(shape \({width - 1},\) instead of"):
        assert disk.get(CACHED[2]) is None
    assert not files[2].exists()
    assert disk.get(CACHED[3]).shape == (width,)  # sound files are served
