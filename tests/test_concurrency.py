"""Many threads, one model: results equal the serial ones, whatever runs at the same time.

16 real threads start together (a barrier) and call ``transform`` on one estimator, or on
estimators that share one loaded model with different ``max_length`` (the fast tokenizers'
truncation setting is shared state: "Already borrowed" is the known failure). Two real
processes fill one ``cache_dir`` with the same texts at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from skembed import SentenceEmbedder
from skembed._persistence import loaded_model
from tiny_models import CORPUS

THREADS = 16
TEXTS = [f"{CORPUS[i % len(CORPUS)]} {'again ' * (i % 9)}{i}" for i in range(96)]


def _run_together(calls) -> list:
    """Run every call on its own thread, all released at once; return results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list = []

    def work(i, call):
        try:
            barrier.wait(timeout=60)
            results[i] = call()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return results


def _slices(i: int) -> list[str]:
    return TEXTS[i * 6 : i * 6 + 6] + TEXTS[: (i % 4) + 1]  # overlapping texts too


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("cache", [True, False])
def test_one_estimator_from_16_threads_gives_the_serial_vectors(tiny_model, backend, cache):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    est = SentenceEmbedder(model=tiny_model, backend=backend, cache=cache).fit(TEXTS)
    serial = [est.transform(_slices(i)) for i in range(THREADS)]
    from skembed import clear_cache

    clear_cache()
    together = _run_together([lambda i=i: est.transform(_slices(i)) for i in range(THREADS)])
    for got, want in zip(together, serial, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_estimators_sharing_a_model_with_other_max_lengths_do_not_mix(tiny_bert, backend):
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
    lengths = [4, 8, 16, 64]
    estimators = [
        SentenceEmbedder(model=tiny_bert, backend=backend, max_length=n, cache=False).fit(TEXTS)
        for n in lengths
    ]
    assert len({id(loaded_model(e)) for e in estimators}) == 1  # one loaded model, one tokenizer
    serial = [e.transform(TEXTS) for e in estimators]
    calls = [lambda e=estimators[i % 4]: e.transform(TEXTS) for i in range(THREADS)]
    for i, got in enumerate(_run_together(calls)):
        np.testing.assert_allclose(got, serial[i % 4], atol=1e-6)
    assert not np.allclose(serial[0], serial[3], atol=1e-3)  # the lengths do matter


def test_two_processes_filling_one_cache_dir_at_once_agree(tiny_bert, tmp_path):
    code = (
        "import json, sys\n"
        "from skembed import SentenceEmbedder\n"
        f"est = SentenceEmbedder(model={tiny_bert!r}, cache=False, cache_dir={str(tmp_path)!r})\n"
        f"print(json.dumps(est.fit(['x']).transform({TEXTS!r}).tolist()))\n"
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ
        )
        for _ in range(2)
    ]
    outputs = [np.array(json.loads(p.communicate(timeout=300)[0])) for p in processes]
    assert all(p.returncode == 0 for p in processes)
    reference = SentenceEmbedder(model=tiny_bert, cache=False).fit(TEXTS).transform(TEXTS)
    for got in outputs:
        np.testing.assert_allclose(got, reference, atol=1e-6)
    again = SentenceEmbedder(model=tiny_bert, cache=False, cache_dir=str(tmp_path))
    np.testing.assert_allclose(again.fit(["x"]).transform(TEXTS), reference, atol=1e-6)
    assert len(list(tmp_path.rglob("*.npy"))) == len(TEXTS)


def _threads_and_vectors(model: str, texts: list[str]):
    from skembed import SentenceEmbedder, _backends

    est = SentenceEmbedder(model=model, backend="onnx", cache=False).fit(texts)
    return os.environ.get("OMP_NUM_THREADS"), _backends.default_threads(), est.transform(texts)


def test_joblib_workers_use_one_encoder_thread_each_and_agree(tiny_bert):
    pytest.importorskip("onnxruntime")
    from joblib import Parallel, delayed

    halves = [TEXTS[:48], TEXTS[48:]]
    results = Parallel(n_jobs=2, backend="loky")(
        delayed(_threads_and_vectors)(tiny_bert, h) for h in halves
    )
    # loky sets OMP_NUM_THREADS to cores / workers: two workers on two cores, one thread each
    assert [(omp, threads) for omp, threads, _ in results] == [("1", 1), ("1", 1)]
    serial = SentenceEmbedder(model=tiny_bert, backend="onnx", cache=False).fit(TEXTS)
    np.testing.assert_allclose(np.vstack([v for *_, v in results]), serial.transform(TEXTS))
