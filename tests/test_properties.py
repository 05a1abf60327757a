"""Property-based tests: every text gets a vector or a clear error, whatever the text.

Generated lists mix arbitrary Unicode (NUL and control characters, zero-width and combining
characters, right-to-left text, emoji ZWJ sequences, whitespace only, empty and long strings)
with invalid items (None, NaN, bytes, numbers, lone surrogates). Each property runs on both
tiny models with both backends. A full run of this file generates about 13,000 texts
(``pytest -s`` prints the count).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skembed import SentenceEmbedder

pytest.importorskip("onnxruntime")

SETTINGS = settings(
    deadline=None,
    database=None,  # no .hypothesis/ folder in the working tree
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # the estimators are module-wide on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
# examples per estimator (2 models x 2 backends); with lists of about 10 texts each, a full
# run generates about 13,000 texts (25 s on a 2-core machine)
ROWS_EXAMPLES = 200
BATCH_EXAMPLES = 80
INVALID_EXAMPLES = 200

TRICKY = [
    "",
    " ",
    "   \t\n\r  ",
    "\u3000\xa0\u2003",  # ideographic, no-break and em spaces
    "\x00",
    "a\x00b",
    "\x07\x1b[31mred\x1b[0m\x7f",
    "\u200b",  # zero-width space
    "\u200b\u200c\u200d\ufeff",  # zero-width (non-)joiners, byte-order mark
    "e\u0301",  # combining acute
    "\u0301\u0301\u0301",  # combining marks alone
    "Z\u0351\u0364\u036b\u0300a\u0360\u0353l\u0357g\u0346o",  # "zalgo"
    "مرحبا بالعالم",  # Arabic, right-to-left
    "שלום עולם",  # Hebrew
    "\u202eevil\u202c",  # right-to-left override
    "👩\u200d👩\u200d👧\u200d👦",  # emoji ZWJ family
    "🏳\ufe0f\u200d🌈",
    "👍🏽",  # skin tone modifier
    "日本語のテキスト",
    "한국어",
    "I love apples",
    "The dog chased the cat",
    "𝕳𝖊𝖑𝖑𝖔",  # mathematical letters (astral plane)
]

valid_text = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=40),  # any code point but lone surrogates
    st.lists(st.sampled_from(TRICKY), max_size=6).map(" ".join),
    st.lists(st.sampled_from(TRICKY), max_size=6).map("".join),
    # long strings: past the model's 64 tokens, and past the 2,048 characters from which
    # only a prefix is tokenized
    st.builds(
        lambda piece, n: piece * n, st.sampled_from(TRICKY[4:] + ["word "]), st.integers(50, 700)
    ),
)
text_lists = st.lists(valid_text, min_size=1, max_size=20)

lone_surrogate = st.builds(
    lambda head, code, tail: head + chr(code) + tail,
    st.text(max_size=5),
    st.integers(0xD800, 0xDFFF),
    st.text(max_size=5),
)
invalid_item = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.just(np.float64("nan")),
    st.binary(max_size=8),
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    lone_surrogate,
)

GENERATED = {"texts": 0}


@pytest.fixture(scope="module", autouse=True)
def _count_generated():
    yield
    print(f"\ntest_properties generated {GENERATED['texts']:,} texts")


@pytest.fixture(
    scope="module",
    params=[("bert", "torch"), ("bert", "onnx"), ("roberta", "torch"), ("roberta", "onnx")],
    ids=lambda p: "-".join(p),
)
def embedder(request):
    """A fitted estimator per model and backend, shared by all examples (cache off)."""
    model, backend = request.param
    path = request.getfixturevalue(f"tiny_{model}")
    return SentenceEmbedder(model=path, backend=backend, cache=False).fit(["warm up"])


def transform(embedder, texts: list) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # truncation warnings of the long generated texts
        return embedder.transform(texts)


@settings(SETTINGS, max_examples=ROWS_EXAMPLES)
@given(texts=text_lists)
def test_each_text_gets_one_finite_unit_row_in_order(embedder, texts):
    GENERATED["texts"] += len(texts)
    X = transform(embedder, texts)
    assert X.shape == (len(texts), embedder.embedding_dim_) and X.dtype == np.float32
    assert np.isfinite(X).all()
    # encoding.finish zeroes exactly the rows of texts with no tokens at all (special
    # tokens count: with these models every text, even "", has [CLS]/<s> and [SEP]/</s>)
    no_tokens = np.array([not tok.ids for tok in embedder.tokenize(texts)])
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), np.where(no_tokens, 0.0, 1.0), atol=1e-5)
    # in order: each row is its own text's, whatever else is in the call
    first, last = transform(embedder, [texts[0]]), transform(embedder, [texts[-1]])
    np.testing.assert_allclose(X[[0, -1]], np.vstack([first, last]), atol=1e-5)


@settings(SETTINGS, max_examples=BATCH_EXAMPLES)
@given(texts=text_lists, others=text_lists, data=st.data())
def test_a_text_gets_the_same_vector_whatever_batch_it_is_in(embedder, texts, others, data):
    GENERATED["texts"] += len(texts) + len(others)
    order = data.draw(st.permutations(range(len(texts))))
    alone = transform(embedder, texts)
    mixed = transform(embedder, others + [texts[i] for i in order])
    np.testing.assert_allclose(mixed[len(others) :], alone[order], atol=1e-5)


def is_bad(item: object) -> bool:
    if not isinstance(item, str):
        return True
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@settings(SETTINGS, max_examples=INVALID_EXAMPLES)
@given(
    items=st.lists(st.one_of(valid_text, invalid_item), min_size=1, max_size=12).filter(
        lambda items: any(map(is_bad, items))
    )
)
def test_an_invalid_item_raises_an_error_naming_the_first_bad_index(embedder, items):
    GENERATED["texts"] += len(items)
    first = next(i for i, item in enumerate(items) if is_bad(item))
    expected = ValueError if isinstance(items[first], str) else TypeError
    with pytest.raises(expected) as info:
        embedder.transform(items)
    assert str(info.value).startswith(f"X[{first}] ")
    assert "lone surrogate" in str(info.value) or "SentenceEmbedder takes strings" in str(
        info.value
    )
