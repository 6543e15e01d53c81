"""Evaluation: how good is a trained model, with honest error bars.

    scoring.py          LMScorer: log-likelihood of continuations, batched exactly
    mc_data.py          MMLU CSV folders, JSONL multiple-choice and completion sets
    multiple_choice.py  three scoring methods (letter, loglik, generate) and `complete`
    stats.py            per-subject / micro / macro accuracy, chance, centered accuracy, bootstrap
    builtin_sets.py     a multiple-choice set made from held-out documentation (no download)
    perplexity.py       perplexity and bits per byte over whole texts
    report.py           the report card of one or more runs
    cli.py              `tinyllm eval`, `tinyllm report`, `tinyllm pipeline`
"""
