from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tiny_models import build_bert, build_roberta  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Path of a tiny random BERT (WordPiece) folder."""
    return str(build_bert(tmp_path_factory.mktemp("tiny-bert")))


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> str:
    """Path of a tiny random RoBERTa (byte-level BPE) folder."""
    return str(build_roberta(tmp_path_factory.mktemp("tiny-roberta")))


@pytest.fixture(params=["bert", "roberta"])
def tiny_model(request) -> str:
    """Each tiny model in turn: WordPiece and BPE."""
    return request.getfixturevalue(f"tiny_{request.param}")


@pytest.fixture(scope="session")
def st_folders(tmp_path_factory):
    """Return get(architecture, pipeline): a tiny sentence-transformers folder, built once.

    Saved by sentence-transformers itself (tests/tiny_st_models.py), for every architecture
    of ``tiny_st_models.ARCHITECTURES`` and pipeline of ``tiny_st_models.PIPELINES``.
    """
    from tiny_st_models import build_hf_encoder, build_st_model

    root = tmp_path_factory.mktemp("st-folders")
    built: dict[tuple[str, str], Path] = {}

    def get(architecture: str, pipeline: str) -> Path:
        hf = root / f"hf-{architecture}"
        if not hf.exists():
            build_hf_encoder(hf, architecture)
        key = (architecture, pipeline)
        if key not in built:
            built[key] = build_st_model(root / f"{architecture}-{pipeline}", hf, pipeline)
        return built[key]

    return get


@pytest.fixture(scope="session")
def big_input(tmp_path_factory) -> Path:
    """A file of 40,000 lines: seconds of encoding with a tiny model, in small chunks."""
    import numpy as np

    words = "the cat chased a dog across my bank card with money on a blue day".split()
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("input") / "texts.txt"
    lines = (" ".join(rng.choice(words, size=rng.integers(5, 30))) for _ in range(40_000))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_skembed_home(tmp_path_factory):
    """Unpacked pickles and ONNX exports go to a folder of this run, never the user's cache."""
    os.environ["SKEMBED_HOME"] = str(tmp_path_factory.mktemp("skembed-home"))


@pytest.fixture(autouse=True)
def _empty_process_cache():
    """Each test starts with an empty encoder-output cache: counts in one test are its own."""
    import skembed

    skembed.clear_cache()
    yield
    skembed.clear_cache()


@pytest.fixture
def calls(monkeypatch):
    """Count a module function's calls: ``runs = calls(module, "name")``, then ``len(runs)``.

    The hook the tests install to see how often skembed did a costly thing (a fine-tuning
    run, a distillation), instead of counters kept in library code. Callers must reach the
    function through its module's namespace, as skembed's own modules do.
    """

    def install(module, name: str) -> list:
        seen: list = []
        original = getattr(module, name)

        def counting(*args, **kwargs):
            seen.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)
        return seen

    return install
