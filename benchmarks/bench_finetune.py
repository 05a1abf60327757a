"""Which fine-tuning method to use by default (issue #17): accuracy, CPU time, update size.

Banking77's training split only (never the test split): 2,000 texts drawn once (seed 12345)
are the evaluation set; from the other texts, each seed draws 8 texts per label (77 labels,
616 texts) to train on. Each row fine-tunes the default model (all-MiniLM-L6-v2) on one
draw with :func:`skembed.finetune.fine_tune`, merges the update with
:func:`skembed._update.apply_update`, embeds both sets (mean pooling, L2-normalised) and
scores ``LogisticRegression(max_iter=1000)`` trained on the draw. ``frozen`` is
``SentenceEmbedder(model="default")`` on the same sets; ``setfit`` is SetFit 1.2
(CosineSimilarityLoss, sampled pairs, a benchmark-only dependency; ``--setfit-path`` adds a
folder holding it to its process's path).

Each (row, seed) runs in a fresh process, so that its peak RSS is its own; results are
appended to ``--results`` (JSON lines) and one table of every result there is printed.

    python benchmarks/bench_finetune.py --rows frozen lora-softmax --seeds 0,1,2
    python benchmarks/bench_finetune.py --rows lora-softmax:epochs=6,learning_rate=2e-3 --seeds 0
    python benchmarks/bench_finetune.py --table   # print the table of the results file only
    python benchmarks/bench_finetune.py --model /path/to/st-folder --rows frozen lora-softmax

``--model`` takes what ``SentenceEmbedder(model=...)`` takes (a folder of a model with mean
pooling and L2 normalisation, as the default's); its rows are labelled with the folder's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77" / "train.csv"
PER_LABEL = 8
EVAL_SIZE = 2000
EVAL_SEED = 12345
MAX_LENGTH = 128  # Banking77's longest training text is under 100 tokens

# named starting points; "name:key=value,..." overrides fields of skembed.finetune.Settings
ROWS = {
    "full-softmax": dict(
        method="softmax", adapter="full", epochs=8, learning_rate=5e-5, head_learning_rate=1e-3
    ),
    "top-softmax": dict(
        method="softmax", adapter="top", top_layers=2, epochs=10, learning_rate=2e-4
    ),
    # the default of skembed.finetune.Settings
    "lora-softmax": dict(
        method="softmax", adapter="lora", epochs=10, learning_rate=1e-3, margin=0.1
    ),
    "lora-supcon": dict(method="supcon", adapter="lora", epochs=10, learning_rate=1e-3),
    "full-supcon": dict(method="supcon", adapter="full", epochs=8, learning_rate=5e-5),
}


def load_data():
    """Return (texts, labels, eval rows, {seed: training rows}) over the training split."""
    import csv

    import numpy as np

    with open(DATA, encoding="utf-8", newline="") as fh:
        data = list(csv.DictReader(fh))
    texts = [r["text"] for r in data]
    labels = np.array([r["category"] for r in data])
    evaluation = np.sort(np.random.RandomState(EVAL_SEED).permutation(len(texts))[:EVAL_SIZE])
    return texts, labels, evaluation


def draw(labels, evaluation, seed: int):
    """Return PER_LABEL training rows per label, none of them in the evaluation set."""
    import numpy as np

    rng = np.random.RandomState(seed)
    pool = np.setdiff1d(np.arange(len(labels)), evaluation)
    rows = []
    for label in np.unique(labels):
        candidates = pool[labels[pool] == label]
        rows.extend(rng.choice(candidates, PER_LABEL, replace=False))
    return np.sort(np.array(rows))


C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)


def score(train_vectors, train_labels, eval_vectors, eval_labels) -> dict:
    """Return the accuracy of LogisticRegression at C=1 and at the C chosen on the draw.

    ``accuracy``: ``LogisticRegression(max_iter=1000)``, scikit-learn's default C=1 (the
    issue's protocol). ``accuracy_cv``: C chosen from C_GRID by 4-fold cross-validation on
    the training draw alone (2 texts per label in each fold), as a user's GridSearchCV
    would; unit vectors need a larger C than 1 to separate 77 classes.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    def accuracy(classifier) -> float:
        return float((classifier.predict(eval_vectors) == eval_labels).mean())

    default = LogisticRegression(max_iter=1000).fit(train_vectors, train_labels)
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    search = GridSearchCV(LogisticRegression(max_iter=2000), {"C": list(C_GRID)}, cv=folds)
    search.fit(train_vectors, train_labels)
    return dict(
        accuracy=accuracy(default),
        accuracy_cv=accuracy(search.best_estimator_),
        cv_C=search.best_params_["C"],
    )


