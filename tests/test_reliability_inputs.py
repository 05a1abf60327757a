"""Every text gets a vector or a clear error: lone surrogates, very long texts."""

from __future__ import annotations

import numpy as np
import pytest

from skembed import SentenceEmbedder
from skembed._input import check_texts

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
