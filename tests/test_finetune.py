"""skembed.finetune on the tiny BERT: training, determinism, merging (skembed._update), the
update's identity."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skembed._lora import unmerged  # noqa: E402
from skembed._update import Update, apply_update, update_fingerprint  # noqa: E402
from skembed.finetune import Settings, fine_tune  # noqa: E402

CARD = [
    "my card was declined",
    "the bank card does not work",
    "please help me with my card",
    "card declined at the shop",
    "how do i get a new card",
    "my bank card is blue",
]
FRUIT = [
    "i love apples",
    "apples are my favourite fruit",
    "red apple and green apple",
    "what a good fruit",
    "the apple is red",
    "i like fruit",
]
TEXTS = CARD + FRUIT
LABELS = np.array(["card"] * len(CARD) + ["fruit"] * len(FRUIT))
FAST = Settings(epochs=6, batch_size=4, learning_rate=1e-2, head_learning_rate=1e-2, rank=4)


@pytest.fixture(scope="module")
def bert(tiny_bert):
    """The tiny BERT encoder (eval mode) and a tokenize function built on its tokenizer."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)

    def tokenize(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="np")
        return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)

    return AutoModel.from_pretrained(tiny_bert).eval(), tokenize


@pytest.fixture(scope="module")
def update(bert) -> Update:
    """The update of the FAST settings, trained once for the tests that only read it."""
    return run(bert)


def run(bert, settings: Settings = FAST, base: str = "base") -> Update:
    encoder, tokenize = bert
    return fine_tune(
        encoder, tokenize, TEXTS, LABELS, settings, pooling="mean", base_fingerprint=base
    )


def vectors(encoder, tokenize, texts=TEXTS) -> np.ndarray:
    ids, mask = tokenize(texts)
    with torch.no_grad():
        states = encoder(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).last_hidden_state
    m = torch.from_numpy(mask).unsqueeze(-1).float()
    return ((states * m).sum(1) / m.sum(1)).numpy()


@pytest.mark.parametrize(
    "settings",
    [
        FAST,
        dataclasses.replace(FAST, method="supcon"),
        dataclasses.replace(FAST, adapter="top", top_layers=1, learning_rate=1e-3),
    ],
    ids=["lora-softmax", "lora-supcon", "top-softmax"],
)
def test_fine_tuning_lowers_the_loss_on_separable_texts(bert, settings):
    update = run(bert, settings)
    assert len(update.history) == settings.epochs
    assert update.history[-1] < 0.8 * update.history[0]
    assert update.steps == settings.epochs * 3  # 12 texts, batches of 4


def test_the_shared_encoder_is_left_as_it_was(bert):
    encoder, _ = bert
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    rng_before = torch.get_rng_state()
    run(bert)
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not encoder.training
    assert all(p.requires_grad for p in encoder.parameters())
    assert not any(m._forward_hooks for m in encoder.modules())
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_ctrl_c_propagates_and_leaves_the_encoder_as_it_was(bert):
    encoder, tokenize = bert
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    calls = []

    def interrupted(texts):
        calls.append(len(texts))
        if len(calls) == 5:  # during training, after a few optimiser steps
            raise KeyboardInterrupt
        return tokenize(texts)

    with pytest.raises(KeyboardInterrupt):
        fine_tune(encoder, interrupted, TEXTS, LABELS, FAST, pooling="mean", base_fingerprint="b")
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert not any(m._forward_hooks for m in encoder.modules())


def test_the_same_random_state_gives_the_same_update(bert, update):
    first, second = update, run(bert)
    assert first.tensors.keys() == second.tensors.keys()
    assert all(np.array_equal(first.tensors[k], second.tensors[k]) for k in first.tensors)
    assert first.fingerprint == second.fingerprint
    assert first.history == second.history


def test_another_random_state_gives_another_update(bert, update):
    first = update
    other = run(bert, dataclasses.replace(FAST, random_state=1))
    assert any(not np.array_equal(first.tensors[k], other.tensors[k]) for k in first.tensors)
    assert first.fingerprint != other.fingerprint


def test_a_margin_changes_the_softmax_update(bert, update):
    margin = run(bert, dataclasses.replace(FAST, margin=0.3))
    assert margin.history[0] > update.history[0]  # the own label's cosine is handicapped
    assert margin.fingerprint != update.fingerprint


def test_apply_update_merges_lora_into_plain_weights(bert, update):
    encoder, tokenize = bert
    assert update.kind == "lora"
    merged = apply_update(encoder, update)
    assert type(merged) is type(encoder)
    assert not merged.training
    assert not any(m._forward_hooks for m in merged.modules())
    assert merged.state_dict().keys() == encoder.state_dict().keys()
    tuned = vectors(merged, tokenize)
    assert np.abs(tuned - vectors(encoder, tokenize)).max() > 1e-3
    np.testing.assert_allclose(tuned, vectors(unmerged(encoder, update), tokenize), atol=1e-6)


