"""GPT-2 124M through `tinyllm import`: peak memory of the import against the file's size (and
against reading the file whole), then sampling speed with the KV cache. Prints one JSON object.

    python benchmarks/bench_gpt2.py [HF_GPT2_FOLDER] [--tokens 32]

With a folder (config.json, model.safetensors, vocab.json + merges.txt, e.g. a local copy of
the `gpt2` model) the real weights are used and the sample is printed: it should read as English.
Without one (no model hub is reachable here) a randomly initialised model of GPT-2 124M's shape
is written to a temporary HF folder, with a small tokenizer; the JSON says `"weights": "random"`.
Each phase runs in its own process so that its peak memory is its own: `peak_rss_mb` is the
kernel's high-water mark (it counts the memory-mapped file's pages once they are read) and
`peak_anon_mb` the largest private (anonymous) memory seen, polled every 5 ms.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tinyllm.hf import convert  # noqa: E402
from tinyllm.hf.files import write_safetensors  # noqa: E402
from tinyllm.model import GPTConfig, weight_shapes  # noqa: E402

GPT2_124M = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB -> MB
    return float("nan")


class PeakMemory:
    """Polls this process's anonymous memory in a thread; `report()` adds the kernel's peak RSS."""

    def __init__(self):
        self.peak_anon, self._running = _status("RssAnon"), True
        self.baseline_rss = _status("VmRSS")
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while self._running:
            self.peak_anon = max(self.peak_anon, _status("RssAnon"))
            time.sleep(0.005)

    def report(self):
        self._running = False
        self._thread.join()
        return {"peak_rss_mb": round(_status("VmHWM")), "peak_anon_mb": round(self.peak_anon),
                "baseline_rss_mb": round(self.baseline_rss)}


def write_random_gpt2(folder: Path):
    """An HF GPT-2 folder with random weights of the 124M shape (names are ours: GPT-2's)."""
    from tinyllm.tokenizer import BPETokenizer

    folder.mkdir(parents=True, exist_ok=True)
    hf = convert.config_to_hf(GPT2_124M, {})
    (folder / "config.json").write_text(json.dumps(hf))
    rng = np.random.default_rng(0)

    def make(name, shape):
        if name.endswith("weight") and len(shape) == 1:  # norm gains
            return lambda: np.ones(shape, np.float32)
        return lambda: 0.02 * rng.standard_normal(shape, dtype=np.float32)

    write_safetensors(folder / "model.safetensors",
                      {n: (s, make(n, s)) for n, s in weight_shapes(GPT2_124M).items()},
                      {"format": "pt"})
    tok = BPETokenizer.train((ROOT / "README.md").read_text(), 512, pattern="gpt2",
                             special_tokens=["<|endoftext|>"])
    tok.save_gpt2_files(folder / "vocab.json", folder / "merges.txt")


def phase_import(folder, run):
    from tinyllm.hf import import_hf

    memory = PeakMemory()
    start = time.perf_counter()
    import_hf(folder, run)
    return {"seconds": round(time.perf_counter() - start, 2), **memory.report()}


def phase_read_whole(folder, _run):
    """For contrast: the plain reader (reads the file, then copies each tensor out)."""
    from tinyllm.safetensors import load_file

    memory = PeakMemory()
    tensors, _ = load_file(Path(folder) / "model.safetensors")
    return {"tensors": len(tensors), **memory.report()}


def phase_sample(run, tokens):
    import tinyllm

    memory = PeakMemory()
    start = time.perf_counter()
    model, tok = tinyllm.load(run)
    load_s = time.perf_counter() - start
    prompt = np.array([tok.encode("The meaning of life is")])
    model.generate(prompt, 2, temperature=1.0, top_k=40, seed=0)  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    out = model.generate(prompt, int(tokens), temperature=1.0, top_k=40, seed=0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"load_seconds": round(load_s, 2), "new_tokens": int(tokens),
            "tokens_per_s": round(int(tokens) / seconds, 2),
            # CPU time spent, all threads: less sensitive to other processes on the machine
            "cpu_seconds_per_token": round(cpu_seconds / int(tokens), 3),
            # a random model picks ids its small stand-in tokenizer lacks: those are left out
            "sample": tok.decode([i for i in out[0].tolist() if i < tok.vocab_size]),
            **memory.report()}


def in_subprocess(*args):
    result = subprocess.run([sys.executable, __file__, "--phase", *map(str, args)],
                            capture_output=True, text=True, check=False)
    if result.returncode:
        sys.exit(f"phase {args[0]} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="a local Hugging Face GPT-2 folder")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens to sample")
    parser.add_argument("--phase", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        name, *rest = args.phase
        phases = {"import": phase_import, "read_whole": phase_read_whole, "sample": phase_sample}
        print(json.dumps(phases[name](*rest)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder) if args.folder else Path(tmp) / "gpt2-random"
        if not args.folder:
            write_random_gpt2(folder)
        size_mb = (folder / "model.safetensors").stat().st_size / 2**20
        run = Path(tmp) / "run"
        report = {"weights": "real" if args.folder else "random (GPT-2 124M shape, no hub here)",
                  "file_mb": round(size_mb), "import": in_subprocess("import", folder, run),
                  "read_whole_file": in_subprocess("read_whole", folder, run),
                  "sample": in_subprocess("sample", run, args.tokens),
                  "cpu_count": os.cpu_count()}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
