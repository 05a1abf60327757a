"""SentenceEmbedder(fine_tune=...).fit(X, y) adapts the encoder, the scikit-learn way:
labels pass through a Pipeline, folds never see held-out texts, pickles stay small, the
tuned model runs on ONNX Runtime, and a search over the classifier tunes once per fold."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline

from skembed import SentenceEmbedder, _finetune, _fit_tuning, _locate, _models, clear_cache
from tiny_models import CORPUS

TEXTS = [f"{text} {i}" for i, text in enumerate(CORPUS * 6)]
LABELS = np.array([(i % len(CORPUS)) % 3 for i in range(len(TEXTS))])  # follows the text
QUICK = {"fine_tune": "softmax", "fine_tune_epochs": 2, "backend": "torch"}


def test_vectors_change_only_when_labels_are_given(tiny_bert):
    frozen = SentenceEmbedder(model=tiny_bert, backend="torch").fit(TEXTS).transform(TEXTS)
    unlabelled = SentenceEmbedder(model=tiny_bert, **QUICK).fit(TEXTS)
    np.testing.assert_array_equal(unlabelled.transform(TEXTS), frozen)
    assert unlabelled.update_ is None and unlabelled.fine_tune_steps_ == 0
    tuned = SentenceEmbedder(model=tiny_bert, **QUICK).fit(TEXTS, LABELS)
    assert tuned.update_ is not None and tuned.fine_tune_steps_ > 0
    assert len(tuned.fine_tune_loss_) == 2 and tuned.fine_tune_seconds_ > 0
    assert np.abs(tuned.transform(TEXTS) - frozen).max() > 1e-4
    assert tuned.fingerprint_ != tuned.base_fingerprint_ == unlabelled.fingerprint_


def test_the_loss_goes_down(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, **{**QUICK, "fine_tune_epochs": 15})
    est.set_params(fine_tune_learning_rate=5e-3).fit(TEXTS, LABELS)
    assert est.fine_tune_loss_[-1] < est.fine_tune_loss_[0]


def test_the_same_random_state_gives_the_same_vectors(tiny_bert):
    first = SentenceEmbedder(model=tiny_bert, **QUICK, random_state=3).fit(TEXTS, LABELS)
    clear_cache()  # train again, do not reuse
    second = SentenceEmbedder(model=tiny_bert, **QUICK, random_state=3).fit(TEXTS, LABELS)
    np.testing.assert_allclose(first.transform(TEXTS), second.transform(TEXTS), atol=1e-6)
    other = SentenceEmbedder(model=tiny_bert, **QUICK, random_state=4).fit(TEXTS, LABELS)
    assert np.abs(other.transform(TEXTS) - first.transform(TEXTS)).max() > 1e-5


def test_cross_validation_tunes_each_fold_on_its_training_texts_only(tiny_bert):
    X, y = np.array(TEXTS, dtype=object), LABELS
    pipe = make_pipeline(SentenceEmbedder(model=tiny_bert, **QUICK), LogisticRegression())
    for train, test in KFold(3, shuffle=True, random_state=0).split(X):
        changed = X.copy()  # this fold's held-out texts replaced: its update must not move
        changed[test] = [f"something else entirely {i}" for i in test]
        fitted = [
            cross_validate(pipe, data, y, cv=[(train, test)], return_estimator=True)
            for data in (X, changed)
        ]
        alone = SentenceEmbedder(model=tiny_bert, **QUICK).fit(list(X[train]), y[train])
        for result in fitted:
            assert result["estimator"][0][0].update_.fingerprint == alone.update_.fingerprint


def test_a_search_over_the_classifier_tunes_once_per_fold(tiny_bert, calls):
    pipe = make_pipeline(SentenceEmbedder(model=tiny_bert, **QUICK), LogisticRegression())
    runs = calls(_finetune, "fine_tune")
    grid = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=3)
    grid.fit(TEXTS, LABELS)
    assert len(runs) == 3 + 1  # 3 folds, then the refit on all texts


def test_tuned_and_frozen_vectors_never_mix_in_the_cache(tiny_bert):
    frozen = SentenceEmbedder(model=tiny_bert, backend="torch", cache=True).fit(TEXTS)
    expected = frozen.transform(TEXTS)
    tuned = SentenceEmbedder(model=tiny_bert, **QUICK, cache=True).fit(TEXTS, LABELS)
    assert np.abs(tuned.transform(TEXTS) - expected).max() > 1e-4
    np.testing.assert_array_equal(frozen.transform(TEXTS), expected)


def test_a_tuned_model_runs_on_onnx_runtime_with_its_pytorch_vectors(tiny_bert):
    pytest.importorskip("onnxruntime")
    torch_run = SentenceEmbedder(model=tiny_bert, **QUICK).fit(TEXTS, LABELS)
    onnx_run = SentenceEmbedder(model=tiny_bert, **{**QUICK, "backend": "onnx"})
    onnx_run.set_params(cache=False).fit(TEXTS, LABELS)  # the same update, reused
    assert onnx_run.update_ is torch_run.update_
    got, want = onnx_run.transform(TEXTS), torch_run.transform(TEXTS)
    assert (got * want).sum(1).min() >= 0.9999
    int8 = onnx_run.set_params(precision="int8").fit(TEXTS, LABELS).transform(TEXTS)
    assert (int8 * want).sum(1).min() > 0.95


def test_a_tuned_pickle_holds_the_update_not_the_weights(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, **QUICK).fit(TEXTS, LABELS)
    expected = est.transform(TEXTS)
    blob = pickle.dumps(est)
    weights = (_locate.find_model(tiny_bert).path / "model.safetensors").stat().st_size
    assert len(blob) < est.update_.nbytes + 5_000 < weights
    clear_cache()
    np.testing.assert_allclose(pickle.loads(blob).transform(TEXTS), expected, atol=1e-6)


def test_a_tuned_pickle_with_weights_is_self_contained(tiny_bert, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_bert, tmp_path / "model")
    est = SentenceEmbedder(model=str(folder), **QUICK, pickle_weights=True).fit(TEXTS, LABELS)
    expected = est.transform(TEXTS)
    blob = pickle.dumps(est)
    shutil.rmtree(folder)
    clear_cache()
    np.testing.assert_allclose(pickle.loads(blob).transform(TEXTS), expected, atol=1e-6)


def test_fine_tuning_refuses_a_pooling_without_an_encoder(tiny_bert):
    est = SentenceEmbedder(model=tiny_bert, **QUICK, pooling="static_mean")
    with pytest.raises(ValueError, match="trains the encoder, which pooling='static_mean'"):
        est.fit(TEXTS, LABELS)
    assert not hasattr(est, "fingerprint_")


def test_ctrl_c_while_fine_tuning_leaves_the_estimator_unfitted_and_says_how_far_it_got(
    tiny_bert,
):
    code = (
        "import sys\n"
        "from sklearn.exceptions import NotFittedError\n"
        "from sklearn.utils.validation import check_is_fitted\n"
        "from skembed import SentenceEmbedder\n"
        f"texts = {TEXTS!r}\n"
        f"est = SentenceEmbedder(model={tiny_bert!r}, backend='torch').fit(texts)\n"
        "est.set_params(fine_tune='softmax', fine_tune_epochs=100000, show_progress=True)\n"
        "print('fitted, tuning', flush=True)\n"
        "try:\n"
        f"    est.fit(texts, {LABELS.tolist()!r})\n"
        "except KeyboardInterrupt:\n"
        "    try:\n"
        "        check_is_fitted(est)\n"
        "        print('fitted')\n"
        "    except NotFittedError:\n"
        "        print('unfitted', hasattr(est, '_loaded'))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    assert process.stdout.readline().strip() == "fitted, tuning"
    # the progress bar (stderr) shows steps done: the training loop is running
    shown = ""
    while not re.search(r"\b[1-9]\d*/200000\b", shown):
        char = process.stderr.read(1)
        assert char, shown
        shown += char
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert out.strip() == "unfitted False"
    # logging's last-resort handler: a warning reaches stderr with no logging set up
    assert re.search(
        r"fine-tuning was interrupted at step [\d,]+ of 200,000, after [\d.]+ s; nothing of "
        r"it is kept",
        err,
    ), err


OTHERS = (CORPUS[1:] + CORPUS[:1]) * 4  # each sentence paired with the next one
PAIRS = [
    (f"{a} {i}", f"{b} {i + 1}") for i, (a, b) in enumerate(zip(CORPUS * 4, OTHERS, strict=True))
]
PAIRS += [(f"{a} {i}", f"{a} {i + 7}") for i, a in enumerate(CORPUS * 4)]
SAME = np.array([0] * (len(PAIRS) // 2) + [1] * (len(PAIRS) // 2))


def _gap(features: np.ndarray) -> float:
    """Return the mean cosine of paraphrase pairs minus that of the others (column 0)."""
    return float(features[SAME == 1, 0].mean() - features[SAME == 0, 0].mean())


def test_pair_features_fine_tune_on_labelled_pairs(tiny_bert):
    from skembed import PairFeatures

    frozen = PairFeatures(SentenceEmbedder(model=tiny_bert, backend="torch")).fit(PAIRS, SAME)
    assert frozen.embedder_.update_ is None
    tuned_embedder = SentenceEmbedder(model=tiny_bert, **{**QUICK, "fine_tune_epochs": 6})
    tuned = PairFeatures(tuned_embedder.set_params(fine_tune_learning_rate=5e-3))
    tuned.fit(PAIRS, SAME)
    assert tuned.embedder_.update_ is not None
    assert tuned.embedder_.fine_tune_loss_[-1] < tuned.embedder_.fine_tune_loss_[0]
    # the encoder learnt to pull paraphrases together: the cosine gap widens
    assert _gap(tuned.transform(PAIRS)) > _gap(frozen.transform(PAIRS))


def test_pairs_tune_at_the_pair_learning_rate_unless_one_is_given(tiny_bert):
    from skembed import PairFeatures
    from skembed.finetune import PAIR_LEARNING_RATE

    assert PAIR_LEARNING_RATE == 2e-3

    def update(**params):
        clear_cache()  # a fresh run each time, not one reused from the last
        est = SentenceEmbedder(model=tiny_bert, **QUICK, **params)
        return PairFeatures(est).fit(PAIRS, SAME).embedder_.update_.fingerprint

    default = update()
    assert default == update(fine_tune_learning_rate=2e-3)
    assert default != update(fine_tune_learning_rate=1e-3)


def test_pairs_need_numeric_labels(tiny_bert):
    from skembed import PairFeatures

    pairs = PairFeatures(SentenceEmbedder(model=tiny_bert, **QUICK))
    with pytest.raises(ValueError, match="fine-tuning on pairs needs numbers"):
        pairs.fit(PAIRS, np.where(SAME == 1, "yes", "no"))


def test_the_pair_loss_is_cosent():
    import torch

    from skembed._losses import cosent

    cosine = torch.tensor([0.9, 0.2, 0.5, 0.1])
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0])
    # every (positive, negative) pair: log(1 + sum exp(scale * (cos_negative - cos_positive)))
    terms = [20 * (cosine[n] - cosine[p]) for p in (0, 2) for n in (1, 3)]
    expected = torch.logsumexp(torch.stack([torch.tensor(0.0), *terms]), 0)
    assert torch.isclose(cosent(cosine, labels, 20.0), expected)


def test_skops_loads_a_tuned_estimator_with_the_update_type_trusted(tiny_bert):
    import skops.io as sio

    est = SentenceEmbedder(model=tiny_bert, **QUICK).fit(TEXTS, LABELS)
    data = sio.dumps(est)
    trusted = ["skembed.embedder.SentenceEmbedder", "skembed.finetune.Update"]
    assert sio.get_untrusted_types(data=data) == trusted
    np.testing.assert_array_equal(
        sio.loads(data, trusted=trusted).transform(TEXTS), est.transform(TEXTS)
    )


@pytest.mark.parametrize(
    "pipeline, options",
    [("cls_dense_normalize", {"truncate_dim": 8}), ("mean_prompts", {"prompt_name": "query"})],
)
def test_training_embeds_texts_as_transform_serves_them(st_folders, pipeline, options):
    # a folder's Dense layers and truncate_dim, and a prompt it leaves out of pooling, are
    # part of the vectors fine-tuning's loss sees, as they are of the served ones
    import torch

    folder = st_folders("bert", pipeline)
    est = SentenceEmbedder(model=folder, backend="torch", **options).fit(TEXTS)
    loaded = _models.load(_locate.find_model(folder), "cpu")
    tokenize, skip, after = _fit_tuning.training_view(
        loaded, est.prompt_, est.max_length_, est.truncate_dim
    )
    assert (skip > 0) == (pipeline == "mean_prompts")
    served_as = _finetune.Served(est.pooling_, skip, after)
    with torch.no_grad():
        seen = _finetune.served_vectors(
            loaded.encoder, served_as, tokenize, TEXTS[:8], "cpu"
        ).numpy()
    served = est.transform(TEXTS[:8])
    assert seen.shape == served.shape == (8, 8 if pipeline == "cls_dense_normalize" else 32)
    # training compares directions (a cosine head): the served vectors' own, unit length
    served /= np.linalg.norm(served, axis=1, keepdims=True)
    np.testing.assert_allclose(seen, served, atol=1e-5)


def test_a_folder_with_dense_layers_fine_tunes_and_truncate_dim_is_its_own_run(st_folders, calls):
    folder = st_folders("bert", "cls_dense_normalize")
    runs = calls(_finetune, "fine_tune")
    frozen = SentenceEmbedder(model=folder, backend="torch", truncate_dim=8).fit(TEXTS)
    tuned = SentenceEmbedder(model=folder, **QUICK, truncate_dim=8).fit(TEXTS, LABELS)
    assert np.abs(tuned.transform(TEXTS) - frozen.transform(TEXTS)).max() > 1e-4
    SentenceEmbedder(model=folder, **QUICK).fit(TEXTS, LABELS)  # trains on 16 dimensions
    assert len(runs) == 2


def test_the_default_run_is_ten_passes_but_at_most_320_steps(tiny_bert):
    from skembed._schedule import DEFAULT_MAX_STEPS

    assert DEFAULT_MAX_STEPS == 320
    small = SentenceEmbedder(model=tiny_bert, fine_tune="softmax", backend="torch")
    assert small.fit(TEXTS, LABELS).fine_tune_steps_ == 10 * 2  # 42 texts: 2 batches a pass
    large = SentenceEmbedder(
        model=tiny_bert, fine_tune="softmax", backend="torch", fine_tune_batch_size=4
    ).fit(TEXTS, LABELS)  # 11 batches a pass: 110 steps in 10 passes
    assert large.fine_tune_steps_ == 110
    capped = large.set_params(fine_tune_batch_size=1).fit(TEXTS, LABELS)  # 420 in 10 passes
    assert capped.fine_tune_steps_ == 320 and len(capped.fine_tune_loss_) == 8


def test_epochs_run_whole_and_steps_run_as_many_passes_as_they_take(tiny_bert):
    def steps(**params) -> tuple[int, int]:
        est = SentenceEmbedder(model=tiny_bert, fine_tune="softmax", backend="torch", **params)
        est.fit(TEXTS, LABELS)
        return est.fine_tune_steps_, len(est.fine_tune_loss_)

    assert steps(fine_tune_epochs=3, fine_tune_batch_size=1) == (126, 3)  # no cap
    assert steps(fine_tune_steps=5) == (5, 3)  # 2 batches a pass
    assert steps(fine_tune_epochs=3, fine_tune_steps=4) == (4, 2)


@pytest.mark.parametrize(
    "epochs, length, bar_end",
    [
        (2, r"4 steps \(2 epochs of 2 batches\); [\d.]+ s a step over the first 3", "4/4"),
        (1, r"2 steps \(1 epoch of 2 batches\); [\d.]+ s a step over the first 2", "2/2"),
    ],
)
def test_fine_tuning_logs_its_length_and_shows_steps_loss_and_time_left(
    tiny_bert, caplog, capsys, epochs, length, bar_end
):
    import logging

    est = SentenceEmbedder(
        model=tiny_bert, fine_tune="softmax", backend="torch", fine_tune_epochs=epochs,
        show_progress=True,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="skembed"):
        est.fit(TEXTS, LABELS)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "skembed.schedule"]
    assert re.fullmatch(rf"fine-tuning: {length}: about [\d.]+ s", line), line
    bar = capsys.readouterr().err
    assert "skembed fine-tune" in bar and bar_end in bar and "loss=" in bar and "<00:00" in bar
