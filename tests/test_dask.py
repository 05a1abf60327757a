"""skembed.dask on a real cluster: two worker processes on loopback, tiny real models.

Every result is compared row for row with the same estimator run in this process.
"""

from __future__ import annotations

import importlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from skembed import SentenceEmbedder  # noqa: E402
from skembed.dask import decision_function, predict, predict_proba, transform  # noqa: E402
from tiny_models import CORPUS  # noqa: E402

WAIT = 120  # seconds: the bound on every wait, so that a broken cluster fails, not hangs


def _texts(n: int) -> list[str]:
    """Return n distinct texts the tiny tokenizers know."""
    return [f"{CORPUS[i % len(CORPUS)]} {i}" for i in range(n)]


def _loads(client) -> dict[str, int]:
    """Return, per worker, how many models its process holds loaded (never evicted)."""
    # a lambda travels by value; skembed exports its names lazily, so import the submodule
    sizes = client.run(lambda: importlib.import_module("skembed._cache").memo_sizes())
    return {worker: held.get("loaded models", 0) for worker, held in sizes.items()}


@pytest.fixture(scope="module")
def client():
    """A real two-process cluster on 127.0.0.1, shared by this module's tests."""
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster, timeout=WAIT)
    client.wait_for_workers(2, timeout=WAIT)
    yield client
    client.close(timeout=WAIT)
    cluster.close(timeout=WAIT)


@pytest.fixture(scope="module")
def embedder(tiny_bert):
    return SentenceEmbedder(model=tiny_bert).fit(["warm up"])


def _compute(client, collection):
    return client.compute(collection).result(timeout=WAIT)


# -- results equal a local transform ----------------------------------------------------


def test_dask_array_gives_array_of_vectors_equal_to_local_rows(client, embedder):
    texts = _texts(57)
    x = da.from_array(np.array(texts, dtype=object), chunks=10)
    vectors = transform(embedder, x)
    assert vectors.chunks == ((10, 10, 10, 10, 10, 7), (32,))
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(_compute(client, vectors), embedder.transform(texts), atol=1e-6)


def test_long_texts_as_windows_run_on_the_workers(client, tiny_bert):
    windows = SentenceEmbedder(model=tiny_bert, long_texts="windows", window_length=16)
    windows.fit(["warm up"])
    texts = [" ".join(_texts(12)[i : i + 6]) for i in range(6)]  # each several windows long
    vectors = transform(windows, da.from_array(np.array(texts, dtype=object), chunks=4))
    local = windows.transform(texts)
    np.testing.assert_allclose(_compute(client, vectors), local, atol=1e-6)
    truncated = SentenceEmbedder(model=tiny_bert, max_length=16).fit(["warm up"])
    assert not np.allclose(local, truncated.transform(texts), atol=1e-3)  # not the first 16


def test_an_own_sentence_transformers_folder_with_a_prompt_runs_on_the_workers(client, st_folders):
    folder = st_folders("mpnet", "mean_prompts")  # prompts left out of pooling
    own = SentenceEmbedder(model=str(folder), prompt_name="query").fit(["warm up"])
    texts = _texts(23)
    vectors = transform(own, da.from_array(np.array(texts, dtype=object), chunks=10))
    assert vectors.shape == (23, 32)
    np.testing.assert_allclose(_compute(client, vectors), own.transform(texts), atol=1e-6)


def test_workers_run_one_encoder_thread_per_task(client):
    # the nanny sets OMP_NUM_THREADS=1, which skembed's thread default follows (ONNX Runtime
    # and PyTorch alike), so two task threads per worker use two threads, not four
    threads = client.run(lambda: importlib.import_module("skembed._backends").default_threads())
    assert set(threads.values()) == {1}


def test_single_column_dask_array_gives_the_same_vectors(client, embedder):
    texts = _texts(25)
    x = da.from_array(np.array(texts, dtype=object)[:, None], chunks=(10, 1))
    vectors = transform(embedder, x)
    assert vectors.shape == (25, 32)
    np.testing.assert_allclose(_compute(client, vectors), embedder.transform(texts), atol=1e-6)


