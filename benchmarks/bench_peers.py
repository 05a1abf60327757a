"""Throughput of sentence-transformers' fast backends, fastembed and skembed, side by side.

The same model (all-MiniLM-L6-v2, the default) and the same texts for every method: STS-B
dev sentences (short) and SciFact abstracts (long, title and text, truncated at the model's
256 tokens), as in ``benchmarks/bench_throughput.py``. Rows: sentence-transformers (ST) on torch
(batch 32: the reference), on ONNX Runtime (an O3-optimised graph; dynamic int8) and on
OpenVINO (its default precision; f32; int8 weights; static int8 calibrated on STS-B train
sentences), fastembed (batch 32, from a local ONNX export), then each entry of SKEMBED_ROWS.
Columns: texts/s (best of N rounds, the methods' order alternating each round; this machine
is shared and noisy), the ratio to ST torch, and the lowest and mean cosine to ST torch's
fp32 vectors.

Each method runs in its own persistent worker process, loaded and warmed up once, then fed
JSON lines on stdin; vectors come back as .npy files. Every library runs at its default
thread count. The peers need transformers<4.58 (optimum-intel, optimum-onnx) while skembed's
venv has transformers 5, so they run in ``.peers-venv``, created on first use from
``benchmarks/peers-requirements.txt`` (torch from ``constraints.txt`` first, as the Makefile
does); the skembed rows run in the interpreter that runs this script (the project's venv).

    .venv/bin/python benchmarks/bench_peers.py [--rounds 3] [--short 1500] [--long 300]
    .venv/bin/python benchmarks/bench_peers.py --rows openvino skembed --short 64 --long 8

``--rows`` keeps the rows whose name contains one of the substrings (any case); ST torch
always runs, as the reference. A row that cannot run here (a parameter the installed skembed
refuses, an export that needs the network) is listed as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_throughput import STSB_DEV, cpu_model, read_scifact, unit

REPO = Path(__file__).resolve().parents[1]
PEERS_VENV = REPO / ".peers-venv"
REQUIREMENTS = Path(__file__).with_name("peers-requirements.txt")
CONSTRAINTS = REPO / "constraints.txt"
STSB_TRAIN = STSB_DEV.with_name("sts-train.csv")
REFERENCE = "ST torch"

# Run in .peers-venv. "export": a sentence-transformers export written into the row's own
# copy of the model folder, then loaded by the file name it wrote.
PEER_ROWS = {
    REFERENCE: {},
    "ST onnx O3": {"backend": "onnx", "export": "O3"},
    "ST openvino (default precision)": {"backend": "openvino"},
    "ST openvino f32": {
        "backend": "openvino",
        "model_kwargs": {"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}},
    },
    # optimum-intel 1.27 takes both load_in_8bit=True and quantization_config={"bits": 8};
    # load_in_8bit names OVWeightQuantizationConfig(bits=8) outright, where the bare dict
    # warns that it cannot tell weight-only from full quantization (the result is the same)
    "ST openvino int8 weights": {"backend": "openvino", "model_kwargs": {"load_in_8bit": True}},
    "ST onnx int8 dynamic (avx512_vnni)": {"backend": "onnx", "export": "avx512_vnni"},
    "ST openvino int8 static": {"backend": "openvino", "export": "static"},
    "fastembed": {"fastembed": True},
}

# Run in this interpreter's venv: SentenceEmbedder parameters, always with cache=False.
SKEMBED_ROWS = {
    "skembed exact (fp32)": {"backend": "onnx"},
    "skembed int8": {"precision": "int8"},
    "skembed int8 (OpenVINO)": {"precision": "int8", "backend": "openvino"},
    "skembed bf16": {"precision": "bf16"},
}

PEER_PACKAGES = (
    "sentence-transformers", "transformers", "tokenizers", "torch", "onnxruntime",
    "optimum", "optimum-onnx", "optimum-intel", "openvino", "nncf", "fastembed",
)  # fmt: skip
MAIN_PACKAGES = ("skembed", "transformers", "tokenizers", "torch", "onnxruntime")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def ensure_peers_venv() -> Path:
    """Return the peers' python, creating .peers-venv or reinstalling when the pins changed."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    wanted = REQUIREMENTS.read_text() + CONSTRAINTS.read_text()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    torch = next(
        line.strip() for line in CONSTRAINTS.read_text().splitlines() if line.startswith("torch")
    )
    pip = [str(python), "-m", "pip", "install", "--quiet", "-c", str(CONSTRAINTS)]
    steps = [] if python.exists() else [[sys.executable, "-m", "venv", str(PEERS_VENV)]]
    steps += [
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        pip + [torch],  # alone first, as the Makefile does: the local CPU wheel
        pip + ["-r", str(REQUIREMENTS)],
    ]
    print(f"Installing the peers into {PEERS_VENV}:", flush=True)
    for step in steps:
        print("  " + " ".join(step), flush=True)
        subprocess.run(step, check=True)
    stamp.write_text(wanted)
    return python


