"""The whole data pipeline: files in, ``train.bin`` / ``val.bin`` / ``test.bin`` out.

`prepare` runs in two passes so that memory stays bounded whatever the corpus size:

1. **Clean.** Stream every document from the inputs; normalise it, apply the quality filters,
   drop exact and near duplicates (in batches of about a megabyte, for NumPy), and append the
   survivors to a temporary file.
2. **Split.** The kept documents are the units of the split, unless there are fewer than
   `SMALL_CORPUS_DOCS` (20) of them: then each document is cut at paragraph breaks (at line
   ends inside a long paragraph, `tinyllm.data.corpus.cut_into_pieces`) into pieces of about
   1/50 of the corpus (at least `MIN_PIECE_CHARS` characters), and the pieces are the units, so
   that a corpus of one file still gets validation and test text. Units go to train / val /
   test by position (`tinyllm.data.corpus.SplitPlan`: with the default 0.1 and 0.1, units 4,
   14, 24, ... to val and 9, 19, 29, ... to test).
3. **Tokenizer.** If none was given, one is trained on the first `tokenizer_sample_mb`
   megabytes of *training* units: validation and test text never trains the tokenizer.
4. **Tokenize.** The units are read back one batch at a time, encoded and streamed into the
   three token files. The end-of-text token follows each document, and also closes a run of
   pieces where the next piece of the same document went to another split.

**Atomic output.** Everything is written into a hidden temporary folder next to `out_dir`
(``.NAME.preparing-PID``), ``meta.json`` last with ``"complete": true``, and that folder is
then renamed to `out_dir`, replacing an earlier prepared folder only then. An exception or a
kill at any point leaves nothing under the final name but what was there before. Readers
(`tinyllm.data.prepared.load_prepared`, `tinyllm.data.dataset.read_tokens`) refuse a folder
without the marker. ``meta.json`` records the provenance (`tinyllm.data.prepared.provenance`).

Inputs are paths of files or folders (see `tinyllm.data.corpus.iter_documents`) or the names
``builtin:pydoc`` / ``builtin:stdlib`` of the built-in corpora.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tinyllm.data.clean import CleaningReport, FilterConfig, check_quality, normalize
from tinyllm.data.corpus import (
    SplitPlan,
    builtin_documents,
    cut_into_pieces,
    iter_documents,
    iter_files,
)
from tinyllm.data.dataset import TokenWriter, token_dtype
from tinyllm.data.dedup import Deduplicator
from tinyllm.data.prepared import (
    META_FORMAT,
    META_VERSION,
    SPLITS,
    provenance,
    read_meta,
    tokenizer_sha256,
)
from tinyllm.data.staging import (
    check_replaceable,
    move_into_place,
    read_docs,
    remove_stale_temporaries,
    write_doc,
    write_json_atomically,
)

__all__ = ["prepare", "EmptyCorpusError", "EOT", "BUILTIN_PREFIX", "provenance",
           "SMALL_CORPUS_DOCS", "MIN_PIECE_CHARS"]  # fmt: skip

EOT = "<|endoftext|>"  # the special token written after every document
BUILTIN_PREFIX = "builtin:"
_BATCH_BYTES = 1 << 20  # documents are deduplicated and tokenized about 1 MB at a time
# The tokenizer caches the encodings of chunks and whole lines. On a large corpus of mostly
# unique lines that cache holds hundreds of megabytes of lines never seen again, so we empty
# it after every this many bytes of text (it refills with the frequent chunks at once).
_CLEAR_CACHE_BYTES = 16 << 20
# A corpus with fewer kept documents is split by pieces of documents (see the module docstring).
SMALL_CORPUS_DOCS = 20
PIECES_WANTED = 50
MIN_PIECE_CHARS = 256


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


def _batches(docs: Iterable, batch_bytes: int, size=len) -> Iterator[list]:
    """Group `docs` into lists of about `batch_bytes` (as measured by `size`)."""
    batch, total = [], 0
    for doc in docs:
        batch.append(doc)
        total += size(doc)
        if total >= batch_bytes:
            yield batch
            batch, total = [], 0
    if batch:
        yield batch


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
    test_fraction: float = 0.1,
) -> dict:
    """Clean, filter, de-duplicate, split and tokenize `inputs` into `out_dir`; return a summary.

    Args:
        inputs: paths of files or folders, or ``"builtin:pydoc"`` / ``"builtin:stdlib"``.
        out_dir: receives ``train.bin``, ``val.bin``, ``test.bin``, ``meta.json`` and
            ``tokenizer.json`` (a copy of the tokenizer used, so the folder stands alone). It
            is built aside and renamed into place at the end; an existing prepared folder there
            is replaced only then. A folder holding other files is refused.
        tokenizer: a `BPETokenizer`, the path of a saved one, or None to train one with
            `vocab_size` and `pattern` on the first `tokenizer_sample_mb` MB of training text
            (never validation or test text). It must have the ``<|endoftext|>`` special token.
        val_fraction, test_fraction: fractions of the units (documents, or pieces of them for
            a corpus of fewer than 20 documents) held out for ``val.bin`` and ``test.bin``.
        filters: quality thresholds (`FilterConfig` defaults when None).
        dedup_threshold, near_dedup: near-duplicate similarity threshold, and whether to look
            for near duplicates at all (exact duplicates are always removed).
        progress: show progress (a bar on a terminal, plain lines in a log) and stage messages
            on stderr. Warnings are printed whatever its value.

    Raises:
        EmptyCorpusError: if no document survives cleaning (the message shows the report).
        FileNotFoundError: if an input path does not exist.
        ValueError: for a bad argument or an output folder that is not prepared data.

    The returned dict is the content of ``meta.json`` plus ``"timings"`` (seconds per stage),
    ``"input_bytes"`` and ``"out_dir"``.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    inputs = [os.fspath(item) for item in inputs]
    out_dir = Path(out_dir)
    filters = filters or FilterConfig()
    SplitPlan(0, val_fraction, test_fraction)  # check the fractions before any work
    tokenizer = _load_tokenizer(tokenizer)
    if tokenizer is None:
        from tinyllm.tokenizer.patterns import resolve_pattern

        if vocab_size < 257:
            raise ValueError(f"vocab_size must be at least 257 (256 bytes and {EOT}), got "
                             f"{vocab_size}")
        resolve_pattern(pattern)  # a bad pattern fails now, not after the first pass
    if tokenizer is not None:
        _eot_id(tokenizer)  # fail before the long first pass, not after it
    check_replaceable(out_dir)
    origin = provenance(inputs, vocab_size, tokenizer, pattern=pattern,
                        tokenizer_sample_mb=tokenizer_sample_mb, val_fraction=val_fraction,
                        test_fraction=test_fraction, filters=filters,
                        dedup_threshold=dedup_threshold, near_dedup=near_dedup)  # fmt: skip

    def log(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    temp_dir = out_dir.with_name(f".{out_dir.name}.preparing-{os.getpid()}")
    shutil.rmtree(temp_dir, ignore_errors=True)
    temp_dir.mkdir()
    try:
        meta, extra = _prepare_into(inputs, temp_dir, tokenizer, vocab_size, val_fraction,
                                    test_fraction, filters, dedup_threshold, near_dedup,
                                    tokenizer_sample_mb, pattern, progress, batch_bytes, log,
                                    warn)  # fmt: skip
        meta["provenance"] = origin
        meta["warnings"] = warnings
        meta["complete"] = True  # the marker: written last, in the file written last
        write_json_atomically(temp_dir / "meta.json", meta)
        read_meta(temp_dir)  # what we wrote must read back
        move_into_place(temp_dir, out_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    return {**meta, "out_dir": str(out_dir), **extra}


def _prepare_into(inputs, folder: Path, tokenizer, vocab_size, val_fraction, test_fraction,
                  filters, dedup_threshold, near_dedup, tokenizer_sample_mb, pattern, progress,
                  batch_bytes, log, warn) -> tuple[dict, dict]:  # fmt: skip
    """Do the work of `prepare` inside `folder`; return (meta without marker, extra summary)."""
    timings = {"clean_s": 0.0, "dedup_s": 0.0, "tokenizer_train_s": 0.0, "tokenize_s": 0.0}
    report = CleaningReport()
    temp_path = folder / ".kept_documents.tmp"

    # ---- pass 1: clean, filter, de-duplicate, keep ------------------------------------------
    input_bytes = _input_bytes(inputs)
    deduplicator = Deduplicator(threshold=dedup_threshold, near=near_dedup)
    kept = kept_bytes = kept_chars = 0
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
                kept_bytes += write_doc(temp, text)
                kept_chars += len(text)
                kept += 1
    bar.close()
    if kept == 0:
        raise EmptyCorpusError(report)
    log(f"kept {kept:,} of {report.docs_seen:,} documents ({kept_bytes / 1e6:.1f} MB)")

    # ---- the split ----------------------------------------------------------------------------
    piece_chars = None
    if kept < SMALL_CORPUS_DOCS:
        piece_chars = max(MIN_PIECE_CHARS, -(-kept_chars // PIECES_WANTED))
        n_units = sum(1 for _ in _units(temp_path, piece_chars))
        how = (f"validation and test text are pieces cut from inside them (at paragraph "
               f"breaks: {n_units} pieces of up to {piece_chars:,} characters), so they resemble "
               "the training text closely" if n_units > kept else
               "validation and test get very few of them")  # fmt: skip
        warn(f"only {kept} document(s) after cleaning: {how}; {SMALL_CORPUS_DOCS} or more "
             "documents give a more trustworthy held-out score")
    else:
        n_units = kept
    plan = SplitPlan(n_units, val_fraction, test_fraction)
    for split, fraction in (("val", val_fraction), ("test", test_fraction)):
        if fraction > 0 and plan.counts()[split] == 0:
            warn(f"the corpus is too small for a {split} split ({n_units} unit(s)); "
                 f"{split}.bin is empty")

    # ---- the tokenizer --------------------------------------------------------------------------
    trained = tokenizer is None
    if trained:
        from tinyllm.tokenizer import BPETokenizer

        sample, sample_bytes = [], 0
        budget = tokenizer_sample_mb * 1e6
        for index, (text, _) in enumerate(_units(temp_path, piece_chars)):
            if sample_bytes >= budget:
                break
            if plan(index) == "train":
                sample.append(text)
                sample_bytes += len(text.encode("utf-8"))
        if not sample:
            raise ValueError("no training text for the tokenizer: raise tokenizer_sample_mb")
        from tinyllm.tokenizer.train import shortfall_warning, size_warning

        if message := size_warning(len(sample), sample_bytes, vocab_size):
            warn(message)
        log(f"training a {vocab_size}-token tokenizer on {len(sample):,} training units "
            f"({sample_bytes / 1e6:.2f} MB; validation and test text excluded)")
        start = time.perf_counter()
        tokenizer = BPETokenizer.train(sample, vocab_size, pattern=pattern,
                                       special_tokens=[EOT], progress=progress)  # fmt: skip
        timings["tokenizer_train_s"] = time.perf_counter() - start
        del sample
        if message := shortfall_warning(len(tokenizer.merges), vocab_size):
            warn(message)
    tokenizer.save(folder / "tokenizer.json")

    # ---- pass 2: tokenize ---------------------------------------------------------------------
    start = time.perf_counter()
    counts = _tokenize(temp_path, piece_chars, plan, folder, tokenizer, kept_bytes, batch_bytes,
                       progress)  # fmt: skip
    timings["tokenize_s"] = time.perf_counter() - start
    temp_path.unlink()

    meta = {
        "format": META_FORMAT,
        "version": META_VERSION,
        "files": {split: f"{split}.bin" for split in SPLITS},
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "tokenizer": {
            "file": "tokenizer.json",
            "vocab_size": tokenizer.vocab_size,
            "requested_vocab_size": vocab_size if trained else None,
            "merges": len(tokenizer.merges) if hasattr(tokenizer, "merges") else None,
            "sha256": tokenizer_sha256(tokenizer),
            "eot_token": EOT,
            "eot_id": _eot_id(tokenizer),
            "trained": trained,
        },
        "counts": counts,
        "units": {"count": n_units, "piece_chars": piece_chars},
        "cleaning": report.to_dict(),
        "sources": inputs,
        "settings": {
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "dedup_threshold": dedup_threshold,
            "near_dedup": near_dedup,
            "filters": asdict(filters),
            "tokenizer_sample_mb": tokenizer_sample_mb if trained else None,
            "pattern": pattern if trained else None,
        },
    }
    return meta, {"input_bytes": input_bytes, "timings": timings}


def _units(temp_path: Path, piece_chars: int | None) -> Iterator[tuple[str, bool]]:
    """The units of the split, in order, as (text, first piece of its document)."""
    for doc in read_docs(temp_path):
        if piece_chars is None:
            yield doc, True
        else:
            for i, piece in enumerate(cut_into_pieces(doc, piece_chars)):
                yield piece, i == 0


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


def _tokenize(temp_path, piece_chars, plan, folder, tokenizer, total_bytes, batch_bytes,
              progress) -> dict:  # fmt: skip
    """Encode the units into the three token files; return per-split counts.

    ``docs`` counts the runs of text each split holds, each closed by an end-of-text token: a
    whole document, or consecutive pieces of one that went to the same split.
    """
    eot = _eot_id(tokenizer)
    counts = {split: {"docs": 0, "tokens": 0, "bytes": 0} for split in SPLITS}
    bar = _progress_bar(progress, total_bytes, "tokenizing")
    writers = {split: TokenWriter(folder / f"{split}.bin", tokenizer.vocab_size)
               for split in SPLITS}  # fmt: skip
    try:
        index = since_clear = 0
        open_run = None  # the split whose run of text has not been closed by an end-of-text
        units = _units(temp_path, piece_chars)
        for batch in _batches(units, batch_bytes, size=lambda unit: len(unit[0])):
            ids = {split: [] for split in SPLITS}
            for text, first in batch:
                split = plan(index)
                if open_run is not None and (first or split != open_run):
                    ids[open_run].append([eot])
                    counts[open_run]["docs"] += 1
                    counts[open_run]["tokens"] += 1
                # encode_ordinary: a literal "<|endoftext|>" inside a document is just text.
                doc_ids = tokenizer.encode_ordinary(text)
                ids[split].append(doc_ids)
                size = len(text.encode("utf-8"))
                counts[split]["tokens"] += len(doc_ids)
                counts[split]["bytes"] += size
                bar.update(size)
                open_run = split
                index += 1
            since_clear += sum(len(text) for text, _ in batch)
            if since_clear >= _CLEAR_CACHE_BYTES and hasattr(tokenizer, "clear_cache"):
                tokenizer.clear_cache()
                since_clear = 0
            _write_ids(writers, ids)
        if open_run is not None:
            _write_ids(writers, {open_run: [[eot]]})
            counts[open_run]["docs"] += 1
            counts[open_run]["tokens"] += 1
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.close()
    bar.close()
    return counts


def _write_ids(writers, ids) -> None:
    for split, pieces in ids.items():
        if pieces:
            writers[split].write(np.concatenate([np.asarray(x, dtype=np.int64) for x in pieces]))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool, total: int | None, desc: str, unit: str = "B"):
    """A tqdm bar on a terminal; plain periodic lines when stderr is a file (a log: no
    carriage returns), from `tinyllm.progress`; nothing when disabled."""
    if not enabled:
        return _NoBar()
    if not sys.stderr.isatty():
        from tinyllm.progress import progress_bar

        return progress_bar(total=total, desc=desc, unit=unit)
    from tqdm import tqdm  # imported here: only the command line needs it

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", file=sys.stderr,
                mininterval=0.5)
