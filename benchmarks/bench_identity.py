"""What the whole-folder identity costs: hashing every file that changes a vector.

skembed 0.1.0 hashed the weights alone; the identity (skembed._identity) also hashes the
config, tokenizer and sentence-transformers files. Each round runs in a fresh process (the
imports done first, nothing cached in the process) and times:

- ``SentenceEmbedder().fit`` of the default model, cold;
- ``identify(folder)`` alone, cold, and the weights alone, cold (0.1.0's fingerprint): their
  difference is what the identity adds to a cold fit;
- a second ``fit`` in the same process, and ``identify`` when every file is hashed already.

Best of N rounds. The operating system's file cache is warm in every round (the model was
read before), as it is on a machine that uses the model.

    python benchmarks/_identity.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

ROUND = r"""
import json, time
from skembed import SentenceEmbedder, _identity, _models
path = _locate.find_model("default").path
start = time.perf_counter(); SentenceEmbedder().fit(["x"]); cold_fit = time.perf_counter() - start
start = time.perf_counter(); SentenceEmbedder().fit(["x"]); warm_fit = time.perf_counter() - start
start = time.perf_counter(); _identity.identify(path); warm_identify = time.perf_counter() - start
_identity._file_hashes.clear()
start = time.perf_counter(); _identity.identify(path); cold_identify = time.perf_counter() - start
_identity._file_hashes.clear()
start = time.perf_counter(); _identity.legacy_fingerprint(path)
weights = time.perf_counter() - start
print(json.dumps(dict(cold_fit=cold_fit, warm_fit=warm_fit, warm_identify=warm_identify,
                      cold_identify=cold_identify, weights=weights,
                      files=len(_identity.identify(path).files))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", ROUND], capture_output=True, text=True, check=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(args.rounds)
    ]
    best = {key: min(run[key] for run in runs) for key in runs[0]}
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?"
    )
    added = best["cold_identify"] - best["weights"]
    print(
        f"default model, {best['files']} files in its identity; best of {args.rounds} fresh "
        f"processes; CPU {model}\n"
    )
    print("| what | seconds |")
    print("|---|---|")
    print(f"| first `fit` in a process (identity hashed cold) | {best['cold_fit']:.3f} |")
    print(f"| hashing the weights alone (0.1.0's fingerprint), cold | {best['weights']:.4f} |")
    print(f"| hashing every identity file, cold | {best['cold_identify']:.4f} |")
    print(
        f"| what the identity adds to the first fit | {added:.4f} "
        f"({added / (best['cold_fit'] - added):.2%} of a fit without it) |"
    )
    print(f"| second `fit` in the same process | {best['warm_fit']:.4f} |")
    print(f"| `identify` with every file hashed already | {best['warm_identify']:.6f} |")


if __name__ == "__main__":
    main()
