"""`skembed encode` writes its output completely or not at all: real runs, real signals."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from skembed import SentenceEmbedder

# big_input (tests/conftest.py): 40,000 texts, seconds of encoding with the tiny model
N_TEXTS = 40_000


def start_encode(source: Path, output: Path, model: str, *extra: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "skembed.cli", "encode", str(source), "-o", str(output)]
    command += ["--model", model, "--chunk-size", "200", *extra]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def partials(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.partial"))


def wait_for_partial(process: subprocess.Popen, folder: Path, timeout: float = 120) -> Path:
    """Return the temporary output once the run has created it (the run is mid-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = partials(folder)
        if found and found[0].stat().st_size > 0:
            return found[0]
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    raise AssertionError("the run never created its temporary output")


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_sigkill_mid_run_leaves_no_file_at_the_output_path(big_input, tiny_bert, tmp_path, suffix):
    output = tmp_path / f"X{suffix}"
    process = start_encode(big_input, output, tiny_bert)
    partial = wait_for_partial(process, tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert not output.exists()
    assert partial.name.startswith(f".X{suffix}.") and partial.name.endswith(".partial")


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_ctrl_c_mid_run_leaves_neither_output_nor_temporary(big_input, tiny_bert, tmp_path, suffix):
    output = tmp_path / f"X{suffix}"
    process = start_encode(big_input, output, tiny_bert)
    wait_for_partial(process, tmp_path)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.rstrip().endswith("skembed: interrupted")
    assert sorted(tmp_path.iterdir()) == []


def test_a_complete_run_renames_the_temporary_to_the_output(tiny_bert, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("I love apples\nthe dog chased the cat\n")
    (tmp_path / "out").mkdir()
    output = tmp_path / "out" / "X.npy"
    process = start_encode(source, output, tiny_bert, "--backend", "torch")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    # the vectors, and which model and settings made them (for SemanticSearch(vectors=...))
    assert sorted(p.name for p in output.parent.iterdir()) == ["X.npy", "X.npy.skembed.json"]
    expected = (
        SentenceEmbedder(model=tiny_bert).fit(["x"]).transform(source.read_text().split("\n")[:2])
    )
    np.testing.assert_allclose(np.load(output), expected, atol=1e-6)


def limit_file_size(n_bytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))

    return apply


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_output(
    big_input, tiny_bert, tmp_path, suffix
):
    # RLIMIT_FSIZE stands for a full disk: writes past 20 kB fail with EFBIG. The .npy file
    # (40,000 x 32 float32, 5 MB) fails when it is created, the Parquet file after a few
    # chunks, mid-run
    output = tmp_path / f"X{suffix}"
    env = {**os.environ, "SKEMBED_HOME": str(tmp_path / "home")}
    process = start_encode(
        big_input, output, tiny_bert, "--backend", "torch",
        env=env, preexec_fn=limit_file_size(20_000),
    )  # fmt: skip
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err.splitlines()[-1] == (
        f"skembed: error: cannot write {output}: no space left on the device or file too "
        "large (File too large); free some space or write it elsewhere. Nothing was written "
        f"to {output}"
    )
    assert not output.exists() and partials(tmp_path) == []
