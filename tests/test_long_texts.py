"""Long texts as windows (SentenceEmbedder(long_texts="windows"), transform_windows): every
token of a long text is embedded, texts that fit keep their vectors bit for bit, and a long
text's vector is checked against windows cut and encoded by transformers itself."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone

from skembed import SentenceEmbedder, _windows
from skembed._persistence import loaded_model

SHORT = ["I love apples", "The dog chased the cat", "", "hello world"]
WORDS = "the cat chased a red dog in the park and my bank card was declined at the shop".split()


def long_text(n_words: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    spaces = [" ", " ", " ", "  ", "\n", "\t "]
    return "".join(f"{rng.choice(WORDS)}{rng.choice(spaces)}" for _ in range(n_words)).strip()


LONG = [long_text(120, seed) for seed in range(3)]


def test_texts_that_fit_get_exactly_the_truncating_vectors(tiny_model):
    truncating = SentenceEmbedder(model=tiny_model).fit(SHORT)
    windowed = SentenceEmbedder(model=tiny_model, long_texts="windows").fit(SHORT)
    np.testing.assert_array_equal(windowed.transform(SHORT), truncating.transform(SHORT))
    mixed = windowed.transform(SHORT + LONG)
    np.testing.assert_array_equal(mixed[: len(SHORT)], truncating.transform(SHORT))


def test_a_long_text_is_its_first_and_mean_window_as_transformers_cuts_and_encodes(tiny_model):
    # the reference: the tokenizer and encoder of transformers, windows cut by hand
    import torch
    from transformers import AutoModel, AutoTokenizer

    est = SentenceEmbedder(model=tiny_model, long_texts="windows", backend="torch").fit(SHORT)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model, trust_remote_code=False)
    encoder = AutoModel.from_pretrained(tiny_model, trust_remote_code=False).eval()
    content, overlap = est.max_length_ - 2, est.window_overlap_
    assert overlap == content // 4
    for text, ours in zip(LONG, est.transform(LONG), strict=True):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        starts = list(range(0, len(ids) - content, content - overlap)) + [len(ids) - content]
        vectors = []
        for start in starts:
            window = [tokenizer.cls_token_id, *ids[start : start + content], tokenizer.sep_token_id]
            with torch.no_grad():
                states = encoder(input_ids=torch.tensor([window])).last_hidden_state[0]
            vectors.append(torch.nn.functional.normalize(states.mean(0), dim=0).numpy())
        expected = 0.3 * vectors[0] + 0.7 * np.mean(vectors, axis=0)  # first, and all
        expected /= np.linalg.norm(expected)
        assert len(starts) > 2
        np.testing.assert_allclose(ours, expected, atol=2e-6)


def test_windows_cover_the_whole_text_in_overlapping_steps(tiny_model):
    est = SentenceEmbedder(model=tiny_model, max_length=20, window_overlap=6).fit(SHORT)
    loaded = loaded_model(est)
    cut = _windows.layout(loaded, 20, 6, "")
    assert (cut.content, cut.stride) == (18, 12)
    windows = list(_windows.windows(loaded, LONG[0], cut))
    own = [w.ids[1:-1] for w in windows]
    assert all(len(w.ids) == 20 for w in windows)
    for before, after in zip(own[:-2], own[1:-1], strict=True):
        np.testing.assert_array_equal(before[12:], after[:6])  # 6 tokens shared
    assert windows[0].start == 0 and windows[-1].end == len(LONG[0].rstrip())
    (whole,) = _windows.plain_encodings(loaded, [LONG[0].lower()])
    np.testing.assert_array_equal(own[-1], whole.ids[-18:])  # the last ends with the text
    # the first window is the truncated text, token for token
    (first,) = est.tokenize([LONG[0]])
    assert windows[0].ids.tolist() == first.ids


def test_a_text_read_in_small_pieces_gives_the_same_windows(tiny_model, monkeypatch):
    est = SentenceEmbedder(model=tiny_model).fit(SHORT)
    loaded = loaded_model(est)
    cut = _windows.layout(loaded, 64, 31, "")
    text = long_text(3000, seed=7)
    whole = list(_windows.windows(loaded, text, cut))
    monkeypatch.setattr(_windows, "PIECE_CHARS", 97)  # pieces of about 20 words
    pieces = list(_windows.windows(loaded, text, cut))
    assert len(pieces) == len(whole) > 50
    for a, b in zip(whole, pieces, strict=True):
        assert (a.start, a.end) == (b.start, b.end)
        np.testing.assert_array_equal(a.ids, b.ids)


def test_transform_windows_gives_each_window_its_text_and_characters(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, max_length=16, window_overlap=4).fit(SHORT)
    windows = est.transform_windows(SHORT + LONG[:1])
    assert windows.vectors.shape == (len(windows.text), 32)
    np.testing.assert_array_equal(np.unique(windows.text), np.arange(len(SHORT) + 1))
    np.testing.assert_array_equal(windows.vectors[: len(SHORT)], est.transform(SHORT))
    assert windows.spans[: len(SHORT)].tolist() == [[0, len(t)] for t in SHORT]
    long_rows = windows.text == len(SHORT)
    spans = windows.spans[long_rows]
    assert spans[0, 0] == 0 and (np.diff(spans[:, 0]) > 0).all()
    loaded = loaded_model(est)
    cut = _windows.layout(loaded, 16, 4, "")
    assert spans.tolist() == [[w.start, w.end] for w in _windows.windows(loaded, LONG[0], cut)]
    np.testing.assert_allclose(np.linalg.norm(windows.vectors, axis=1), 1.0, atol=1e-6)


def test_windows_are_cached_by_their_tokens_and_shared_by_a_grid_of_poolings(
    tiny_bert, tmp_path, monkeypatch
):
    log = tmp_path / "encoder.log"
    monkeypatch.setenv("SKEMBED_ENCODER_LOG", str(log))
    est = SentenceEmbedder(model=tiny_bert, long_texts="windows", backend="onnx").fit(SHORT)
    first = est.transform(LONG)
    encoded = len(log.read_text().splitlines())
    for pooling in ("max", "cls", "mean"):
        clone(est).set_params(pooling=pooling).fit(SHORT).transform(LONG)
    assert len(log.read_text().splitlines()) == encoded  # every window came from the cache
    np.testing.assert_array_equal(est.transform(LONG), first)
    different = clone(est).set_params(window_overlap=5).fit(SHORT).transform(LONG)
    assert len(log.read_text().splitlines()) > encoded  # other windows: encoded
    assert not np.array_equal(different, first)


def test_long_texts_and_window_overlap_survive_a_pickle(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, long_texts="windows", window_overlap=9).fit(SHORT)
    again = pickle.loads(pickle.dumps(est))
    assert (again.long_texts, again.window_overlap_) == ("windows", 9)
    np.testing.assert_array_equal(again.transform(LONG), est.transform(LONG))


def test_transform_iter_windows_long_texts_too(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, long_texts="windows").fit(SHORT)
    streamed = np.concatenate(list(est.transform_iter(iter(LONG + SHORT), chunk_size=2)))
    np.testing.assert_array_equal(streamed, est.transform(LONG + SHORT))


def test_windows_take_no_truncation_warning_and_truncation_points_to_them(tiny_bert):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SentenceEmbedder(model=tiny_bert, long_texts="windows").fit(SHORT).transform(LONG)
    with pytest.warns(UserWarning) as caught:
        SentenceEmbedder(model=tiny_bert).fit(SHORT).transform(LONG)
    assert str(caught[0].message) == (
        "3 of 3 texts were longer than 64 tokens and were truncated; "
        "long_texts='windows' embeds all of each text"
    )


@pytest.mark.parametrize(
    "params, error, message",
    [
        ({"long_texts": "chunks"}, ValueError, "long_texts='chunks' is not one of"),
        ({"window_overlap": -1}, ValueError, "window_overlap=-1 must be None or an int >= 0"),
        ({"window_overlap": 2.5}, ValueError, "window_overlap=2.5 must be None or an int >= 0"),
        (
            {"window_overlap": 62},
            ValueError,
            "window_overlap=62 must be from 0 to 61: a window holds 62 of the text's own "
            "tokens (window_length=64 less 2 special and prompt tokens)",
        ),
        (
            {"max_length": 100, "long_texts": "windows"},
            ValueError,
            "max_length=100 is more than the model",
        ),
        (
            {"window_length": 65, "long_texts": "windows"},
            ValueError,
            "window_length=65 is more than the model in",
        ),
        ({"window_length": 0}, ValueError, "window_length=0 must be None or a positive int"),
        (
            {"window_length": 2},
            ValueError,
            "window_length=2 leaves no room for a text's own tokens in a window (2 special "
            "tokens and 0 of the prompt)",
        ),
    ],
)
def test_bad_window_settings_are_refused_naming_the_parameter(tiny_bert, params, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SentenceEmbedder(model=tiny_bert, **params).fit(SHORT)


def test_a_ten_megabyte_text_embeds_in_windows_in_bounded_memory(tiny_bert):
    # a fresh process each: its peak memory with a 1 MB text and with a 10 MB one
    code = """