def settings_of(row: str, seed: int):
    """Return the Settings of a row name such as ``lora-softmax:epochs=6``."""
    from skembed.finetune import Settings

    name, _, overrides = row.partition(":")
    fields = dict(ROWS[name], random_state=seed, max_length=MAX_LENGTH)
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    for item in filter(None, overrides.split(",")):
        key, _, value = item.partition("=")
        kind = types[key].removesuffix(" | None")  # epochs, max_steps: int or None
        if value.lower() == "none":
            fields[key] = None
        elif kind == "bool":
            fields[key] = value.lower() in ("1", "true", "yes")
        else:
            fields[key] = {"int": int, "float": float, "str": str}[kind](value)
    return Settings(**fields)


MODEL = "default"  # set by --model


def skembed_tokenize(max_length: int):
    """Return tokenize(texts) -> (ids, mask), right-padded, on skembed's own tokenizer."""
    import numpy as np

    from skembed import _locate, _models, _tokens

    loaded = _models.load(_locate.find_model(MODEL), "cpu")

    def tokenize(texts):
        token_ids = _tokens.tokenize(loaded, texts, max_length).ids
        width = max(len(i) for i in token_ids)
        ids = np.full((len(texts), width), loaded.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for row, i in enumerate(token_ids):
            ids[row, : len(i)] = i
            mask[row, : len(i)] = 1
        return ids, mask

    return tokenize, loaded


def embed(encoder, tokenize, texts, batch_size: int = 64):
    """Return mean-pooled, L2-normalised vectors of texts, batched by length."""
    import numpy as np
    import torch

    from skembed._pooling import mean

    order = np.argsort([len(t) for t in texts])
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = tokenize([texts[i] for i in rows])
            ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
            states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            out[rows] = torch.nn.functional.normalize(mean(states, mask), dim=-1).numpy()
    return out


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_frozen(seed: int) -> dict:
    from skembed import SentenceEmbedder

    texts, labels, evaluation = load_data()
    rows = draw(labels, evaluation, seed)
    embedder = SentenceEmbedder(model=MODEL, cache=False, backend="torch")
    train = embedder.fit_transform([texts[i] for i in rows])
    test = embedder.transform([texts[i] for i in evaluation])
    scores = score(train, labels[rows], test, labels[evaluation])
    return dict(**scores, wall=0.0, cpu=0.0, update_bytes=0, pickle_bytes=0)


def run_finetune(row: str, seed: int) -> dict:
    import pickle

    import numpy as np
    from transformers import AutoModel

    from skembed import SentenceEmbedder, _locate
    from skembed._update import apply_update
    from skembed.finetune import fine_tune

    texts, labels, evaluation = load_data()
    rows = draw(labels, evaluation, seed)
    settings = settings_of(row, seed)
    tokenize, loaded = skembed_tokenize(settings.max_length)
    encoder = AutoModel.from_pretrained(_locate.find_model(MODEL).path).eval()
    train_texts = [texts[i] for i in rows]
    # the benchmark's own embedding is skembed's: check once on the base encoder
    reference = SentenceEmbedder(model=MODEL, cache=False, backend="torch").fit_transform(
        train_texts[:32]
    )
    ours = embed(encoder, tokenize, train_texts[:32])
    assert np.abs(reference - ours).max() < 1e-4, np.abs(reference - ours).max()
    cpu = time.process_time()
    update = fine_tune(
        encoder,
        tokenize,
        train_texts,
        labels[rows],
        settings,
        pooling="mean",
        base_fingerprint=loaded.fingerprint,
        show_progress=True,
    )
    cpu = time.process_time() - cpu
    tuned = apply_update(encoder, update)
    train = embed(tuned, tokenize, train_texts)
    test = embed(tuned, tokenize, [texts[i] for i in evaluation])
    scores = score(train, labels[rows], test, labels[evaluation])
    return dict(
        **scores,
        wall=update.seconds,
        cpu=cpu,
        steps=update.steps,
        history=[round(h, 4) for h in update.history],
        update_bytes=update.nbytes,
        pickle_bytes=len(pickle.dumps(update)),
        settings=dataclasses.asdict(settings),
    )


def run_setfit(row: str, seed: int) -> dict:
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from skembed import _locate

    texts, labels, evaluation = load_data()
    rows = draw(labels, evaluation, seed)
    _, _, overrides = row.partition(":")
    options = dict(num_iterations=5, num_epochs=1, batch_size=16)
    for item in filter(None, overrides.split(",")):
        key, _, value = item.partition("=")
        options[key] = int(value)
    model = SetFitModel.from_pretrained(str(_locate.find_model(MODEL).path))
    dataset = Dataset.from_dict(
        {"text": [texts[i] for i in rows], "label": [str(x) for x in labels[rows]]}
    )
    with tempfile.TemporaryDirectory() as checkpoints:  # SetFit writes them in the cwd
        arguments = TrainingArguments(
            output_dir=checkpoints, seed=seed, show_progress_bar=True, **options
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=dataset)
        wall, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    body = model.model_body
    train = body.encode([texts[i] for i in rows], normalize_embeddings=True)
    test = body.encode([texts[i] for i in evaluation], normalize_embeddings=True)
    scores = score(np.asarray(train), labels[rows], np.asarray(test), labels[evaluation])
    size = sum(p.numel() * p.element_size() for p in body.parameters())
    return dict(**scores, wall=wall, cpu=cpu, update_bytes=size, pickle_bytes=size)


def child(row: str, seed: int, threads: int | None) -> None:
    """Run one (row, seed) in this process and print its result as one JSON line."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    name = row.partition(":")[0]
    if name == "frozen":
        result = run_frozen(seed)
    elif name == "setfit":
        result = run_setfit(row, seed)
    else:
        result = run_finetune(row, seed)
    import torch

    if MODEL != "default":
        result.update(model=Path(MODEL).name)
    result.update(
        row=row, seed=seed, peak_rss_mb=round(peak_rss_mb()), threads=torch.get_num_threads()
    )
    print("RESULT " + json.dumps(result))


def table(results: list[dict]) -> str:
    import numpy as np

    cpu_name = (
        subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True)
        .stdout.split(":", 1)[-1]
        .strip()
    )
    by_row: dict[str, list[dict]] = {}
    for r in results:
        by_row.setdefault(r["row"] if "model" not in r else f"{r['model']} {r['row']}", []).append(
            r
        )

    def frozen_of(row: str, key: str) -> dict:
        """Return {seed: key} of the frozen row of row's model."""
        model = row.rsplit(" ", 1)[0] + " " if " " in row else ""
        return {r["seed"]: r[key] for r in by_row.get(model + "frozen", []) if key in r}

    # SetFit first, then the frozen encoder, then the rest as they ran
    order = sorted(
        by_row,
        key=lambda row: (" " in row, not row.startswith("setfit"), not row.endswith("frozen")),
    )
    lines = [
        f"Banking77 train split, {PER_LABEL}/label (616 texts) -> {EVAL_SIZE} other train texts;"
        f" all-MiniLM-L6-v2 unless a row names its model; {cpu_name};"
        f" {os.cpu_count()} CPUs (shared)",
        "",
        "| method | accuracy per seed (C=1) | mean | vs frozen | accuracy per seed (C by CV)"
        " | mean | vs frozen | train wall s | train CPU s | steps"
        " | update bytes | pickle bytes | peak RSS MB | torch threads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in order:
        rs = sorted(by_row[row], key=lambda r: r["seed"])
        cells = []
        for key in ("accuracy", "accuracy_cv"):
            reference = frozen_of(row, key)
            if not all(key in r for r in rs):  # results of an older version of this script
                cells.append("| – | – | –")
                continue
            per_seed = ", ".join(f"{r['seed']}: {r[key]:.4f}" for r in rs)
            gains = [r[key] - reference[r["seed"]] for r in rs if r["seed"] in reference]
            gain = f"{np.mean(gains):+.4f}" if gains and not row.endswith("frozen") else ""
            cells.append(f"| {per_seed} | {np.mean([r[key] for r in rs]):.4f} | {gain}")
        lines.append(
            f"| {row} {cells[0]} {cells[1]}"
            f" | {np.mean([r['wall'] for r in rs]):.0f} | {np.mean([r['cpu'] for r in rs]):.0f}"
            f" | {rs[0].get('steps', '')} | {rs[0]['update_bytes']:,} | {rs[0]['pickle_bytes']:,}"
            f" | {max(r['peak_rss_mb'] for r in rs)} | {rs[0].get('threads', '')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=["frozen", "lora-softmax"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--model", default="default", help="what SentenceEmbedder(model=) takes")
    parser.add_argument("--results", default="finetune_results.jsonl")
    parser.add_argument("--setfit-path", default=None, help="folder holding setfit and datasets")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own)"
    )
    parser.add_argument("--table", action="store_true", help="only print the results' table")
    parser.add_argument("--child", nargs=2, metavar=("ROW", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    global MODEL
    MODEL = args.model
    if args.child:
        child(args.child[0], int(args.child[1]), args.threads)
        return
    results_file = Path(args.results)
    if not args.table:
        for row in args.rows:
            for seed in (int(s) for s in args.seeds.split(",")):
                env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
                if row.startswith("setfit") and args.setfit_path:
                    env["PYTHONPATH"] = args.setfit_path
                command = [sys.executable, __file__, "--child", row, str(seed)]
                command += ["--model", args.model]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                # the child's progress bar goes to this process's stderr
                done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True)
                lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
                if done.returncode or not lines:
                    print(f"{row} seed {seed} failed (exit {done.returncode})", file=sys.stderr)
                    continue
                result = json.loads(lines[-1][len("RESULT ") :])
                print(
                    f"{row} seed {seed}: accuracy {result['accuracy']:.4f} "
                    f"(C by CV {result['accuracy_cv']:.4f}, C={result['cv_C']:g}), "
                    f"{result['wall']:.0f} s wall, {result['cpu']:.0f} s CPU",
                    flush=True,
                )
                with results_file.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(result) + "\n")
    results = [json.loads(x) for x in results_file.read_text().splitlines() if x.strip()]
    print(table(results))


if __name__ == "__main__":
    main()