def versions(python: Path | str, names: tuple[str, ...]) -> str:
    """Return 'name version, ...' of the packages installed in a venv."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try:\n"
        "        return m.version(n)\n"
        "    except m.PackageNotFoundError:\n"
        "        return 'absent'\n"
        "print(json.dumps({n: v(n) for n in sys.argv[1:]}))"
    )
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    return ", ".join(f"{n} {v}" for n, v in json.loads(out.stdout).items())


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True
        ).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        "+changes" if git("status", "--porcelain") else ""
    )


# ---- worker side: one method per process ----


def reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def warm_up(encode: Callable, texts: dict[str, list[str]]) -> None:
    """Encode a little of every workload: first calls compile kernels and plan these shapes."""
    for workload in texts.values():
        encode(workload[:64])


def load_skembed(start: dict) -> tuple[Callable, str]:
    from skembed import SentenceEmbedder

    params = {"model": start["folder"], **start["spec"], "cache": False}
    est = SentenceEmbedder(**params).fit(["warm up"])
    warm_up(est.transform, start["texts"])
    return est.transform, f"backend={est.backend_}, precision={est.precision}"


def calibration_folder(sentences: list[str], target: Path) -> str:
    """Write the calibration sentences as a local dataset folder: load_dataset reads it."""
    target.mkdir()
    with open(target / "train.jsonl", "w", encoding="utf-8") as fh:
        for sentence in sentences:
            fh.write(json.dumps({"sentence": sentence}) + "\n")
    return str(target)


def export(model, kind: str, folder: Path, start: dict) -> str:
    """Write one sentence-transformers export into folder; return the file name it wrote."""
    import sentence_transformers as st

    before = set(folder.rglob("*"))
    if kind == "O3":
        st.export_optimized_onnx_model(model, "O3", str(folder))
    elif kind == "avx512_vnni":
        st.export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(folder))
    elif kind == "static":
        from optimum.intel import OVQuantizationConfig

        # ST's default calibration set is GLUE SST-2 from the hub; a local folder of STS-B
        # train sentences takes its place. num_samples as in ST's documentation: left unset,
        # the whole folder (10k sentences padded to 384 tokens) would be run for calibration
        dataset = calibration_folder(start["calibration"], Path(start["scratch"]) / "calibration")
        st.export_static_quantized_openvino_model(
            model, OVQuantizationConfig(num_samples=300), str(folder),
            dataset_name=dataset, dataset_config_name="default", dataset_split="train",
            column_name="sentence",
        )  # fmt: skip
    written = [p for p in set(folder.rglob("*")) - before if p.suffix in (".onnx", ".xml")]
    if len(written) != 1:
        raise RuntimeError(f"export {kind!r} wrote {len(written)} model files: {written}")
    return str(written[0].relative_to(folder))


def load_fastembed(folder: Path, scratch: Path, texts: dict) -> tuple[Callable, str]:
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType
    from sentence_transformers import SentenceTransformer

    target = scratch / "fastembed"
    onnx = SentenceTransformer(str(folder), device="cpu", backend="onnx")
    onnx.save_pretrained(str(target))  # onnx/model.onnx: plain fp32, token states out
    # fastembed truncates at tokenizer_config.json's model_max_length and max_length (512, and
    # 128 copied from tokenizer.json by ST's save), not at sentence_bert_config.json's 256
    # that every other method reads
    max_seq_length = onnx.get_max_seq_length()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("max_length", None)
    config["model_max_length"] = max_seq_length
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    # fastembed knows models by hub name; a custom one with specific_model_path never downloads
    name = "local/all-MiniLM-L6-v2"
    TextEmbedding.add_custom_model(
        name, pooling=PoolingType.MEAN, normalization=True, sources=ModelSource(hf=name),
        dim=onnx.get_sentence_embedding_dimension(), model_file="onnx/model.onnx",
    )  # fmt: skip
    model = TextEmbedding(
        name, cache_dir=str(scratch / "fastembed-cache"), specific_model_path=str(target)
    )

    def encode(batch: list[str]) -> np.ndarray:
        return np.stack(list(model.embed(batch, batch_size=32)))

    warm_up(encode, texts)
    return encode, f"onnx/model.onnx (ST export), mean pooling, truncation {max_seq_length}"


def load_peer(start: dict) -> tuple[Callable, str]:
    spec, scratch = start["spec"], Path(start["scratch"])
    folder = scratch / "model"
    shutil.copytree(start["folder"], folder)  # exports write into it: each row has its own
    if spec.get("fastembed"):
        return load_fastembed(folder, scratch, start["texts"])
    import torch
    from sentence_transformers import SentenceTransformer

    backend = spec.get("backend", "torch")
    kwargs = {"device": "cpu", "backend": backend, "model_kwargs": spec.get("model_kwargs")}
    model = SentenceTransformer(str(folder), **kwargs)
    note = f"{torch.get_num_threads()} torch threads" if backend == "torch" else ""
    if spec.get("export"):
        file_name = export(model, spec["export"], folder, start)
        kwargs["model_kwargs"] = {**(kwargs["model_kwargs"] or {}), "file_name": file_name}
        model = SentenceTransformer(str(folder), **kwargs)
        note = file_name

    def encode(batch: list[str]) -> np.ndarray:
        return model.encode(batch, batch_size=32)

    warm_up(encode, start["texts"])
    if backend == "openvino":  # compiled on the first call: what did it choose?
        import openvino as ov

        compiled = model.transformers_model.request
        hint = "INFERENCE_PRECISION_HINT"
        note += (
            f"{'; ' if note else ''}compiled at {compiled.get_property(hint).get_type_name()} "
            f"(CPU default {ov.Core().get_property('CPU', hint).get_type_name()}), "
            f"{compiled.get_property('INFERENCE_NUM_THREADS')} threads"
        )
    return encode, note


def worker() -> None:
    """Serve one method: load and warm it up, then time one encode per request line."""
    # libraries print notices and progress bars on stdout: the protocol keeps a private copy
    # of it, and everything else goes to stderr (the worker's log file)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    start = json.loads(sys.stdin.readline())
    texts = start["texts"]
    try:
        encode, note = (load_skembed if start["kind"] == "skembed" else load_peer)(start)
    except Exception as exc:  # a refused parameter, an export that needs the hub: a skip
        protocol.write(json.dumps({"skip": reason(exc)}) + "\n")
        return
    protocol.write(json.dumps({"ready": note}) + "\n")
    for line in sys.stdin:
        workload, out = json.loads(line)
        begin = time.perf_counter()
        vectors = encode(texts[workload])
        seconds = time.perf_counter() - begin
        np.save(out, np.asarray(vectors, dtype=np.float32))
        protocol.write(json.dumps(seconds) + "\n")


# ---- driver side ----


class Worker:
    """A method's worker process; .failed holds why it stopped, if it did."""

    def __init__(self, python, kind: str, name: str, start: dict, scratch: Path) -> None:
        self.name, self.failed, self.note = name, None, ""
        self.folder = scratch / re.sub(r"\W+", "-", name).strip("-").lower()
        self.folder.mkdir()
        env = {**os.environ, **OFFLINE}
        if kind == "peer":  # the calibration set's cache goes to scratch, not the user's cache
            env["HF_HOME"] = str(scratch / "hf-home")
        self.log = self.folder / "worker.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(python), __file__, "--worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
            )  # fmt: skip
        start = {**start, "kind": kind, "scratch": str(self.folder)}
        answer = self.ask(json.dumps(start))
        if answer is not None:
            if "skip" in answer:
                self.stop(answer["skip"])
            else:
                self.note = answer["ready"]

    def ask(self, line: str):
        """Send one line; return the decoded answer, or None (and .failed) if the worker died."""
        try:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if answer:
            return json.loads(answer)
        tail = [t for t in self.log.read_text(errors="replace").splitlines() if t.strip()]
        self.stop(f"worker exited ({self.process.wait()}): {tail[-1] if tail else 'no output'}")
        return None

    def timed(self, workload: str, out: Path) -> float | None:
        return self.ask(json.dumps([workload, str(out)]))

    def stop(self, why: str | None = None) -> None:
        self.failed = self.failed or why
        self.process.kill()
        self.process.wait()


