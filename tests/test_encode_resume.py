"""`skembed encode --resume`: a run killed half-way goes on from the rows it wrote, and the
result equals an uninterrupted run; a changed input or model is refused. Real processes."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from skembed.cli import main
from test_encode_output import start_encode


def _state(output: Path) -> Path:
    return output.with_name(f".{output.name}.resume.json")


def _kill_after_some_chunks(source: Path, output: Path, model: str) -> int:
    """Start a resumable run, SIGKILL it once it recorded a few chunks; return rows recorded."""
    process = start_encode(source, output, model, "--resume")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            rows = json.loads(_state(output).read_text())["rows"]
        except (OSError, ValueError, KeyError):
            rows = 0
        if rows >= 1_000:
            break
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    return json.loads(_state(output).read_text())["rows"]


def test_a_killed_run_resumes_and_equals_an_uninterrupted_run(big_input, tiny_bert, tmp_path):
    output = tmp_path / "X.npy"
    done = _kill_after_some_chunks(big_input, output, tiny_bert)
    assert 1_000 <= done < 40_000 and not output.exists()
    argv = ["encode", str(big_input), "-o", str(output), "--model", tiny_bert, "--resume"]
    assert main([*argv, "--chunk-size", "5000"]) == 0  # another chunk size is fine
    assert not _state(output).exists() and not list(tmp_path.glob(".*.partial"))
    whole = tmp_path / "whole.npy"
    assert main(["encode", str(big_input), "-o", str(whole), "--model", tiny_bert]) == 0
    np.testing.assert_allclose(np.load(output), np.load(whole), atol=1e-6)


def test_resuming_after_the_input_changed_is_refused(big_input, tiny_bert, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_bytes(big_input.read_bytes())
    output = tmp_path / "X.npy"
    _kill_after_some_chunks(source, output, tiny_bert)
    with source.open("a") as fh:
        fh.write("one more line\n")
    argv = ["encode", str(source), "-o", str(output), "--model", tiny_bert, "--resume"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"skembed: error: cannot resume {output}: input modification time,")
    assert "Run again without --resume to start over" in err


def test_resuming_with_another_model_is_refused(
    big_input, tiny_bert, tiny_roberta, tmp_path, capsys
):
    output = tmp_path / "X.npy"
    _kill_after_some_chunks(big_input, output, tiny_bert)
    argv = ["encode", str(big_input), "-o", str(output), "--model", tiny_roberta, "--resume"]
    assert main(argv) == 2
    assert "model, settings changed since the interrupted run" in capsys.readouterr().err


def test_resume_takes_npy_outputs_only(tiny_bert, tmp_path, capsys):
    source = tmp_path / "t.txt"
    source.write_text("a\nb\n")
    argv = ["encode", str(source), "-o", str(tmp_path / "X.parquet"), "--model", tiny_bert]
    assert main([*argv, "--resume"]) == 2
    assert "--resume writes .npy outputs only" in capsys.readouterr().err


@pytest.mark.parametrize("chunk", ["7", "1000"])
def test_a_resumable_run_without_interruption_equals_a_plain_one(tiny_bert, tmp_path, chunk):
    source = tmp_path / "t.txt"
    source.write_text("\n".join(f"the dog chased the cat {i}" for i in range(50)) + "\n")
    base = ["encode", str(source), "--model", tiny_bert, "--chunk-size", chunk]
    assert main([*base, "-o", str(tmp_path / "a.npy"), "--resume"]) == 0
    assert main([*base, "-o", str(tmp_path / "b.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
