"""Benchmark of the data pipeline: prepare a generated corpus, report speed and peak memory.

    python benchmarks/bench_data.py            # 200 MB, a few minutes
    python benchmarks/bench_data.py --mb 20    # quicker

A corpus of `--mb` megabytes is generated on disk first: English-like text from a Zipf-
distributed vocabulary of made-up words, mostly as ``.jsonl`` shards, some ``.html`` pages and
``.txt`` files, with about 4% exact duplicates, 4% near duplicates (a few words changed) and 3%
junk for the filters. Then ``prepare`` runs in a child process, so that its peak resident
memory (``ru_maxrss``) is measured alone. One JSON line is printed: MB/s for cleaning
(reading, HTML extraction, normalisation, filters), de-duplication and tokenizing, all per MB
of input, the tokenizer's training time, document counts and the peak memory; the target is a
peak under 500 MB for 200 MB of input.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

import numpy as np

SYLLABLES = ("ka ri to na mi lo se ta ve po du la ne shi ro mu fa ge bi zo tha "
             "pen dor gal wir mon tes lin ber cas sul vor hal").split()  # fmt: skip


def make_vocabulary(rng: np.random.Generator, size: int = 20_000):
    """Made-up words of 1 to 4 syllables, with Zipf probabilities; some carry punctuation."""
    n_syll = rng.integers(1, 5, size)
    words = ["".join(rng.choice(SYLLABLES, k)) for k in n_syll]
    words[:12] = ["the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was"]
    words = words + [w + "," for w in words[:2000]] + [w + "." for w in words[:3000]]
    p = 1.0 / np.arange(1, len(words) + 1) ** 1.05
    rng.shuffle(p[12:])  # punctuated forms get ordinary, not top, frequencies
    return np.array(words, dtype=object), np.cumsum(p / p.sum())


def make_document(rng, words, cdf, n_words: int) -> str:
    picked = words[np.searchsorted(cdf, rng.random(n_words))]
    paragraphs = np.array_split(picked, max(1, n_words // 120))
    return "\n\n".join(" ".join(p).capitalize() for p in paragraphs if len(p))


def make_junk(rng) -> str:
    kind = rng.integers(3)
    if kind == 0:
        return "Click here"
    if kind == 1:
        return "\n".join(" ".join(str(x) for x in rng.integers(0, 10**6, 8)) for _ in range(40))
    return "{}[]|<>#=+*" * int(rng.integers(20, 80))


def generate_corpus(root: Path, megabytes: float, seed: int = 0) -> int:
    """Write about `megabytes` MB of documents under `root`; return the bytes written."""
    rng = np.random.default_rng(seed)
    words, cdf = make_vocabulary(rng)
    (root / "jsonl").mkdir(parents=True)
    (root / "html").mkdir()
    (root / "txt").mkdir()
    target, written, n = int(megabytes * 1e6), 0, 0
    recent: list[str] = []
    shard = open(root / "jsonl" / "shard000.jsonl", "w", encoding="utf-8")  # noqa: SIM115
    while written < target:
        r = rng.random()
        if r < 0.04 and recent:
            text = recent[int(rng.integers(len(recent)))]  # exact duplicate
        elif r < 0.08 and recent:
            tokens = recent[int(rng.integers(len(recent)))].split(" ")
            for i in rng.integers(0, len(tokens), 3):  # near duplicate: 3 words changed
                tokens[i] = "changed"
            text = " ".join(tokens)
        elif r < 0.11:
            text = make_junk(rng)
        else:
            text = make_document(rng, words, cdf, int(rng.integers(150, 1500)))
            recent = (recent + [text])[-50:]
        kind = rng.random()
        if kind < 0.08:
            body = "".join(f"<p>{p}</p>\n" for p in text.split("\n\n"))
            page = (f"<html><head><title>Page {n}</title><style>p {{margin: 0}}</style>"
                    f"<script>track({n});</script></head><body><nav>Home | About</nav>"
                    f"{body}<!-- footer --></body></html>")  # fmt: skip
            (root / "html" / f"page{n:06d}.html").write_text(page, encoding="utf-8")
            written += len(page)
        elif kind < 0.16:
            (root / "txt" / f"doc{n:06d}.txt").write_text(text, encoding="utf-8")
            written += len(text)
        else:
            line = json.dumps({"id": n, "text": text}) + "\n"
            shard.write(line)
            written += len(line)
            if shard.tell() > 16_000_000:  # start a new shard every 16 MB
                shard.close()
                shard = open(root / "jsonl" / f"shard{n:06d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        n += 1
    shard.close()
    return written


def _run_prepare(corpus: str, out: str, vocab_size: int, sample_mb: float, queue) -> None:
    from tinyllm.data.prepare import prepare

    summary = prepare([corpus], out, vocab_size=vocab_size, tokenizer_sample_mb=sample_mb,
                      progress=False)  # fmt: skip
    queue.put(summary)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="corpus size in MB")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--tokenizer-sample-mb", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", help="where to put the corpus (default: a temporary folder)")
    args = parser.parse_args(argv)

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    try:
        start = time.perf_counter()
        generated_bytes = generate_corpus(work / "corpus", args.mb, args.seed)
        generate_s = time.perf_counter() - start

        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        child = context.Process(target=_run_prepare, args=(str(work / "corpus"), str(work / "out"),
                                args.vocab_size, args.tokenizer_sample_mb, queue))  # fmt: skip
        start = time.perf_counter()
        child.start()
        summary = None
        while summary is None and (child.is_alive() or not queue.empty()):
            try:
                summary = queue.get(timeout=1.0)
            except Empty:
                pass
        child.join()
        total_s = time.perf_counter() - start
        if summary is None or child.exitcode != 0:
            print(f"prepare failed with exit code {child.exitcode}", file=sys.stderr)
            return 1
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    t = summary["timings"]
    mb = summary["input_bytes"] / 1e6
    cleaning, counts = summary["cleaning"], summary["counts"]
    result = {
        "benchmark": "data_prepare",
        "input_mb": round(mb, 1),
        "generated_mb": round(generated_bytes / 1e6, 1),
        "generate_s": round(generate_s, 1),
        "clean_mb_s": round(mb / t["clean_s"], 1),
        "dedup_mb_s": round(mb / t["dedup_s"], 1),
        "tokenize_mb_s": round(mb / t["tokenize_s"], 2),
        "tokenizer_train_s": round(t["tokenizer_train_s"], 1),
        "total_s": round(total_s, 1),
        "peak_rss_mb": round(peak_mb, 1),
        "peak_under_500mb": peak_mb < 500,
        "docs_seen": cleaning["docs_seen"],
        "docs_kept": cleaning["docs_kept"],
        "dropped": {reason: v["docs"] for reason, v in cleaning["dropped"].items()},
        "train_tokens": counts["train"]["tokens"],
        "val_tokens": counts["val"]["tokens"],
        "test_tokens": counts["test"]["tokens"],
        "vocab_size": summary["tokenizer"]["vocab_size"],
        "dtype": summary["dtype"],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