def mean_tokens(folder: Path, texts: list[str]) -> float:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    limit = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    tokenizer.enable_truncation(limit)
    tokenizer.no_padding()  # tokenizer.json pads to a fixed 128
    return float(np.mean([len(e.ids) for e in tokenizer.encode_batch(texts)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", type=int, default=1500, help="distinct STS-B dev sentences")
    parser.add_argument("--long", type=int, default=300, help="SciFact abstracts")
    parser.add_argument("--rows", nargs="*", help="keep rows whose name contains one of these")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return

    from skembed import _locate
    from skembed.datasets import read_stsb

    os.environ.update(OFFLINE)
    folder = _locate.find_model("default").path
    pairs = read_stsb(STSB_DEV)
    texts = {
        "short": list(dict.fromkeys(pairs.first + pairs.second))[: args.short],
        "long": read_scifact(args.long),
    }
    train = read_stsb(STSB_TRAIN)
    calibration = list(dict.fromkeys(train.first + train.second))
    rows = [("peer", name, spec) for name, spec in PEER_ROWS.items()]
    rows += [("skembed", name, spec) for name, spec in SKEMBED_ROWS.items()]
    if args.rows:
        wanted = [s.lower() for s in args.rows]
        rows = [r for r in rows if r[1] == REFERENCE or any(s in r[1].lower() for s in wanted)]
    peers_python = ensure_peers_venv()

    scratch = tempfile.TemporaryDirectory(prefix="skembed-peers-")
    workers: dict[str, Worker] = {}
    best: dict[tuple[str, str], float] = {}
    try:
        for kind, name, spec in rows:
            print(f"loading {name} ...", flush=True)
            start = {"name": name, "spec": spec, "folder": str(folder), "texts": texts}
            if spec.get("export") == "static":
                start["calibration"] = calibration
            python = peers_python if kind == "peer" else sys.executable
            workers[name] = Worker(python, kind, name, start, Path(scratch.name))
        running = [name for name, w in workers.items() if not w.failed]
        for round_ in range(args.rounds):
            for workload in texts:
                for name in running if round_ % 2 == 0 else running[::-1]:
                    w = workers[name]
                    if w.failed:
                        continue
                    # the previous worker's thread pools (OpenMP, ONNX Runtime, TBB) may
                    # still spin for a moment: let them park before this clock starts
                    time.sleep(0.2)
                    seconds = w.timed(workload, w.folder / f"{workload}.npy")
                    if seconds is not None:
                        best[name, workload] = min(best.get((name, workload), np.inf), seconds)
        vectors = {
            (name, workload): unit(np.load(w.folder / f"{workload}.npy"))
            for name, w in workers.items()
            for workload in texts
            if not w.failed
        }
    finally:
        for w in workers.values():
            w.stop()

    tokens = {workload: mean_tokens(folder, t) for workload, t in texts.items()}
    print(
        f"\n{datetime.date.today()}; CPU {cpu_model()}; every library at its default threads "
        f"({os.cpu_count()} CPUs); best of {args.rounds} alternating rounds.\n"
        f"short: {len(texts['short']):,} distinct STS-B dev sentences, {tokens['short']:.1f} "
        f"tokens on average; long: {len(texts['long']):,} SciFact abstracts, "
        f"{tokens['long']:.1f} tokens on average (truncated at 256).\n"
        f"peers ({PEERS_VENV.name}): {versions(peers_python, PEER_PACKAGES)}\n"
        f"skembed ({Path(sys.prefix).name}, {git_revision()}): "
        f"{versions(sys.executable, MAIN_PACKAGES)}\n"
    )
    header = (
        "| method | short texts/s | × ST torch | long texts/s | × ST torch "
        "| lowest cosine to ST torch (short / long) | mean cosine (short / long) |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, w in workers.items():
        if w.failed:
            continue
        cells = []
        for workload, t in texts.items():
            speed = len(t) / best[name, workload]
            ratio = best.get((REFERENCE, workload), np.nan) / best[name, workload]
            cells += [f"{speed:,.1f}", f"{ratio:.2f}"]
        cos = {
            workload: np.sum(vectors[name, workload] * vectors[REFERENCE, workload], axis=1)
            if (REFERENCE, workload) in vectors
            else np.full(1, np.nan)
            for workload in texts
        }
        cells.append(" / ".join(f"{c.min():.5f}" for c in cos.values()))
        cells.append(" / ".join(f"{c.mean():.5f}" for c in cos.values()))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nHow each row ran:")
    for name, w in workers.items():
        print(f"- {name}: " + (f"skipped: {w.failed}" if w.failed else w.note))


if __name__ == "__main__":
    main()