def test_dask_series_gives_dataframe_with_its_index_and_feature_names(client, embedder):
    texts = _texts(40)
    index = pd.Index([f"doc-{i:03d}" for i in range(40)], name="id")
    series = dd.from_pandas(pd.Series(texts, index=index, name="text"), npartitions=4)
    frame = transform(embedder, series)
    assert list(frame.columns) == list(embedder.get_feature_names_out())
    assert frame.divisions == series.divisions
    result = _compute(client, frame)
    assert result.index.equals(index)
    assert (result.dtypes == np.float32).all()
    np.testing.assert_allclose(result.to_numpy(), embedder.transform(texts), atol=1e-6)


def test_single_column_dask_dataframe_can_give_an_array_with_known_chunks(client, embedder):
    texts = _texts(30)
    frame = dd.from_pandas(pd.DataFrame({"text": texts}), npartitions=3)
    vectors = transform(embedder, frame, output="array")
    assert vectors.chunks == ((10, 10, 10), (32,))
    np.testing.assert_allclose(_compute(client, vectors), embedder.transform(texts), atol=1e-6)


def test_dask_bag_gives_array_with_the_bag_partition_lengths(client, embedder):
    texts = _texts(31)
    bag = db.from_sequence(texts, npartitions=4)
    vectors = transform(embedder, bag)
    assert vectors.chunks == ((8, 8, 8, 7), (32,))
    np.testing.assert_allclose(_compute(client, vectors), embedder.transform(texts), atol=1e-6)


def test_lengths_false_leaves_bag_chunks_unknown_and_still_computes(client, embedder):
    texts = _texts(12)
    vectors = transform(embedder, db.from_sequence(texts, npartitions=3), lengths=False)
    assert np.isnan(vectors.shape[0])
    np.testing.assert_allclose(_compute(client, vectors), embedder.transform(texts), atol=1e-6)


def test_array_of_texts_can_give_a_dataframe_with_a_global_index(client, embedder):
    texts = _texts(15)
    frame = transform(
        embedder, da.from_array(np.array(texts, dtype=object), chunks=6), output="dataframe"
    )
    result = _compute(client, frame)
    assert result.index.tolist() == list(range(15))
    np.testing.assert_allclose(result.to_numpy(), embedder.transform(texts), atol=1e-6)


def test_empty_partitions_give_no_rows(client, embedder):
    texts = _texts(30)
    series = dd.from_pandas(pd.Series(texts), npartitions=3)
    kept = series[series.index >= 10]  # partition 0 becomes empty
    result = _compute(client, transform(embedder, kept))
    assert result.index.tolist() == list(range(10, 30))
    np.testing.assert_allclose(result.to_numpy(), embedder.transform(texts[10:]), atol=1e-6)


# -- whole pipelines ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier(tiny_bert):
    texts = _texts(70)
    labels = [t.split()[0].lower() for t in texts]  # the first word: 'i', 'the', 'how', ...
    return make_pipeline(SentenceEmbedder(model=tiny_bert), LogisticRegression(max_iter=500)).fit(
        texts, labels
    )


def test_pipeline_predict_on_a_dask_column_gives_a_series_equal_to_local(client, classifier):
    texts = _texts(48)
    series = dd.from_pandas(pd.Series(texts), npartitions=4)
    result = _compute(client, predict(classifier, series))
    assert result.index.tolist() == list(range(48))
    assert result.tolist() == classifier.predict(texts).tolist()


def test_pipeline_predict_proba_has_one_column_per_class(client, classifier):
    texts = _texts(20)
    x = da.from_array(np.array(texts, dtype=object), chunks=7)
    proba = predict_proba(classifier, x)
    assert proba.shape == (20, len(classifier.classes_))
    np.testing.assert_allclose(_compute(client, proba), classifier.predict_proba(texts), atol=1e-6)
    frame = predict_proba(classifier, dd.from_pandas(pd.Series(texts), npartitions=2))
    assert list(frame.columns) == list(classifier.classes_)


def test_pipeline_decision_function_equals_local(client, classifier):
    texts = _texts(20)
    scores = decision_function(classifier, db.from_sequence(texts, npartitions=3))
    np.testing.assert_allclose(
        _compute(client, scores), classifier.decision_function(texts), atol=1e-5
    )


