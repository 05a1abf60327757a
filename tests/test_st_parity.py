"""SentenceEmbedder on any sentence-transformers folder gives SentenceTransformer(folder).encode.

Tiny random folders of seven architectures, saved by sentence-transformers' own ``save``
(tests/tiny_st_models.py), with three pipelines each: CLS pooling + Dense + Normalize, mean
pooling with query/document prompts and ``include_prompt=False``, last-token pooling +
Normalize. The reference is sentence-transformers' ``encode`` on the same folder.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from skembed import SentenceEmbedder
from tiny_st_models import ARCHITECTURES, PIPELINES

TEXTS = [
    "I love apples",
    "The dog chased the cat around the green park at night",
    "hello",
    "My card was declined at the shop, can you help me?",
    "what a good day",
]
LOCAL = {"trust_remote_code": False, "local_files_only": True, "device": "cpu"}
BACKENDS = ["torch", "onnx"]


def _reference(folder, truncate_dim=None, **encode_options) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), truncate_dim=truncate_dim, **LOCAL)
    return model.encode(TEXTS, convert_to_numpy=True, **encode_options)


def _assert_parity(ours: np.ndarray, expected: np.ndarray, same_scale: bool = True) -> None:
    assert ours.shape == expected.shape
    cosines = (ours * expected).sum(1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() >= 0.9999, cosines
    if same_scale:
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


def _ours(folder, backend: str, **params) -> np.ndarray:
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # export fallbacks are tested apart
        est = SentenceEmbedder(model=str(folder), backend=backend, **params)
        return est.fit(TEXTS).transform(TEXTS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_folders_own_pipeline_gives_sentence_transformers_vectors(
    st_folders, architecture, pipeline, backend
):
    folder = st_folders(architecture, pipeline)
    _assert_parity(_ours(folder, backend), _reference(folder))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("prompt_name", ["query", "document"])
def test_named_prompts_left_out_of_pooling_match(st_folders, architecture, prompt_name, backend):
    folder = st_folders(architecture, "mean_prompts")
    ours = _ours(folder, backend, prompt_name=prompt_name)
    _assert_parity(ours, _reference(folder, prompt_name=prompt_name))
    assert not np.allclose(ours, _ours(folder, backend), atol=1e-4)  # the prompt counts


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("architecture", ["bert", "qwen3"])
def test_a_prompt_string_counted_in_pooling_matches(st_folders, architecture, backend):
    folder = st_folders(architecture, "last_normalize")  # include_prompt=True
    ours = _ours(folder, backend, prompt="Represent this sentence: ")
    _assert_parity(ours, _reference(folder, prompt="Represent this sentence: "))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("architecture", ["bert", "xlm-roberta", "qwen3"])
def test_truncate_dim_keeps_the_first_dimensions(st_folders, architecture, pipeline, backend):
    folder = st_folders(architecture, pipeline)
    ours = _ours(folder, backend, truncate_dim=8)
    expected = _reference(folder, truncate_dim=8)
    # sentence-transformers truncates after its Normalize module; skembed normalises after
    # truncating (normalize="auto" follows the folder), so only the scale differs
    normalizing = pipeline != "mean_prompts"
    _assert_parity(ours, expected, same_scale=not normalizing)
    if normalizing:
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_auto_resolves_to_the_folders_pooling_and_normalisation(st_folders):
    est = SentenceEmbedder(model=str(st_folders("bert", "cls_dense_normalize"))).fit(TEXTS)
    assert (est.pooling_, est.normalize_, est.dense_layers_, est.embedding_dim_) == (
        "cls",
        True,
        1,
        16,
    )
    est = SentenceEmbedder(model=str(st_folders("bert", "mean_prompts"))).fit(TEXTS)
    assert (est.pooling_, est.normalize_, est.prompt_) == ("mean", False, "")
    assert est.prompts_ == {"query": "query: ", "document": "passage: "}
    est.set_params(prompt_name="query").fit(TEXTS)
    assert est.prompt_ == "query: "


def test_an_explicit_pooling_still_goes_through_the_folders_dense_layer(st_folders):
    folder = st_folders("bert", "cls_dense_normalize")
    est = SentenceEmbedder(model=str(folder), pooling="mean").fit(TEXTS)
    assert (est.pooling_, est.embedding_dim_) == ("mean", 16)
    assert est.transform(TEXTS).shape == (len(TEXTS), 16)


def test_an_unknown_prompt_name_says_which_prompts_there_are(st_folders):
    folder = st_folders("bert", "mean_prompts")
    with pytest.raises(ValueError) as info:
        SentenceEmbedder(model=str(folder), prompt_name="passage").fit(TEXTS)
    assert str(info.value) == (
        f"prompt_name='passage' is not one of the prompts of the model in {folder} "
        "(['document', 'query'], from config_sentence_transformers.json); pass one of those, "
        "or the text itself as prompt="
    )


def test_truncate_dim_beyond_the_model_is_refused(st_folders):
    folder = st_folders("bert", "cls_dense_normalize")
    with pytest.raises(ValueError, match=r"truncate_dim=17 is more than the 16 dimensions"):
        SentenceEmbedder(model=str(folder), truncate_dim=17).fit(TEXTS)


def test_do_lower_case_in_sentence_bert_config_is_honoured(st_folders, tmp_path):
    import json
    import shutil

    folder = shutil.copytree(st_folders("roberta", "mean_prompts"), tmp_path / "lower")
    config = json.loads((folder / "sentence_bert_config.json").read_text())
    config["do_lower_case"] = True
    (folder / "sentence_bert_config.json").write_text(json.dumps(config))
    upper = [t.upper() for t in TEXTS]
    est = SentenceEmbedder(model=str(folder)).fit(TEXTS)
    np.testing.assert_allclose(est.transform(upper), est.transform(TEXTS), atol=1e-6)
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(folder), **LOCAL).encode(upper)
    _assert_parity(est.transform(upper), reference)
