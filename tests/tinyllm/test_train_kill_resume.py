"""The short version of benchmarks/kill_resume.py: a tiny run killed with SIGKILL twice (once
at a random moment, once during a checkpoint write), resumed, ends bit-identical."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("kill_resume", ROOT / "benchmarks" / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_at_random_moments_resumes_bit_identically(tmp_path):
    from tinyllm.data.prepare import prepare

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}: the quick fox {i} jumps. " * 8)
    prepare([str(corpus)], tmp_path / "data", vocab_size=300, progress=False)
    extra = ("--preset", "tiny", "--n-layer", "1", "--n-embd", "32", "--block-size", "16",
             "--batch-size", "4", "--eval-tokens", "64", "--sample-tokens", "4")
    result = load_benchmark().kill_resume(tmp_path / "data", tmp_path, trials=1, kills=2,
                                          steps=16, eval_interval=2, extra=extra, seed=1)
    assert result["result"] == "1 of 1 bit-identical", result
    assert result["kills_landed"] >= 1, result
