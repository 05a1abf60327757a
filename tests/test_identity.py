"""A model's identity is its whole folder: weights, config, tokenizer and sentence-transformers
files. Folders that differ in any of them never share cached vectors, ONNX graphs or pickles."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from skembed import SentenceEmbedder, _bundle, _cache, _identity, _models, clear_cache
from skembed._files import cache_home
from skembed._persistence import loaded_model
from skembed.exceptions import LegacyFingerprintWarning, ModelMismatchError, UnsupportedFolderError

TEXTS = ["I love apples", "the dog chased the cat", "hello world", "my card was declined"]
LEGACY = Path(__file__).parent / "data" / "legacy"


def _edit_json(path: Path, **changes) -> None:
    content = json.loads(path.read_text())
    content.update(changes)
    path.write_text(json.dumps(content))


def _swap_vocabulary(folder: Path, a: str, b: str) -> None:
    """Swap the ids of two tokens in tokenizer.json (and vocab.txt if any); same weights."""
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    if (folder / "vocab.txt").is_file():
        words = (folder / "vocab.txt").read_text().splitlines()
        i, j = words.index(a), words.index(b)
        words[i], words[j] = words[j], words[i]
        (folder / "vocab.txt").write_text("\n".join(words) + "\n")


@pytest.fixture(scope="module")
def variants(tiny_bert, tmp_path_factory) -> dict[str, Path]:
    """Three folders sharing one model.safetensors: as built, relu, two tokens swapped."""
    root = tmp_path_factory.mktemp("variants")
    built = Path(shutil.copytree(tiny_bert, root / "built"))
    relu = Path(shutil.copytree(tiny_bert, root / "relu"))
    _edit_json(relu / "config.json", hidden_act="relu")
    swapped = Path(shutil.copytree(tiny_bert, root / "swapped"))
    _swap_vocabulary(swapped, "apples", "dog")
    for folder in (relu, swapped):
        assert (folder / "model.safetensors").read_bytes() == (
            built / "model.safetensors"
        ).read_bytes()
    return {"built": built, "relu": relu, "swapped": swapped}


def _reference(folder: Path) -> np.ndarray:
    """The folder's vectors from PyTorch with every cache off, in a process state of its own."""
    clear_cache()
    return (
        SentenceEmbedder(model=str(folder), backend="torch", cache=False)
        .fit(TEXTS)
        .transform(TEXTS)
    )


def test_folders_sharing_their_weights_get_three_fingerprints(variants):
    prints = {name: _models.fingerprint(folder) for name, folder in variants.items()}
    assert len(set(prints.values())) == 3
    weights = {name: _identity.legacy_fingerprint(folder) for name, folder in variants.items()}
    assert len(set(weights.values())) == 1  # what skembed 0.1.0 keyed everything on


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("caching", ["process", "cache_dir", "off"])
def test_a_folder_never_gets_the_vectors_of_another_with_the_same_weights(
    variants, backend, caching, tmp_path
):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    expected = {name: _reference(folder) for name, folder in variants.items()}
    assert not np.allclose(expected["built"], expected["relu"], atol=1e-4)
    assert not np.allclose(expected["built"], expected["swapped"], atol=1e-4)
    options = {
        "process": {"cache": True},
        "cache_dir": {"cache": False, "cache_dir": str(tmp_path / "shared")},
        "off": {"cache": False},
    }[caching]
    _cache.clear_cache()
    for name in ("relu", "swapped", "built", "relu"):  # each one after another of them
        est = SentenceEmbedder(model=str(variants[name]), backend=backend, **options)
        got = est.fit(TEXTS).transform(TEXTS)
        np.testing.assert_allclose(got, expected[name], atol=1e-5, err_msg=name)


def test_a_folder_with_another_layer_count_is_its_own_model(tiny_bert, tmp_path):
    one_layer = Path(shutil.copytree(tiny_bert, tmp_path / "one-layer"))
    _edit_json(one_layer / "config.json", num_hidden_layers=1)
    full = SentenceEmbedder(model=tiny_bert).fit(TEXTS)
    full.transform(TEXTS)  # fills the process cache with 3-layer entries
    short = SentenceEmbedder(model=str(one_layer)).fit(TEXTS)
    assert (full.n_layers_, short.n_layers_) == (3, 2)
    assert short.transform(TEXTS).shape == (len(TEXTS), 32)
    np.testing.assert_allclose(short.transform(TEXTS), _reference(one_layer), atol=1e-5)


