"""The real default model (all-MiniLM-L6-v2): parity with sentence-transformers and the
published STS-B dev score. Marked `model`; `make test` runs them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import SHARED
from skembed import SentenceEmbedder, _locate
from skembed.datasets import read_stsb

pytestmark = pytest.mark.model

STSB_DEV = SHARED / "stsb" / "sts-dev.csv"


@pytest.fixture(scope="module")
def stsb_dev():
    if not STSB_DEV.is_file():
        pytest.fail(f"{STSB_DEV} is missing: the shared data folder must sit beside the checkout")
    pairs = read_stsb(STSB_DEV)
    return pairs.scores, pairs.first, pairs.second


@pytest.fixture(scope="module", params=["torch", "onnx"])
def default_vectors(stsb_dev, request):
    """STS-B dev vectors from each backend that runs the encoder."""
    _, first, second = stsb_dev
    est = SentenceEmbedder(backend=request.param, cache=False).fit(first)
    return est.transform(first), est.transform(second)


@pytest.fixture(scope="module")
def reference_vectors(stsb_dev):
    """STS-B dev vectors from sentence-transformers on the same folder, computed once."""
    from sentence_transformers import SentenceTransformer

    _, first, second = stsb_dev
    st = SentenceTransformer(str(_locate.find_model("default").path), device="cpu")
    assert st.max_seq_length == 256
    return [st.encode(texts, batch_size=32, normalize_embeddings=True) for texts in (first, second)]


def test_every_stsb_dev_sentence_matches_sentence_transformers(default_vectors, reference_vectors):
    for ours, reference in zip(default_vectors, reference_vectors, strict=True):
        cosine = np.sum(ours * reference, axis=1) / (
            np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
        )
        assert cosine.min() >= 0.9999, f"lowest cosine {cosine.min():.6f}"


def test_stsb_dev_spearman_matches_the_published_score(stsb_dev, default_vectors):
    from scipy.stats import spearmanr

    gold, _, _ = stsb_dev
    a, b = default_vectors
    cosine = np.sum(a * b, axis=1)  # unit vectors
    assert spearmanr(cosine, gold).statistic == pytest.approx(0.8672, abs=0.001)


def test_default_model_reads_its_limits_and_identity():
    est = SentenceEmbedder().fit(["x"])
    assert (est.embedding_dim_, est.max_length_, est.n_layers_) == (384, 256, 7)
    assert est.model_origin_ == "package"
    assert len(est.fingerprint_) == 64


def test_default_pickle_is_under_one_megabyte_and_reloads():
    est = SentenceEmbedder().fit(["x"])
    blob = pickle.dumps(est)
    assert len(blob) < 1_000_000
    texts = ["I love apples", "Apples are my favourite fruit"]
    np.testing.assert_allclose(pickle.loads(blob).transform(texts), est.transform(texts), atol=1e-6)
