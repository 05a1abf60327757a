"""SentenceEmbedder behaviour on tiny real encoders: shapes, pooling, layers, truncation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone

from skembed import SentenceEmbedder
from skembed._persistence import loaded_model
from skembed.exceptions import ModelNotFoundError, TruncationWarning

TEXTS = ["I love apples", "The dog chased the cat", "", "How do I transfer money?"]


def test_transform_returns_float32_rows_of_the_model_dimension(tiny_model):
    X = SentenceEmbedder(model=tiny_model).fit(TEXTS).transform(TEXTS)
    assert X.shape == (4, 32)
    assert X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)


def test_normalize_false_keeps_the_raw_norm(tiny_bert):
    X = SentenceEmbedder(model=tiny_bert, normalize=False).fit(TEXTS).transform(TEXTS)
    assert not np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize(
    ("model", "pair"),
    [
        ("tiny_bert", ["dog chased cat", "cat chased dog"]),
        # byte-level BPE marks a word after a space (Ġdog), so only with a leading space
        # are the two texts the same bag of tokens
        ("tiny_roberta", [" dog chased cat", " cat chased dog"]),
    ],
)
def test_static_mean_is_blind_to_word_order_and_mean_is_not(request, model, pair):
    tiny_model = request.getfixturevalue(model)
    static = SentenceEmbedder(model=tiny_model, pooling="static_mean").fit(pair).transform(pair)
    np.testing.assert_array_equal(static[0], static[1])
    contextual = SentenceEmbedder(model=tiny_model, pooling="mean").fit(pair).transform(pair)
    assert np.abs(contextual[0] - contextual[1]).max() > 1e-3


def test_static_mean_is_the_mean_of_input_embedding_rows(tiny_bert):
    import torch

    est = SentenceEmbedder(model=tiny_bert, pooling="static_mean", normalize=False).fit(TEXTS)
    matrix = loaded_model(est).encoder.get_input_embeddings().weight.detach().numpy()
    ids = est.tokenize(["I love apples"])[0].ids
    expected = matrix[ids].mean(axis=0)
    with torch.inference_mode():
        np.testing.assert_allclose(est.transform(["I love apples"])[0], expected, rtol=1e-5)


def test_results_do_not_depend_on_batch_size_or_order(tiny_model):
    est = SentenceEmbedder(model=tiny_model, batch_size=1).fit(TEXTS)
    one = est.transform(TEXTS)
    many = est.set_params(batch_size=64).transform(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(one, many, atol=1e-6)


def test_repeated_texts_get_identical_rows(tiny_bert):
    X = SentenceEmbedder(model=tiny_bert).fit(TEXTS).transform(["a b", "c", "a b", "a b"])
    np.testing.assert_array_equal(X[0], X[2])
    np.testing.assert_array_equal(X[0], X[3])


def test_layer_zero_is_the_embedding_output_and_tuples_average(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, normalize=False).fit(TEXTS)
    by_layer = [est.set_params(layer=i).transform(TEXTS) for i in range(3)]
    np.testing.assert_allclose(est.set_params(layer=-1).transform(TEXTS), by_layer[2], atol=1e-6)
    np.testing.assert_allclose(
        est.set_params(layer=(0, 2)).transform(TEXTS), (by_layer[0] + by_layer[2]) / 2, atol=1e-6
    )
    assert np.abs(by_layer[0] - by_layer[2]).max() > 1e-3


def test_layer_out_of_range_fails_at_fit_with_the_valid_range(tiny_bert):
    with pytest.raises(ValueError) as info:
        SentenceEmbedder(model=tiny_bert, layer=3).fit(TEXTS)
    assert str(info.value) == (
        "layer=3: index 3 is out of range for a model with 3 hidden-state layers "
        "(0 is the embedding output); use -3..2"
    )


def test_token_embeddings_are_what_mean_pooling_averages(tiny_model):
    est = SentenceEmbedder(model=tiny_model, normalize=False).fit(TEXTS)
    tokens = est.token_embeddings(["I love apples", "hello"])
    assert [t.shape for t in tokens] == [
        (len(est.tokenize(["I love apples"])[0].ids), 32),
        (len(est.tokenize(["hello"])[0].ids), 32),
    ]
    pooled = est.transform(["I love apples", "hello"])
    np.testing.assert_allclose([t.mean(axis=0) for t in tokens], pooled, atol=1e-6)


def test_tokenize_shows_wordpiece_tokens_and_ids(tiny_bert):
    (tok,) = SentenceEmbedder(model=tiny_bert).fit(TEXTS).tokenize(["I love zebras"])
    assert tok.tokens == ["[CLS]", "i", "love", "z", "##e", "##b", "##r", "##a", "##s", "[SEP]"]
    assert len(tok.ids) == 10
    assert tok.truncated is False


def test_tokenize_shows_bpe_tokens(tiny_roberta):
    (tok,) = SentenceEmbedder(model=tiny_roberta).fit(TEXTS).tokenize(["I love apples"])
    assert tok.tokens == ["<s>", "I", "Ġlove", "Ġapples", "</s>"]


def test_max_length_defaults_to_the_position_embeddings_cap(tiny_model):
    # the tiny tokenizers say 512, the position embeddings hold 64 usable positions
    assert SentenceEmbedder(model=tiny_model).fit(TEXTS).max_length_ == 64


def test_long_texts_are_truncated_with_one_warning_that_counts_them(tiny_bert):
    long_text = " ".join(["apple"] * 50)
    texts = [long_text, "short", long_text + " dog", "tiny"] * 500
    est = SentenceEmbedder(model=tiny_bert, max_length=16).fit(texts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X = est.transform(texts)
    truncation = [w for w in caught if issubclass(w.category, TruncationWarning)]
    assert [str(w.message) for w in truncation] == [
        "1,000 of 2,000 texts were longer than 16 tokens and were truncated; "
        "long_texts='windows' embeds all of each text"
    ]
    (warning,) = [w.message for w in truncation]  # the counts as values, not as wording
    assert (warning.truncated, warning.total, warning.max_length) == (1_000, 2_000, 16)
    assert X.shape == (2000, 32)
    (tok,) = est.tokenize([long_text])
    assert len(tok.ids) == 16 and tok.truncated and tok.tokens[-1] == "[SEP]"
    # cut texts agree on their first 16 tokens, so they embed identically
    np.testing.assert_allclose(X[0], X[2], atol=1e-6)


def test_max_length_beyond_the_model_capacity_is_refused(tiny_bert):
    with pytest.raises(
        ValueError, match=r"max_length=100 is more than the model in .* can take \(64 tokens\)"
    ):
        SentenceEmbedder(model=tiny_bert, max_length=100).fit(TEXTS)


def test_clones_share_one_loaded_model(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    for pooling in ["mean", "max", "cls"]:
        other = clone(est).set_params(pooling=pooling).fit(TEXTS)
        other.transform(TEXTS)
        assert loaded_model(other) is loaded_model(est)


def test_sentence_transformers_config_sets_the_default_max_length(tiny_bert, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_bert, tmp_path / "with-st-config")
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 20}')
    assert SentenceEmbedder(model=str(folder)).fit(TEXTS).max_length_ == 20


def test_missing_model_says_where_it_looked(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as info:
        SentenceEmbedder(model=str(missing)).fit(TEXTS)
    message = str(info.value)
    assert f"a local folder '{missing}' (does not exist)" in message
    assert "skembed never downloads at run time" in message


def test_hub_id_not_in_the_cache_names_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import importlib

    import huggingface_hub.constants

    importlib.reload(huggingface_hub.constants)
    try:
        with pytest.raises(ModelNotFoundError) as info:
            SentenceEmbedder(model="someone/not-cached").fit(TEXTS)
    finally:
        monkeypatch.undo()
        importlib.reload(huggingface_hub.constants)
    assert f"the Hugging Face cache {tmp_path / 'hub'} for 'someone/not-cached'" in str(info.value)
    assert "`hf download someone/not-cached`" in str(info.value)


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        SentenceEmbedder(model=str(tmp_path)).fit(TEXTS)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pooling": "median"}, "pooling='median' is not 'auto' or one of"),
        ({"layer": "last"}, "layer='last' must be an int or a non-empty tuple of ints"),
        ({"layer": ()}, r"layer=\(\) must be an int or a non-empty tuple of ints"),
        ({"batch_size": 0}, "batch_size=0 must be a positive int"),
        ({"max_length": -1}, "max_length=-1 must be None or a positive int"),
        ({"normalize": "yes"}, "normalize='yes' must be True, False or 'auto'"),
    ],
)
def test_bad_parameters_fail_at_fit(tiny_bert, params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SentenceEmbedder(model=tiny_bert, **params).fit(TEXTS)


def test_transform_before_fit_says_to_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="SentenceEmbedder instance is not fitted yet"):
        SentenceEmbedder().transform(TEXTS)


def test_cuda_request_on_a_cpu_machine_falls_back_with_a_warning(tiny_bert):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.warns(UserWarning, match="device='cuda' was requested but CUDA is not available"):
        est = SentenceEmbedder(model=tiny_bert, device="cuda").fit(TEXTS)
    assert loaded_model(est).device == "cpu"