def test_documentation_files_are_not_part_of_the_identity(tiny_bert, tmp_path):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "copy"))
    before = _models.fingerprint(folder)
    (folder / "README.md").write_text("# a new model card\n")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    (folder / "data_config.json").write_text("[]")
    assert _models.fingerprint(folder) == before


def test_sentence_transformers_files_are_part_of_the_identity(tiny_bert, tmp_path):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "copy"))
    fingerprints = [_models.fingerprint(folder)]
    kind = "sentence_transformers.models."
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": kind + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": kind + "Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    fingerprints.append(_models.fingerprint(folder))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    fingerprints.append(_models.fingerprint(folder))
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    fingerprints.append(_models.fingerprint(folder))
    assert len(set(fingerprints)) == 4
    assert "1_Pooling/config.json" in _identity.identify(folder).files


def test_a_pickle_of_a_folder_edited_after_fitting_names_the_file(tiny_bert, tmp_path):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    est = SentenceEmbedder(model=str(folder)).fit(TEXTS)
    blob = pickle.dumps(est)
    _edit_json(folder / "config.json", hidden_act="relu")
    clear_cache()
    with pytest.raises(ModelMismatchError) as info:
        pickle.loads(blob).transform(TEXTS)
    message = str(info.value)
    assert "is not the model this estimator was fitted with" in message
    assert f"config.json changed (sha256 {_identity.file_hash(folder / 'config.json')}, " in message
    assert f"expected {est.model_files_['config.json']})" in message
    assert "tokenizer.json" not in message  # only the files that changed are named


def test_the_same_folder_edited_while_an_estimator_holds_it_is_refused_on_pytorch(
    tiny_bert, tmp_path
):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    est = SentenceEmbedder(model=str(folder), backend="onnx", cache=False).fit(TEXTS)
    _edit_json(folder / "config.json", hidden_act="relu")
    # the encoder is read lazily; reading it now would mix old description and new config
    with pytest.raises(ModelMismatchError, match="config.json changed"):
        loaded_model(est).encoder  # noqa: B018 - the property reads the encoder


def _hostile(est: SentenceEmbedder, files: dict[str, bytes]) -> bytes:
    """A pickle of est whose packed model files are replaced by files."""
    state = est.__getstate__()
    state["_model_files"] = files
    forged = SentenceEmbedder.__new__(SentenceEmbedder)
    forged.__dict__.update(state)
    return pickle.dumps(forged)


@pytest.mark.parametrize(
    "name",
    ["../escaped.json", "/tmp/absolute.json", "a/b/c.json", "sub\\x.json", "./config.json", ".."],
)
def test_hostile_member_names_in_a_pickle_are_refused(tiny_bert, tmp_path, name):
    est = SentenceEmbedder(model=tiny_bert, pickle_weights=True).fit(TEXTS)
    files = dict(est.__getstate__()["_model_files"])
    files[name] = b"{}"
    blob = _hostile(est, files)
    clear_cache()
    with pytest.raises(_bundle.UnsafeBundleError) as info:
        pickle.loads(blob).transform(TEXTS)
    assert str(info.value).startswith(f"this pickle's model files include {name!r}, which is not")
    assert not (cache_home() / "escaped.json").exists()
    assert not Path("/tmp/absolute.json").exists()


def test_a_pickle_whose_files_do_not_hash_as_fitted_is_refused(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, pickle_weights=True).fit(TEXTS)
    files = dict(est.__getstate__()["_model_files"])
    files["config.json"] = files["config.json"].replace(b'"gelu"', b'"relu"')
    with pytest.raises(ModelMismatchError, match=r"the file config.json stored in this pickle"):
        pickle.loads(_hostile(est, files)).transform(TEXTS)


def test_a_tampered_unpacked_folder_is_unpacked_again(tiny_bert, tmp_path):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "model"))
    est = SentenceEmbedder(model=str(folder), pickle_weights=True).fit(TEXTS)
    expected = est.transform(TEXTS)
    blob = pickle.dumps(est)
    shutil.rmtree(folder)
    clear_cache()
    unpacked = loaded_model(pickle.loads(blob)).path
    assert unpacked == cache_home() / "models" / est.fingerprint_
    _edit_json(unpacked / "config.json", hidden_act="relu")  # tampered on disk
    (unpacked / "modules.json").write_text("[]")  # and a file added
    clear_cache()
    _cache.clear_cache()
    with pytest.warns(UserWarning, match="does not match this pickle"):
        again = pickle.loads(blob)
        np.testing.assert_allclose(again.transform(TEXTS), expected, atol=1e-6)
    assert _identity.identify(unpacked).fingerprint == est.fingerprint_
    assert not (unpacked / "modules.json").exists()


