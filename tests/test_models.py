"""Loading a model: its description, the Rust tokenizer, and the PyTorch encoder on demand."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from skembed import SentenceEmbedder, _devices, _locate, _models, _tokens, clear_cache
from skembed._persistence import loaded_model
from skembed.exceptions import ModelMismatchError

TEXTS = [
    "I love apples",
    "",
    "  spaces   and\ttabs ",
    "The dog chased the cat across the green field at night, again and again and again",
    "[SEP] [CLS] <s> </s> special tokens typed by a user",
    "Ünïcödé naïve café — and emoji 🙂",
    "can you help me with my bank card? " * 20,
]


@pytest.mark.parametrize("max_length", [8, 64])
def test_tokenizing_gives_the_ids_and_truncation_of_transformers(tiny_model, max_length):
    from transformers import AutoTokenizer

    loaded = loaded_model(SentenceEmbedder(model=tiny_model).fit(TEXTS))
    got = _tokens.tokenize(loaded, TEXTS, max_length)
    reference = AutoTokenizer.from_pretrained(tiny_model)(
        TEXTS, truncation=True, max_length=max_length, return_overflowing_tokens=True
    )
    first_rows = {}
    for row, text in enumerate(reference["overflow_to_sample_mapping"]):
        first_rows.setdefault(text, reference["input_ids"][row])
    assert [ids.tolist() for ids in got.ids] == [first_rows[i] for i in range(len(TEXTS))]
    counts = np.bincount(reference["overflow_to_sample_mapping"], minlength=len(TEXTS))
    assert got.truncated.tolist() == (counts > 1).tolist()
    assert got.truncated.any()  # the long text is cut at either length


def test_the_description_holds_the_sizes_and_limits_of_the_model(tiny_bert):
    from transformers import AutoConfig

    description = _models.describe(_locate.find_model(tiny_bert).path)
    config = AutoConfig.from_pretrained(tiny_bert)
    assert description["dim"] == config.hidden_size == 32
    assert description["n_layers"] == config.num_hidden_layers + 1 == 3
    assert (description["limit"], description["capacity"]) == (64, 64)
    assert (description["pad_id"], description["truncation_side"]) == (0, "right")
    assert json.loads(description["tokenizer_json"])["truncation"] is None  # set per call
    assert set(description) == set(_models.DESCRIPTION_FIELDS)


def test_a_damaged_or_older_description_is_read_again_with_transformers(tiny_bert, tmp_path):
    folder = shutil.copytree(tiny_bert, tmp_path / "copy")
    digest = _models.fingerprint(folder)
    stored = _models.description_file(folder, digest)
    stored.parent.mkdir(parents=True, exist_ok=True)
    for content in ("{not json", json.dumps({"tokenizer": "{}", "dim": 32})):
        stored.write_text(content)
        clear_cache()
        loaded = _models.load(_locate.find_model(folder), "cpu")
        assert loaded.dim == 32
        _models.save_description(loaded)  # what an ONNX Runtime run does: it mends the file
        assert json.loads(stored.read_text()) == loaded.description


def test_onnx_runtime_loads_a_described_model_without_torch_or_transformers(tiny_bert):
    pytest.importorskip("onnxruntime")
    expected = SentenceEmbedder(model=tiny_bert, backend="onnx").fit(TEXTS).transform(TEXTS)
    # the run above exported the graph and saved the description in SKEMBED_HOME
    code = (
        "import json, sys\n"
        "from skembed import SentenceEmbedder\n"
        f"est = SentenceEmbedder(model={tiny_bert!r}, device='cpu').fit(['x'])\n"
        f"vectors = est.transform({TEXTS!r})\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "print(json.dumps([heavy, est.backend_, vectors.tolist()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    heavy, backend, vectors = json.loads(out.stdout)
    assert heavy == [] and backend == "onnx"
    np.testing.assert_allclose(np.array(vectors, dtype=np.float32), expected, atol=1e-6)


def test_the_pytorch_encoder_is_read_only_when_pytorch_runs(tiny_bert, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = shutil.copytree(tiny_bert, tmp_path / "copy")
    onnx_run = SentenceEmbedder(model=str(folder), backend="onnx").fit(TEXTS)
    onnx_run.transform(TEXTS)  # exports the graph (reads the encoder once), saves the description
    clear_cache()
    loaded = loaded_model(SentenceEmbedder(model=str(folder), backend="onnx").fit(TEXTS))
    SentenceEmbedder(model=str(folder), backend="onnx").fit(TEXTS).transform(TEXTS)
    assert not loaded.encoder_read  # ONNX Runtime ran from the graph alone
    torch_run = SentenceEmbedder(model=str(folder), backend="torch").fit(TEXTS)
    np.testing.assert_allclose(torch_run.transform(TEXTS), onnx_run.transform(TEXTS), atol=1e-5)
    assert loaded.encoder_read


def test_changed_weights_are_refused_when_the_encoder_is_read_late(tiny_bert, tmp_path):
    folder = shutil.copytree(tiny_bert, tmp_path / "copy")
    loaded = _models.load(_locate.find_model(folder), "cpu")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")  # any change to the bytes
    with pytest.raises(ModelMismatchError, match="changed after the model was loaded"):
        loaded.encoder  # noqa: B018 - the property reads the weights


def test_an_edited_tokenizer_or_config_is_described_again(tiny_bert, tmp_path):
    folder = shutil.copytree(tiny_bert, tmp_path / "copy")
    digest = _models.fingerprint(folder)
    before = _models.description_file(folder, digest)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["model_max_length"] = 16
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    assert _models.fingerprint(folder) != digest  # the tokenizer's files are in the identity
    assert _models.description_file(folder, _models.fingerprint(folder)) != before
    assert _models.describe(folder)["limit"] == 16


def test_the_gpu_check_without_torch_agrees_with_torch():
    import torch

    assert _devices.torch_has_gpu_build() == (
        torch.version.cuda is not None or torch.version.hip is not None
    )


@pytest.mark.parametrize("architecture", ["bert", "mpnet", "distilbert", "modernbert", "qwen3"])
def test_static_mean_reads_the_embedding_rows_pytorch_would_use(st_folders, architecture):
    est = SentenceEmbedder(model=str(st_folders(architecture, "last_normalize")))
    est.set_params(pooling="static_mean", normalize=False).fit(TEXTS)
    loaded = loaded_model(est)
    table = loaded.encoder.get_input_embeddings().weight.detach().numpy()
    np.testing.assert_array_equal(loaded.input_embeddings(), table)
    expected = np.array(
        [table[t.ids].astype(np.float64).mean(axis=0) for t in est.tokenize(TEXTS)],
        dtype=np.float32,
    )
    np.testing.assert_allclose(est.transform(TEXTS), expected, atol=1e-7)


def test_static_mean_needs_no_torch_once_the_model_is_described(tiny_bert):
    pytest.importorskip("onnxruntime")
    SentenceEmbedder(model=tiny_bert, backend="onnx").fit(TEXTS).transform(TEXTS)  # describes
    expected = SentenceEmbedder(model=tiny_bert, pooling="static_mean").fit(TEXTS)
    code = (
        "import json, sys\n"
        "from skembed import SentenceEmbedder\n"
        f"est = SentenceEmbedder(model={tiny_bert!r}, pooling='static_mean', device='cpu')\n"
        f"vectors = est.fit(['x']).transform({TEXTS!r})\n"
        "print(json.dumps(['torch' in sys.modules, vectors.tolist()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    imported_torch, vectors = json.loads(out.stdout)
    assert not imported_torch
    np.testing.assert_allclose(np.array(vectors), expected.transform(TEXTS), atol=1e-7)
