"""``tinyllm prepare``: turn text files into token files for training.

    tinyllm prepare --input corpus/ notes.jsonl --vocab-size 4096 --out data/mine
    tinyllm prepare --input builtin:pydoc --tokenizer tok.json --out data/pydoc

See `tinyllm.data.prepare.prepare` for what happens, step by step.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run_prepare"]


def register(subparsers) -> None:
    """Add the ``prepare`` sub-command to the ``tinyllm`` command line."""
    from tinyllm.data.clean import FilterConfig

    defaults = FilterConfig()
    p = subparsers.add_parser(
        "prepare",
        help="clean, de-duplicate and tokenize text into train.bin / val.bin / test.bin",
        description=(
            "Clean (HTML to text, Unicode normalisation, quality filters), de-duplicate "
            "(exact and MinHash near duplicates) and tokenize a corpus into train.bin, val.bin, "
            "test.bin, tokenizer.json and meta.json. Inputs are files or folders of .txt, .md, "
            ".html and .jsonl (a 'text' field), or builtin:pydoc / builtin:stdlib. The folder is "
            "written aside and renamed into place when complete; validation and test text "
            "never train the tokenizer."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--input",
        "-i",
        nargs="+",
        action="extend",
        required=True,
        default=argparse.SUPPRESS,  # required: no "(default: None)" in the help
        metavar="PATH",
        help="input files or folders, or builtin:pydoc / builtin:stdlib",
    )
    p.add_argument(
        "--out", "-o", required=True, default=argparse.SUPPRESS, metavar="DIR", help="output folder"
    )
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--tokenizer", metavar="PATH", help="a saved tokenizer (JSON) to use")
    tok.add_argument(
        "--vocab-size",
        type=int,
        default=4096,
        metavar="N",
        help="train a tokenizer of this size when --tokenizer is not given",
    )
    p.add_argument("--pattern", default="gpt4", help="split pattern of a trained tokenizer")
    p.add_argument(
        "--tokenizer-sample-mb",
        type=float,
        default=20.0,
        metavar="MB",
        help="train the tokenizer on the first MB megabytes of training text",
    )
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of documents held out for validation")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="fraction of documents held out for the final test")
    p.add_argument(
        "--dedup-threshold",
        type=float,
        default=0.8,
        help="Jaccard similarity above which two documents are near duplicates",
    )
    p.add_argument("--no-near-dedup", action="store_true", help="remove exact duplicates only")
    p.add_argument(
        "--min-chars", type=int, default=defaults.min_chars, help="drop documents shorter than this"
    )
    p.add_argument(
        "--max-line-chars",
        type=int,
        default=defaults.max_line_chars,
        help="drop documents with a longer line",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run_prepare)


def run_prepare(args) -> int:
    """Run ``tinyllm prepare`` from parsed arguments; print the summary; return 0."""
    from dataclasses import replace

    from tinyllm.data.clean import CleaningReport, FilterConfig
    from tinyllm.data.prepare import prepare

    filters = replace(FilterConfig(), min_chars=args.min_chars, max_line_chars=args.max_line_chars)
    summary = prepare(
        args.input,
        args.out,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        filters=filters,
        dedup_threshold=args.dedup_threshold,
        near_dedup=not args.no_near_dedup,
        tokenizer_sample_mb=args.tokenizer_sample_mb,
        pattern=args.pattern,
        progress=not args.quiet,
    )
    cleaning = summary["cleaning"]
    counts = summary["counts"]
    print(CleaningReport.from_dict(cleaning).format())
    for split in ("train", "val", "test"):
        c = counts[split]
        print(
            f"{split}.bin: {c['tokens']:,} tokens from {c['docs']:,} documents "
            f"({c['bytes'] / max(1, c['tokens']):.2f} bytes/token)"
        )
    print(
        f"wrote {summary['out_dir']}/{{train.bin, val.bin, test.bin, meta.json, tokenizer.json}} "
        f"({summary['dtype']}, vocabulary {summary['tokenizer']['vocab_size']:,})"
    )
    if cleaning["files_skipped"]:
        print(f"warning: {cleaning['files_skipped']} unreadable input(s) skipped", file=sys.stderr)
    return 0