@pytest.mark.model
def test_a_pickle_of_skembed_0_1_0_loads_with_a_warning_to_refit():
    old = pickle.loads((LEGACY / "default-by-reference-0.1.0.pkl").read_bytes())
    assert not hasattr(old, "model_files_")
    with pytest.warns(LegacyFingerprintWarning, match="recorded only the sha256 of the weights"):
        vectors = old.transform(["I love apples"])
    fresh = SentenceEmbedder().fit(["x"])
    np.testing.assert_allclose(vectors, fresh.transform(["I love apples"]), atol=1e-6)
    assert (old.fingerprint_, old.model_files_) == (fresh.fingerprint_, fresh.model_files_)


def test_a_self_contained_pickle_of_skembed_0_1_0_gives_its_vectors():
    old = pickle.loads((LEGACY / "tiny-bert-pickle-weights-0.1.0.pkl").read_bytes())
    clear_cache()
    with pytest.warns(LegacyFingerprintWarning):
        vectors = old.transform(["I love apples", "the dog chased the cat"])
    expected = np.load(LEGACY / "tiny-bert-pickle-weights-0.1.0-vectors.npy")
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert old.fingerprint_ == _identity.identify(loaded_model(old).path).fingerprint
    again = pickle.loads(pickle.dumps(old))  # pickled again: the whole folder is recorded
    assert set(again.model_files_) >= {"config.json", "model.safetensors", "tokenizer.json"}
    np.testing.assert_allclose(again.transform(["I love apples"]), expected[:1], atol=1e-6)


def test_a_legacy_pickle_with_other_weights_is_refused():
    old = pickle.loads((LEGACY / "tiny-bert-pickle-weights-0.1.0.pkl").read_bytes())
    old._model_files = dict(old._model_files)
    weights = bytearray(old._model_files["model.safetensors"])
    weights[-1] ^= 1
    old._model_files["model.safetensors"] = bytes(weights)
    with pytest.raises(ModelMismatchError, match="the pickle is damaged"):
        old.transform(TEXTS)


def test_a_folder_that_needs_remote_code_is_refused(tiny_bert, tmp_path):
    folder = Path(shutil.copytree(tiny_bert, tmp_path / "remote"))
    _edit_json(folder / "config.json", auto_map={"AutoModel": "modeling_custom.CustomModel"})
    with pytest.raises(UnsupportedFolderError) as info:
        SentenceEmbedder(model=str(folder)).fit(TEXTS)
    assert str(info.value) == (
        f"{folder}: config.json has an auto_map entry "
        "({'AutoModel': 'modeling_custom.CustomModel'}): the model needs Python code shipped "
        "in its folder, and skembed never runs code from a model folder (trust_remote_code "
        "is never set); use a model whose architecture transformers ships"
    )


def test_a_folder_with_pytorch_model_bin_only_loads_through_the_safe_loader(tiny_bert, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(tiny_bert, tmp_path / "bin-only"))
    # transformers 5 writes safetensors only; an older folder's pickled weights, by hand
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    got = SentenceEmbedder(model=str(folder), backend="torch").fit(TEXTS).transform(TEXTS)
    want = SentenceEmbedder(model=tiny_bert, backend="torch").fit(TEXTS).transform(TEXTS)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_an_index_saved_by_skembed_0_1_0_loads_with_a_warning_to_refit(tiny_bert, tmp_path):
    from skembed import SemanticSearch

    index = SemanticSearch(SentenceEmbedder(model=tiny_bert)).fit(TEXTS)
    index.save(tmp_path / "index")
    meta_path = tmp_path / "index" / "index.json"
    meta = json.loads(meta_path.read_text())
    del meta["embedder"]["model_files"]  # what 0.1.0 wrote: the weights' sha256 alone
    meta["embedder"]["fingerprint"] = _identity.legacy_fingerprint(Path(tiny_bert))
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(LegacyFingerprintWarning, match="the index in .* was built with"):
        loaded = SemanticSearch.load(tmp_path / "index")
    assert loaded.search(["I love apples"])[0][0].text == "I love apples"
    meta["embedder"]["fingerprint"] = "0" * 64  # other weights
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelMismatchError, match="had weights of sha256 0000"):
        SemanticSearch.load(tmp_path / "index")