import resource, sys
from skembed import SentenceEmbedder
est = SentenceEmbedder(model=sys.argv[1], long_texts="windows", pooling="static_mean",
                       window_overlap=0).fit(["x"])
X = est.transform(["the red dog " * int(sys.argv[2])])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, X.shape, float((X ** 2).sum()))
"""
    peaks = {}
    for words in (80_000, 800_000):  # about 1 MB and 10 MB of text
        run = subprocess.run(
            [sys.executable, "-c", code, tiny_bert, str(words)],
            capture_output=True,
            text=True,
            check=True,
        )
        peak, *rest = run.stdout.split(maxsplit=1)
        peaks[words] = int(peak) / 1024
        assert rest[0].startswith("(1, 32)")
    # the text itself (10 MB, then lower-cased) is the growth; nothing in proportion to
    # its 2.4 million tokens (which as the tokenizer's objects alone would be hundreds of MB)
    assert peaks[800_000] - peaks[80_000] < 60, peaks


def test_windows_shorter_than_max_length_cut_texts_longer_than_a_window(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, long_texts="windows", window_length=16).fit(SHORT)
    assert (est.max_length_, est.window_length_, est.window_overlap_) == (64, 16, 3)
    medium = " ".join(WORDS[:10])  # more than 16 tokens, fewer than 64
    windows = est.transform_windows([medium, "red dog"])
    assert windows.text.tolist().count(0) > 1 and windows.text.tolist().count(1) == 1
    assert all(len(w) <= 16 for w in _window_ids(est, medium))
    truncating = SentenceEmbedder(model=tiny_bert).fit(SHORT)
    np.testing.assert_array_equal(est.transform(["red dog"]), truncating.transform(["red dog"]))
    assert not np.allclose(est.transform([medium]), truncating.transform([medium]))


def _window_ids(est, text):
    loaded = loaded_model(est)
    cut = _windows.layout(loaded, est.window_length_, est.window_overlap_, "")
    return [w.ids for w in _windows.windows(loaded, text, cut)]


def test_pair_features_embed_long_texts_as_windows(tiny_bert):
    from skembed import PairFeatures
    from skembed.evaluate import paired_cosine

    embedder = SentenceEmbedder(model=tiny_bert, long_texts="windows", window_length=16)
    pairs = [(LONG[0], LONG[1]), (LONG[2], SHORT[0])]
    features = PairFeatures(embedder, features=("cosine",)).fit(pairs).transform(pairs)
    first, second = (embedder.fit(["warm up"]).transform([p[i] for p in pairs]) for i in (0, 1))
    np.testing.assert_allclose(features[:, 0], paired_cosine(first, second), atol=1e-6)
    assert embedder.window_length_ == 16
