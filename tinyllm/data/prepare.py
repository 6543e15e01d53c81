"""The whole data pipeline: files in, ``train.bin`` / ``val.bin`` / ``meta.json`` out.

`prepare` runs in two passes so that memory stays bounded whatever the corpus size:

1. **Clean.** Stream every document from the inputs; normalise it, apply the quality filters,
   drop exact and near duplicates (in batches of about a megabyte, for NumPy), and append the
   survivors to a temporary file in the output folder. The first `tokenizer_sample_mb`
   megabytes of training documents are kept in memory as the tokenizer's training text.
2. **Tokenize.** Train the tokenizer on that sample if none was given, then read the kept
   documents back one batch at a time, encode each, append the end-of-text token after it, and
   stream the ids into the two token files. Documents go to validation by position, exactly as
   `tinyllm.data.corpus.is_validation` says (number 9, 19, 29, ... for a tenth).

Inputs are paths of files or folders (see `tinyllm.data.corpus.iter_documents`) or the names
``builtin:pydoc`` / ``builtin:stdlib`` of the built-in corpora.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tinyllm.data.clean import CleaningReport, FilterConfig, check_quality, normalize
from tinyllm.data.corpus import builtin_documents, is_validation, iter_documents, iter_files
from tinyllm.data.dataset import TokenWriter, token_dtype
from tinyllm.data.dedup import Deduplicator

__all__ = ["prepare", "EmptyCorpusError", "EOT", "BUILTIN_PREFIX"]

EOT = "<|endoftext|>"  # the special token written after every document
BUILTIN_PREFIX = "builtin:"
_BATCH_BYTES = 1 << 20  # documents are deduplicated and tokenized about 1 MB at a time
_LENGTH = struct.Struct("<I")  # length prefix of each document in the temporary file
# The tokenizer caches the encodings of chunks and whole lines. On a large corpus of mostly
# unique lines that cache holds hundreds of megabytes of lines never seen again, so we empty
# it after every this many bytes of text (it refills with the frequent chunks at once).
_CLEAR_CACHE_BYTES = 16 << 20


class EmptyCorpusError(ValueError):
    """Nothing survived cleaning; the message shows the cleaning report."""

    def __init__(self, report: CleaningReport) -> None:
        self.report = report
        super().__init__(
            "no documents left after cleaning, filtering and de-duplication:\n" + report.format()
        )


# --------------------------------------------------------------------------------------------
# Reading the inputs
# --------------------------------------------------------------------------------------------


def _input_documents(inputs: list[str], report: CleaningReport, log) -> Iterator[str]:
    """All documents of all inputs, in order; unreadable files are recorded in `report`."""

    def on_error(path: str, error: str) -> None:
        report.skip_file(path, error)
        log(f"skipped unreadable input {path}: {error}")

    for item in inputs:
        if item.startswith(BUILTIN_PREFIX):
            yield from builtin_documents(item[len(BUILTIN_PREFIX) :])
        else:
            yield from iter_documents([item], on_error=on_error)


def _input_bytes(inputs: list[str]) -> int:
    """Total size of the inputs as stored (file sizes; text size for built-in corpora)."""
    total = 0
    for item in inputs:
        if item.startswith(BUILTIN_PREFIX):
            docs = builtin_documents(item[len(BUILTIN_PREFIX) :])
            total += sum(len(d.encode("utf-8")) for d in docs)
        else:
            for path in iter_files([item]):
                try:
                    total += path.stat().st_size
                except OSError:
                    pass  # reported when the file is read
    return total


def _batches(docs: Iterable[str], batch_bytes: int) -> Iterator[list[str]]:
    batch, size = [], 0
    for doc in docs:
        batch.append(doc)
        size += len(doc)
        if size >= batch_bytes:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


# --------------------------------------------------------------------------------------------
# The temporary file of kept documents: a length-prefixed UTF-8 string per document
# --------------------------------------------------------------------------------------------


def _write_doc(f, text: str) -> int:
    data = text.encode("utf-8")
    f.write(_LENGTH.pack(len(data)))
    f.write(data)
    return len(data)


def _read_docs(path: Path) -> Iterator[str]:
    with open(path, "rb") as f:
        while header := f.read(_LENGTH.size):
            (length,) = _LENGTH.unpack(header)
            yield f.read(length).decode("utf-8")


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


def _load_tokenizer(tokenizer):
    if tokenizer is None or hasattr(tokenizer, "encode_ordinary"):
        return tokenizer
    from tinyllm.tokenizer import BPETokenizer

    return BPETokenizer.load(tokenizer)


def _eot_id(tokenizer) -> int:
    eot = tokenizer.special_tokens.get(EOT)
    if eot is None:
        raise ValueError(
            f"the tokenizer has no {EOT!r} special token, which separates documents in the "
            f"token files; train one with special_tokens=[{EOT!r}]"
        )
    return eot


def prepare(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    tokenizer=None,
    vocab_size: int = 4096,
    val_fraction: float = 0.1,
    filters: FilterConfig | None = None,
    dedup_threshold: float = 0.8,
    near_dedup: bool = True,
    tokenizer_sample_mb: float = 20.0,
    pattern: str = "gpt4",
    progress: bool = True,
    batch_bytes: int = _BATCH_BYTES,
) -> dict:
    """Clean, filter, de-duplicate and tokenize `inputs` into `out_dir`; return a summary.

    Args:
        inputs: paths of files or folders, or ``"builtin:pydoc"`` / ``"builtin:stdlib"``.
        out_dir: created if needed; receives ``train.bin``, ``val.bin``, ``meta.json`` and
            ``tokenizer.json`` (a copy of the tokenizer used, so the folder stands alone).
        tokenizer: a `BPETokenizer`, the path of a saved one, or None to train one with
            `vocab_size` and `pattern` on the first `tokenizer_sample_mb` MB of training text.
            It must have the ``<|endoftext|>`` special token.
        val_fraction: fraction of the kept documents that go to ``val.bin``.
        filters: quality thresholds (`FilterConfig` defaults when None).
        dedup_threshold, near_dedup: near-duplicate similarity threshold, and whether to look
            for near duplicates at all (exact duplicates are always removed).
        progress: show progress bars and stage messages on stderr.

    Raises:
        EmptyCorpusError: if no document survives cleaning (the message shows the report).
        FileNotFoundError: if an input path does not exist.

    The returned dict is the content of ``meta.json`` plus ``"timings"`` (seconds per stage)
    and ``"input_bytes"``.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    inputs = [os.fspath(item) for item in inputs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    filters = filters or FilterConfig()
    tokenizer_source = os.fspath(tokenizer) if isinstance(tokenizer, str | os.PathLike) else None
    tokenizer = _load_tokenizer(tokenizer)
    if tokenizer is not None:
        _eot_id(tokenizer)  # fail before the long first pass, not after it

    def log(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    timings = {"clean_s": 0.0, "dedup_s": 0.0, "tokenizer_train_s": 0.0, "tokenize_s": 0.0}
    report = CleaningReport()
    temp_path = out_dir / ".kept_documents.tmp"
    try:
        # ---- pass 1: clean, filter, de-duplicate, keep ----------------------------------
        input_bytes = _input_bytes(inputs)
        deduplicator = Deduplicator(threshold=dedup_threshold, near=near_dedup)
        sample: list[str] = []
        sample_budget = int(tokenizer_sample_mb * 1e6) if tokenizer is None else 0
        kept = 0
        kept_bytes = 0
        bar = _progress_bar(progress, None, "cleaning", unit="doc")
        with open(temp_path, "wb") as temp:
            cleaned = _clean_documents(inputs, filters, report, timings, log, bar)
            for batch in _batches(cleaned, batch_bytes):
                start = time.perf_counter()
                reasons = deduplicator.check_batch(batch)
                timings["dedup_s"] += time.perf_counter() - start
                for text, reason in zip(batch, reasons):
                    if reason is not None:
                        report.drop(text, reason)
                        continue
                    report.keep(text)
                    kept_bytes += _write_doc(temp, text)
                    if sample_budget > 0 and not is_validation(kept, val_fraction):
                        sample.append(text)
                        sample_budget -= len(text)
                    kept += 1
        bar.close()
        if kept == 0:
            raise EmptyCorpusError(report)
        log(f"kept {kept:,} of {report.docs_seen:,} documents ({kept_bytes / 1e6:.1f} MB)")

        # ---- the tokenizer ------------------------------------------------------------------
        trained = tokenizer is None
        if trained:
            from tinyllm.tokenizer import BPETokenizer

            if not sample:
                raise ValueError("no training text for the tokenizer: raise tokenizer_sample_mb")

            log(f"training a {vocab_size}-token tokenizer on {len(sample):,} documents")
            start = time.perf_counter()
            tokenizer = BPETokenizer.train(sample, vocab_size, pattern=pattern,
                                           special_tokens=[EOT], progress=progress)  # fmt: skip
            timings["tokenizer_train_s"] = time.perf_counter() - start
        del sample
        tokenizer.save(out_dir / "tokenizer.json")

        # ---- pass 2: tokenize ---------------------------------------------------------------
        start = time.perf_counter()
        counts = _tokenize(temp_path, out_dir, tokenizer, kept, kept_bytes, val_fraction,
                           batch_bytes, progress)  # fmt: skip
        timings["tokenize_s"] = time.perf_counter() - start
    finally:
        temp_path.unlink(missing_ok=True)

    meta = {
        "format": "tinyllm-tokens",
        "version": 1,
        "files": {"train": "train.bin", "val": "val.bin"},
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "tokenizer": {
            "file": "tokenizer.json",
            "vocab_size": tokenizer.vocab_size,
            "eot_token": EOT,
            "eot_id": _eot_id(tokenizer),
            "trained": trained,
            "source": tokenizer_source,
        },
        "counts": counts,
        "cleaning": report.to_dict(),
        "sources": inputs,
        "settings": {
            "val_fraction": val_fraction,
            "dedup_threshold": dedup_threshold,
            "near_dedup": near_dedup,
            "filters": asdict(filters),
            "tokenizer_sample_mb": tokenizer_sample_mb if trained else None,
            "pattern": pattern if trained else None,
        },
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {**meta, "out_dir": str(out_dir), "input_bytes": input_bytes, "timings": timings}


def _clean_documents(inputs, filters, report, timings, log, bar) -> Iterator[str]:
    """Normalised documents that pass the quality filters; dropped ones go to `report`.

    The time spent here, reading and HTML parsing included, is added to ``timings["clean_s"]``.
    """
    docs = _input_documents(inputs, report, log)
    while True:
        start = time.perf_counter()
        try:
            raw = next(docs)
        except StopIteration:
            timings["clean_s"] += time.perf_counter() - start
            return
        text = normalize(raw)
        reason = check_quality(text, filters)
        timings["clean_s"] += time.perf_counter() - start
        bar.update(1)
        if reason is None:
            yield text
        else:
            report.drop(text, reason)


def _tokenize(temp_path, out_dir, tokenizer, n_docs, total_bytes, val_fraction, batch_bytes,
              progress) -> dict:  # fmt: skip
    """Encode the kept documents into train.bin and val.bin; return per-split counts."""
    eot = _eot_id(tokenizer)
    # A corpus of two or more documents always gets a validation document: the last one, if
    # the every-k-th rule picked none.
    n_val = sum(is_validation(i, val_fraction) for i in range(n_docs))
    force_last = val_fraction > 0 and n_val == 0 and n_docs >= 2
    counts = {split: {"docs": 0, "tokens": 0, "bytes": 0} for split in ("train", "val")}
    bar = _progress_bar(progress, total_bytes, "tokenizing")
    with (TokenWriter(out_dir / "train.bin", tokenizer.vocab_size) as train,
          TokenWriter(out_dir / "val.bin", tokenizer.vocab_size) as val):  # fmt: skip
        index = since_clear = 0
        for batch in _batches(_read_docs(temp_path), batch_bytes):
            ids = {"train": [], "val": []}
            for text in batch:
                split = "val" if is_validation(index, val_fraction) else "train"
                if force_last and index == n_docs - 1:
                    split = "val"
                # encode_ordinary: a literal "<|endoftext|>" inside a document is just text.
                doc_ids = tokenizer.encode_ordinary(text)
                doc_ids.append(eot)
                ids[split].append(doc_ids)
                size = len(text.encode("utf-8"))
                counts[split]["docs"] += 1
                counts[split]["tokens"] += len(doc_ids)
                counts[split]["bytes"] += size
                bar.update(size)
                index += 1
            since_clear += sum(len(text) for text in batch)
            if since_clear >= _CLEAR_CACHE_BYTES and hasattr(tokenizer, "clear_cache"):
                tokenizer.clear_cache()
                since_clear = 0
            for split, writer in (("train", train), ("val", val)):
                if ids[split]:
                    writer.write(np.concatenate([np.asarray(x, dtype=np.int64)
                                                 for x in ids[split]]))  # fmt: skip
    bar.close()
    return counts


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool, total: int | None, desc: str, unit: str = "B"):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # imported here: only the command line needs it

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", file=sys.stderr)