def test_apply_update_copies_whole_parameters_of_a_partial_update(bert):
    encoder, tokenize = bert
    update = run(bert, dataclasses.replace(FAST, adapter="top", top_layers=1))
    assert update.kind == "partial"
    assert all(name.startswith("encoder.layer.1.") for name in update.tensors)
    merged = apply_update(encoder, update)
    for name, array in update.tensors.items():
        np.testing.assert_array_equal(merged.get_parameter(name).detach().numpy(), array)
    assert np.abs(vectors(merged, tokenize) - vectors(encoder, tokenize)).max() > 1e-3


def test_an_update_pickles_small(bert, update):
    encoder, _ = bert
    blob = pickle.dumps(update)
    # rank 4 on the 12 linear layers of 2 BERT layers: A (4, in) and B (out, 4) per layer,
    # float16 (2 bytes a number)
    linear = [m for n, m in encoder.named_modules() if isinstance(m, torch.nn.Linear)]
    expected = 2 * 4 * sum(sum(m.weight.shape) for m in linear[:-1])  # the pooler is left out
    assert update.nbytes == expected
    assert {t.dtype for t in update.tensors.values()} == {np.dtype(np.float16)}
    assert len(blob) < expected + 4_000
    loaded = pickle.loads(blob)
    assert loaded.fingerprint == update.fingerprint
    assert all(isinstance(t, np.ndarray) for t in loaded.tensors.values())


def test_the_fingerprint_changes_with_the_tensors_and_the_base(bert, update):
    name = sorted(update.tensors)[0]
    changed = dict(update.tensors)
    changed[name] = changed[name].copy()
    changed[name].flat[0] += 1e-3
    same = update_fingerprint("base", update.kind, dict(update.tensors))
    assert same == update.fingerprint
    assert update_fingerprint("base", update.kind, changed) != update.fingerprint
    assert update_fingerprint("other base", update.kind, update.tensors) != update.fingerprint
    assert run(bert, base="other base").fingerprint != update.fingerprint


def test_bad_settings_are_refused_before_training(bert):
    with pytest.raises(ValueError, match="method='triplet' is not one of"):
        run(bert, dataclasses.replace(FAST, method="triplet"))
    with pytest.raises(ValueError, match="head_init='zeros' is not 'means' or 'random'"):
        run(bert, dataclasses.replace(FAST, head_init="zeros"))
    with pytest.raises(ValueError, match="at least two distinct labels"):
        encoder, tokenize = bert
        fine_tune(encoder, tokenize, TEXTS, ["x"] * 12, FAST, pooling="mean", base_fingerprint="b")


def test_batches_group_texts_of_similar_length_and_cover_every_row_once():
    from skembed._schedule import batches_by_length

    lengths = np.random.RandomState(0).randint(3, 90, size=200)
    rng = np.random.RandomState(1)
    first, second = batches_by_length(lengths, 16, rng), batches_by_length(lengths, 16, rng)
    for epoch in (first, second):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(200))
        # sorted by length: a batch pads to at most its neighbours' lengths
        assert sum(lengths[b].max() * len(b) for b in epoch) < 1.1 * lengths.sum()
    assert [b.tolist() for b in first] != [b.tolist() for b in second]


def test_a_random_head_trains_too_and_differs_from_the_class_means_head(bert, update):
    randomly = run(bert, dataclasses.replace(FAST, head_init="random"))
    assert randomly.history[-1] < randomly.history[0]
    assert randomly.fingerprint != update.fingerprint


@pytest.mark.parametrize("activation", ["identity", "tanh", "relu", "gelu", "sigmoid", "silu"])
def test_training_applies_a_dense_layer_as_transform_does(activation):
    # the one head after pooling: in torch for training, in NumPy for transform
    from skembed._head import DenseLayer, Head
    from skembed._pooling import POOLING_FUNCTIONS

    rng = np.random.default_rng(0)
    layer = DenseLayer(
        weight=rng.normal(size=(6, 8)).astype(np.float32),
        bias=rng.normal(size=6).astype(np.float32),
        activation=activation,
    )
    states = torch.from_numpy(rng.normal(size=(3, 5, 8)).astype(np.float32) * 2)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    pooled = POOLING_FUNCTIONS["mean"](states, mask).numpy()
    for normalize in (False, True):
        head = Head((layer,), truncate_dim=4, normalize=normalize)
        ours = head.torch(torch.from_numpy(pooled)).numpy()
        np.testing.assert_allclose(ours, head(pooled), rtol=1e-5, atol=1e-6)
    unnormalized = Head((layer,), truncate_dim=4, normalize=False)(pooled)
    np.testing.assert_allclose(unnormalized, layer(pooled)[:, :4], rtol=1e-6)