def test_pipeline_ending_in_a_transformer_names_its_columns(client, tiny_bert):
    texts = _texts(40)
    pipe = make_pipeline(SentenceEmbedder(model=tiny_bert), PCA(n_components=3)).fit(texts)
    frame = transform(pipe, dd.from_pandas(pd.Series(texts), npartitions=2))
    assert list(frame.columns) == ["pca0", "pca1", "pca2"]
    np.testing.assert_allclose(_compute(client, frame).to_numpy(), pipe.transform(texts), atol=1e-5)


def test_dask_ml_estimators_take_the_vectors_downstream(client, embedder):
    pytest.importorskip("dask_ml")
    from dask_ml.cluster import KMeans
    from dask_ml.wrappers import ParallelPostFit

    texts = _texts(140)  # 20 variants of each of the 7 corpus sentences
    series = dd.from_pandas(pd.Series(texts), npartitions=4)
    # persisted: KMeans reads X once per iteration, which must not embed it again
    vectors = transform(embedder, series, output="array").persist()
    kmeans = KMeans(n_clusters=5, random_state=0).fit(vectors)
    clusters = kmeans.labels_.compute()
    local = embedder.transform(texts)
    # each text is in the cluster of the centre nearest to its locally computed vector
    distances = ((local[:, None, :] - kmeans.cluster_centers_[None]) ** 2).sum(axis=2)
    assert clusters.tolist() == distances.argmin(axis=1).tolist()
    assert len(set(clusters.tolist())) == 5

    labels = np.array([t.split()[0] for t in texts])
    clf = ParallelPostFit(LogisticRegression(max_iter=500)).fit(local[:70], labels[:70])
    predicted = clf.predict(vectors)
    assert isinstance(predicted, da.Array)
    assert _compute(client, predicted).tolist() == clf.predict(local).tolist()


# -- the model goes to workers once ------------------------------------------------------


def test_each_worker_loads_the_model_once_for_many_tasks(client, tiny_bert, tmp_path):
    # a fresh copy of the model is a new registry entry: no earlier test has loaded it
    folder = shutil.copytree(tiny_bert, tmp_path / "fresh-model")
    embedder = SentenceEmbedder(model=str(folder)).fit(["warm up"])
    assert len(pickle.dumps(embedder)) < 2_000  # the by-reference pickle, not the weights
    before = _loads(client)
    texts = _texts(160)
    vectors = transform(embedder, da.from_array(np.array(texts, dtype=object), chunks=10))
    with distributed.get_task_stream(client=client) as stream:
        _compute(client, vectors)
        _compute(client, vectors)  # a second job reuses the loaded model too
    tasks: dict[str, int] = {}
    for task in stream.data:
        if vectors.name in str(task["key"]):
            tasks[task["worker"]] = tasks.get(task["worker"], 0) + 1
    after = _loads(client)
    assert sum(tasks.values()) == 32
    assert set(tasks) == set(after), "both workers should have embedded partitions"
    assert all(n >= 2 for n in tasks.values())
    assert {w: after[w] - before.get(w, 0) for w in after} == {w: 1 for w in after}


def test_import_skembed_does_not_import_dask():
    code = "import sys, skembed; print(sorted(m for m in sys.modules if m.startswith('dask')))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert out.stdout.strip() == "[]"


# -- bad rows and bad calls --------------------------------------------------------------


def _bad_texts() -> list:
    texts: list = _texts(30)
    texts[23] = None  # partition 2 (of 10 rows each), row 3 within it
    return texts


def _local_error(estimator, texts) -> str:
    with pytest.raises(TypeError) as info:
        estimator.transform(texts)
    return str(info.value)


@pytest.mark.parametrize("kind", ["array", "bag", "series"])
def test_bad_text_is_named_by_its_row_in_the_whole_collection(client, embedder, kind):
    texts = _bad_texts()
    X = {
        "array": lambda: da.from_array(np.array(texts, dtype=object), chunks=10),
        "bag": lambda: db.from_sequence(texts, partition_size=10),
        "series": lambda: dd.from_pandas(pd.Series(texts, dtype=object), npartitions=3),
    }[kind]()
    local = _local_error(embedder, X.compute())  # what the same texts say in memory
    assert local.startswith("X[23] is ")
    with pytest.raises(TypeError) as info:
        _compute(client, transform(embedder, X))
    assert str(info.value) == local


