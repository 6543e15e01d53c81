"""`tinyllm eval`, `tinyllm report` and `tinyllm pipeline`.

    tinyllm eval RUN --task ppl --data builtin:pydoc [--split val] [--stride 64]
    tinyllm eval RUN --task mc --data MMLU/data [--method letter|loglik|generate] [--shots 5]
    tinyllm eval RUN --task complete --data builtin:nextline
    tinyllm report RUN [RUN ...] [--out DIR]
    tinyllm pipeline [--out DIR] [--preset tiny|small]

`eval` prints a table and merges its result (numbers, intervals, per-item scores) into
RUN/eval.json (or the file given by --out) under the key "TASK:DATA".
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers):
    e = subparsers.add_parser(
        "eval", help="perplexity, multiple-choice or completion accuracy of a run",
        description="Evaluate a run. Accuracy comes with its chance line and a bootstrap 95%% "
                    "interval; the result is merged into RUN/eval.json.")
    e.add_argument("run_dir", metavar="RUN")
    e.add_argument("--task", choices=("ppl", "mc", "complete"), required=True)
    e.add_argument("--data", default=None,
                   help="ppl: FILE|DIR|builtin:pydoc|prepared folder (default builtin:pydoc); "
                        "mc: MMLU folder or CSV, JSONL, or builtin:nextline; complete: JSONL or "
                        "builtin:nextline (the default for mc and complete)")
    e.add_argument("--split", default="val",
                   help="ppl: which split of a built-in corpus or prepared folder (default val)")
    e.add_argument("--stride", type=int, default=None,
                   help="ppl: sliding window step (default: the block size, non-overlapping)")
    e.add_argument("--max-tokens", type=int, default=None,
                   help="ppl: score a seeded sample of windows when the text is longer")
    e.add_argument("--method", choices=("letter", "loglik", "generate"), default="loglik",
                   help="mc: how to pick an answer (see tinyllm/evaluate/multiple_choice.py)")
    e.add_argument("--shots", type=int, default=0, help="mc: worked examples in the prompt")
    e.add_argument("--dev", default=None, help="mc: where few-shot examples come from")
    e.add_argument("--norm", choices=("byte", "token", "none"), default="byte",
                   help="loglik/complete: length normalisation of a choice's log-likelihood")
    e.add_argument("--limit", type=int, default=None, help="score only the first N items")
    e.add_argument("--batch-size", type=int, default=16)
    e.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples")
    e.add_argument("--seed", type=int, default=0, help="bootstrap and sampling seed")
    e.add_argument("--out", default=None, help="JSON file to write (default RUN/eval.json)")
    e.add_argument("--quiet", action="store_true", help="no progress display")
    e.set_defaults(func=run_eval)

    r = subparsers.add_parser("report", help="the report card of one or more runs",
                              description="Write report.md and report.json (and plots) for "
                                          "the runs, read from their summary.json and eval.json.")
    r.add_argument("runs", nargs="+", metavar="RUN")
    r.add_argument("--out", default=None, help="folder for the report (default: the last RUN)")
    r.set_defaults(func=run_report)

    p = subparsers.add_parser("pipeline", help="every phase end to end on the built-in corpus",
                              description="Prepare data, train a tokenizer, pre-train, fine-tune "
                                          "(SFT), align (DPO), evaluate and report; each stage a "
                                          "resumable run folder under --out.")
    p.add_argument("--out", default="runs/pipeline")
    p.add_argument("--preset", choices=("tiny", "small"), default="small")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_pipeline)


def _mc_data(args, run_dir: Path):
    from tinyllm.evaluate.builtin_sets import drop_seen, load_builtin
    from tinyllm.evaluate.mc_data import load_completion, load_multiple_choice

    data = args.data or "builtin:nextline"
    seen_dropped = None
    if data.startswith("builtin:"):
        mcset = load_builtin(data[len("builtin:"):], seed=args.seed)
        text = training_text(run_dir)
        if text is not None:
            mcset, seen_dropped = drop_seen(mcset, text)
    elif args.task == "complete":
        mcset = load_completion(data)
    else:
        mcset = load_multiple_choice(data, dev=args.dev)
    if args.limit:
        mcset.items = mcset.items[: args.limit]
    if not mcset.items:
        raise ValueError(f"{data}: no items left to score")
    return mcset, seen_dropped


def training_text(run_dir, max_tokens: int = 20_000_000):
    """The text a run pre-trained on (its prepared train.bin, decoded), when it can be found
    and is not huge; None otherwise."""
    from tinyllm.evaluate.report import prepared_folder

    folder = prepared_folder(Path(run_dir))
    if folder is None:
        return None
    import numpy as np

    from tinyllm.data.dataset import read_tokens
    from tinyllm.tokenizer import BPETokenizer

    try:
        # only the tokens matter here: a folder from an older tinyllm still counts
        tokens = read_tokens(folder / "train.bin", check_folder=False)
        if len(tokens) > max_tokens:
            return None
        return BPETokenizer.load(folder / "tokenizer.json").decode(np.asarray(tokens).tolist())
    except (ValueError, OSError) as err:  # e.g. a folder from an older tinyllm
        print(f"note: not checked against the training text ({err})", file=sys.stderr)
        return None


def run_eval(args) -> int:
    from tinyllm.evaluate.runs import load_run, record_result
    from tinyllm.evaluate.tables import format_accuracy_table, format_ppl_table

    run_dir = Path(args.run_dir)
    model, tok, _ = load_run(run_dir)
    progress = not args.quiet
    if args.task == "ppl":
        from tinyllm.evaluate.ppl_task import evaluate_perplexity

        data = args.data or "builtin:pydoc"
        result = evaluate_perplexity(model, tok, data, split=args.split, stride=args.stride,
                                     batch_size=args.batch_size, max_tokens=args.max_tokens,
                                     seed=args.seed, progress=progress)
        key = f"ppl:{data}:{args.split}" + (f":stride{args.stride}" if args.stride else "")
        table = format_ppl_table(result)
    else:
        from tinyllm.evaluate.multiple_choice import evaluate_completion, evaluate_multiple_choice
        from tinyllm.evaluate.scoring import LMScorer

        mcset, seen = _mc_data(args, run_dir)
        scorer = LMScorer(model, tok, batch_size=args.batch_size)
        if args.task == "complete":
            stats, records = evaluate_completion(scorer, mcset, norm=args.norm,
                                                 resamples=args.resamples, seed=args.seed,
                                                 progress=progress)
            key = f"complete:{mcset.name}"
        else:
            stats, records = evaluate_multiple_choice(
                scorer, mcset, method=args.method, shots=args.shots, norm=args.norm,
                resamples=args.resamples, seed=args.seed, progress=progress)
            key = f"mc:{args.method}:{mcset.name}"
        if seen is not None:
            stats["dropped_seen_in_training"] = seen
        result = {**stats, "items": records}
        table = format_accuracy_table(stats)
    result["run"] = str(run_dir)
    out = Path(args.out) if args.out else run_dir / "eval.json"
    record_result(out, key, result)
    print(table)
    print(f"written to {out} (key {key!r})", file=sys.stderr)
    return 0


def run_report(args) -> int:
    from tinyllm.evaluate.report import write_report

    paths = write_report(args.runs, args.out)
    print(Path(paths["markdown"]).read_text())
    print(f"written {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0


def run_pipeline(args) -> int:
    from tinyllm.pipeline import run_pipeline as pipeline

    result = pipeline(args.out, preset=args.preset, progress=not args.quiet)
    print(Path(result["report"]).read_text())
    return 0
