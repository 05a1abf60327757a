"""Pooling functions on hand-made tensors with known answers, and parity with
sentence-transformers' Pooling module on real (tiny) encoders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skembed import SentenceEmbedder
from skembed._pooling import (
    POOLING_FUNCTIONS,
    cls,
    last,
    maximum,
    mean,
    mean_sqrt_len,
    weighted_mean,
)

# two texts: 3 real tokens, then 1 real token and 2 padding positions full of junk
STATES = torch.tensor(
    [
        [[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]],
        [[5.0, -5.0], [99.0, 99.0], [99.0, 99.0]],
    ]
)
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (mean, [[2.0, 20.0], [5.0, -5.0]]),
        (maximum, [[3.0, 30.0], [5.0, -5.0]]),
        (cls, [[1.0, 10.0], [5.0, -5.0]]),
        (last, [[3.0, 30.0], [5.0, -5.0]]),
        (mean_sqrt_len, [[6.0 / 3**0.5, 60.0 / 3**0.5], [5.0, -5.0]]),
        # weights 1, 2, 3: (1*1 + 2*2 + 3*3) / 6
        (weighted_mean, [[14.0 / 6, 140.0 / 6], [5.0, -5.0]]),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_pooling_ignores_padding_and_gives_the_known_answer(fn, expected):
    np.testing.assert_allclose(fn(STATES, MASK).numpy(), expected, rtol=1e-6)


def test_max_of_all_negative_states_is_not_the_padding_fill():
    states = torch.tensor([[[-3.0], [-2.0], [0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert maximum(states, mask).item() == -2.0


ST_NAMES = {
    "mean": "mean",
    "max": "max",
    "cls": "cls",
    "mean_sqrt_len": "mean_sqrt_len_tokens",
    "weighted_mean": "weightedmean",
    "last": "lasttoken",
}
TEXTS = [
    "I love apples",
    "The dog chased the cat across the green field at night",
    "",
    "hello",
    "Can you help me with my bank card?",
]


def test_every_mode_is_registered():
    assert set(POOLING_FUNCTIONS) == set(ST_NAMES) | {"static_mean"}


@pytest.mark.parametrize("cache", [True, False], ids=["from-statistics", "from-states"])
@pytest.mark.parametrize("pooling", sorted(ST_NAMES))
def test_pooling_matches_sentence_transformers(tiny_model, pooling, cache):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    reference = SentenceTransformer(
        modules=[
            Transformer(tiny_model, max_seq_length=64),
            Pooling(32, pooling_mode=ST_NAMES[pooling]),
        ],
        device="cpu",
    ).encode(TEXTS, batch_size=2)
    ours = SentenceEmbedder(
        model=tiny_model, pooling=pooling, normalize=False, batch_size=2, cache=cache
    )
    np.testing.assert_allclose(ours.fit(TEXTS).transform(TEXTS), reference, atol=1e-6)