def test_number_in_a_bag_is_refused_as_locally(client, embedder):
    texts: list = _texts(30)
    texts[17] = 3.5
    with pytest.raises(TypeError) as info:
        _compute(client, transform(embedder, db.from_sequence(texts, partition_size=10)))
    assert str(info.value) == _local_error(embedder, texts)
    assert str(info.value).startswith("X[17] is float (3.5); SentenceEmbedder takes strings")


def test_bad_text_in_a_pipeline_is_named_by_its_global_row(client, classifier):
    texts = _bad_texts()
    with pytest.raises(TypeError, match=r"^X\[23\] is NoneType \(None\); SentenceEmbedder"):
        _compute(client, predict(classifier, da.from_array(np.array(texts, dtype=object), 10)))


def test_without_lengths_a_bad_text_is_named_by_partition_and_row(client, embedder):
    texts = _bad_texts()
    bag = db.from_sequence(texts, partition_size=10)
    with pytest.raises(TypeError) as info:
        _compute(client, transform(embedder, bag, lengths=False))
    assert str(info.value) == (
        "X (partition 2, row 3) is NoneType (None); SentenceEmbedder takes strings: "
        "fill or drop missing texts first"
    )


def test_unfitted_estimator_is_refused_before_anything_runs():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        transform(SentenceEmbedder(), da.from_array(np.array(["a"], dtype=object), chunks=1))


def test_in_memory_texts_are_refused_with_the_local_call_to_use(embedder):
    with pytest.raises(TypeError, match=r"X is list; .*call estimator.transform\(X\) directly"):
        transform(embedder, ["a text"])


def test_a_method_the_estimator_lacks_is_named(embedder):
    with pytest.raises(AttributeError, match=r"SentenceEmbedder has no predict\(\)"):
        predict(embedder, da.from_array(np.array(["a"], dtype=object), chunks=1))


# -- faults: runs last, it replaces a worker of the module's cluster --------------------


def test_job_survives_a_worker_killed_mid_job(client, tiny_bert):
    embedder = SentenceEmbedder(model=tiny_bert).fit(["warm up"])
    texts = _texts(240)
    x = da.from_array(np.array(texts, dtype=object), chunks=20)
    gate_name = f"skembed-test-gate-{uuid.uuid4().hex}"
    gate = distributed.Event(gate_name, client=client)

    def wait_for_gate(block):
        # the last partition of texts arrives only when the test says so; seceding frees
        # the worker's only thread for the other partitions meanwhile
        distributed.secede()
        opened = distributed.Event(gate_name).wait(timeout=WAIT)
        distributed.rejoin()
        if not opened:
            raise TimeoutError("the test never opened the gate")
        return block

    gated = da.concatenate([x[:-20], x[-20:].map_blocks(wait_for_gate, dtype=object)])
    vectors = transform(embedder, gated)
    future = client.compute(vectors)

    # mid-job: every partition but the gated one is embedded and held by the workers
    def held() -> dict[str, int]:
        return {
            worker: sum(vectors.name in str(key) for key in keys)
            for worker, keys in client.has_what().items()
        }

    deadline = time.monotonic() + WAIT
    while sum(held().values()) < 11:
        assert time.monotonic() < deadline, f"partitions never finished: {held()}"
        time.sleep(0.1)
    assert not future.done()
    victim, lost = max(held().items(), key=lambda item: item[1])
    assert lost >= 1
    pid = client.run(os.getpid, workers=[victim])[victim]
    os.kill(pid, signal.SIGKILL)

    while victim in client.scheduler_info()["workers"]:
        assert time.monotonic() < deadline, "the scheduler never noticed the dead worker"
        time.sleep(0.1)
    client.wait_for_workers(2, timeout=WAIT)  # the nanny starts a new worker process
    gate.set()

    result = future.result(timeout=WAIT)
    local = embedder.transform(texts)
    assert result.shape == local.shape
    np.testing.assert_allclose(result, local, atol=1e-6)
    # each row is its own text's vector: every row exactly once, in order
    assert (np.argmax(result @ local.T, axis=1) == np.arange(len(texts))).all()
