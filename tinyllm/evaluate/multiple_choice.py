"""Multiple-choice and completion benchmarks: three ways to ask a model for an answer.

Every method turns an item (question, choices, right answer) into prompts, scores them with
`LMScorer`, and picks the choice with the best score. The three methods of the literature:

``letter`` (MMLU's original method, Hendrycks et al. 2021)
    A k-shot prompt in MMLU's layout (subject header; each question with its lettered choices and
    ``Answer: X``; the test question ending in ``Answer:``). The score of each choice is the
    log-probability of its letter (`` A``, `` B``, ...) as the next token, renormalised over the
    letters only: score_i = log p(L_i) - log sum_j p(L_j). Cheap (one forward pass per item)
    but needs a model that has learned the format; a small model sits at chance.

``loglik`` (the "cloze" form, as GPT-3's paper and most harnesses for small models)
    The prompt ``Question: ...\\nAnswer:`` (after k worked examples), and each choice's full text
    (stripped of surrounding whitespace, after one space) as the continuation. Score = the
    summed log-likelihood of the choice's tokens, normalised for length because long choices
    collect more negative log-probability: ``none`` the plain sum; ``token`` the sum / its
    number of tokens; ``byte`` (default) the sum / its number of UTF-8 bytes, which does not
    depend on the tokenizer. The accuracy under each of the three normalisations is reported
    as well.

``generate``
    The ``letter`` prompt, then the model writes up to a few tokens greedily; the first
    alphabetic character of its text, upper-cased, is the answer if it is one of the letters
    (otherwise the item counts as wrong and as unanswered).

``complete`` (HellaSwag style, `evaluate_completion`) is ``loglik`` without a question: the
context itself is the prompt and each ending its continuation (joined by a space unless one
side already has whitespace there).

Few-shot examples are the first k worked examples of the item's subject (MMLU's dev files).
Prompts longer than the model's context lose their oldest tokens first; the number of items
cut that way is reported as ``truncated``.
"""

from __future__ import annotations

import math

import numpy as np

from tinyllm.evaluate.mc_data import LETTERS, MCItem, MCSet
from tinyllm.evaluate.stats import accuracy_report

__all__ = ["METHODS", "NORMS", "letter_prompt", "cloze_prompt", "score_letter", "score_loglik",
           "score_generate", "evaluate_multiple_choice", "evaluate_completion", "join_ending"]

METHODS = ("letter", "loglik", "generate")
NORMS = ("none", "token", "byte")


# ---- prompts ----------------------------------------------------------------------------------
def _subject_title(subject: str) -> str:
    return subject.replace("_", " ")


def _lettered(item: MCItem) -> str:
    lines = [item.question.strip()]
    lines += [f"{LETTERS[i]}. {choice.strip()}" for i, choice in enumerate(item.choices)]
    return "\n".join(lines) + "\nAnswer:"


def letter_prompt(item: MCItem, shots: list[MCItem]) -> str:
    """MMLU's prompt: header, k answered examples, the question ending in 'Answer:'."""
    head = f"The following are multiple choice questions (with answers) about " \
           f"{_subject_title(item.subject)}.\n\n"
    examples = "".join(f"{_lettered(s)} {LETTERS[s.answer]}\n\n" for s in shots)
    return head + examples + _lettered(item)


def cloze_prompt(item: MCItem, shots: list[MCItem]) -> str:
    """'Question: ...\\nAnswer:' after k examples answered with the choice's text."""
    examples = "".join(f"Question: {s.question.strip()}\nAnswer: {s.choices[s.answer].strip()}\n\n"
                       for s in shots)
    return examples + f"Question: {item.question.strip()}\nAnswer:"


def join_ending(context: str, ending: str) -> str:
    """The continuation text for `ending` after `context`: a space between, unless either side
    already has whitespace there (or the context is empty)."""
    if not context or context[-1].isspace() or ending[:1].isspace():
        return ending
    return " " + ending


def _shots(mcset: MCSet, item: MCItem, k: int) -> list[MCItem]:
    return mcset.dev.get(item.subject, [])[:k] if k > 0 else []


# ---- the three methods ------------------------------------------------------------------------
def _choice_letters(n):
    return [" " + LETTERS[i] for i in range(n)]


def score_letter(scorer, items, prompts, progress=None) -> list[dict]:
    """Method ``letter``: renormalised next-token log-probabilities of the answer letters."""
    letter_ids = {n: [scorer.encode(s) for s in _choice_letters(n)]
                  for n in {len(item.choices) for item in items}}
    contexts = [scorer.encode(p) for p in prompts]
    single = all(len(ids) == 1 for ids_list in letter_ids.values() for ids in ids_list)
    if single:  # each letter is one token: one forward pass per item
        logp, truncated = scorer.next_token_logprobs(contexts, progress)
        raw = [logp[i, [ids[0] for ids in letter_ids[len(item.choices)]]]
               for i, item in enumerate(items)]
    else:  # a tokenizer that splits " A": the letter's whole likelihood instead
        requests = [(ctx, ids) for ctx, item in zip(contexts, items)
                    for ids in letter_ids[len(item.choices)]]
        scores = scorer.loglikelihood(requests, progress)
        raw, truncated, at = [], [], 0
        for item in items:
            chunk = scores[at : at + len(item.choices)]
            at += len(item.choices)
            raw.append(np.array([s.logprob for s in chunk]))
            truncated.append(any(s.truncated for s in chunk))
    out = []
    for values, cut in zip(raw, truncated):
        values = np.asarray(values, dtype=np.float64)
        top = values.max()
        restricted = values - (top + math.log(np.exp(values - top).sum()))
        out.append({"pred": int(np.argmax(restricted)), "scores": restricted.tolist(),
                    "truncated": bool(cut)})
    return out


def _normalised(logprob, n_tokens, n_bytes, norm):
    if norm == "none":
        return logprob
    if norm == "token":
        return logprob / max(n_tokens, 1)
    if norm == "byte":
        return logprob / max(n_bytes, 1)
    raise ValueError(f"unknown length normalisation {norm!r}; choose one of {NORMS}")


def score_loglik(scorer, items, contexts, norm="byte", progress=None,
                 strip: bool = False) -> list[dict]:
    """Method ``loglik`` / task ``complete``: each choice's summed log-likelihood as the
    continuation of its context, normalised by `norm`. `contexts[i]` is item i's prompt.
    `strip` (multiple choice) scores each choice without its surrounding whitespace, as an
    answer after 'Answer:'; completion endings are scored as they are."""
    if norm not in NORMS:
        raise ValueError(f"unknown length normalisation {norm!r}; choose one of {NORMS}")
    requests, texts = [], []
    for context, item in zip(contexts, items):
        ctx_ids = scorer.encode(context)
        for choice in item.choices:
            text = join_ending(context, choice.strip() if strip else choice)
            ids = scorer.encode(text)
            if not ids:
                raise ValueError(f"{item.source or 'an item'}: an empty choice cannot be scored")
            requests.append((ctx_ids, ids))
            texts.append(text)
    scores = scorer.loglikelihood(requests, progress)
    out, at = [], 0
    for item in items:
        n = len(item.choices)
        chunk, chunk_texts = scores[at : at + n], texts[at : at + n]
        at += n
        logprob = [s.logprob for s in chunk]
        tokens = [s.n_tokens for s in chunk]
        n_bytes = [len(t.encode("utf-8")) for t in chunk_texts]
        by_norm = {m: [_normalised(lp, t, b, m) for lp, t, b in zip(logprob, tokens, n_bytes)]
                   for m in NORMS}
        out.append({"pred": int(np.argmax(by_norm[norm])), "scores": by_norm[norm],
                    "logprob": logprob, "tokens": tokens, "bytes": n_bytes,
                    "pred_by_norm": {m: int(np.argmax(v)) for m, v in by_norm.items()},
                    "truncated": any(s.truncated for s in chunk)})
    return out


def first_letter(text: str, n_choices: int) -> int | None:
    """The choice named by the first alphabetic character of `text`, or None."""
    for ch in text:
        if ch.isalpha():
            ch = ch.upper()
            return LETTERS.index(ch) if ch in LETTERS[:n_choices] else None
    return None


def score_generate(scorer, items, prompts, max_new_tokens=4, progress=None) -> list[dict]:
    """Method ``generate``: greedy text after the letter prompt; its first letter answers."""
    out = []
    for item, prompt in zip(items, prompts):
        ctx = scorer.encode(prompt)
        text = scorer.greedy_text(ctx, max_new_tokens)
        pred = first_letter(text, len(item.choices))
        out.append({"pred": -1 if pred is None else pred, "text": text,
                    "truncated": len(ctx) > scorer.block_size - max_new_tokens})
        if progress is not None:
            progress.update(1)
    return out


# ---- whole sets -------------------------------------------------------------------------------
def _report(items, results, extra, resamples, seed):
    correct = [r["pred"] == item.answer for item, r in zip(items, results)]
    stats = accuracy_report(correct, [i.subject for i in items], [len(i.choices) for i in items],
                            resamples=resamples, seed=seed)
    records = [{"source": item.source, "subject": item.subject, "answer": item.answer,
                "correct": bool(ok), **r} for item, r, ok in zip(items, results, correct)]
    stats.update(extra)
    stats["truncated"] = int(sum(r["truncated"] for r in results))
    if results and "pred_by_norm" in results[0]:
        stats["accuracy_by_norm"] = {
            m: float(np.mean([r["pred_by_norm"][m] == i.answer for i, r in zip(items, results)]))
            for m in NORMS}
    if results and "text" in results[0]:
        stats["unanswered"] = int(sum(r["pred"] < 0 for r in results))
    return stats, records


def _bar(total, enabled, desc):
    from tinyllm.progress import progress_bar

    return progress_bar(total=total, enabled=enabled, desc=desc, unit="seq")


def evaluate_multiple_choice(scorer, mcset: MCSet, method="loglik", shots=0, norm="byte",
                             resamples=2000, seed=0, progress=False, max_new_tokens=4):
    """Score every item of `mcset` by `method`; returns (stats dict, per-item records)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    items = mcset.items
    if not items:
        raise ValueError(f"{mcset.name}: no questions")
    shot_lists = [_shots(mcset, item, shots) for item in items]
    extra = {"task": "mc", "method": method, "shots": shots, "data": mcset.name,
             "shots_available": min((len(s) for s in shot_lists), default=0)}
    if method == "loglik":
        prompts = [cloze_prompt(i, s) for i, s in zip(items, shot_lists)]
        bar = _bar(sum(len(i.choices) for i in items), progress, "scoring")
        results = score_loglik(scorer, items, prompts, norm, bar, strip=True)
        extra["norm"] = norm
    else:
        prompts = [letter_prompt(i, s) for i, s in zip(items, shot_lists)]
        bar = _bar(len(items), progress, "scoring" if method == "letter" else "generating")
        if method == "letter":
            results = score_letter(scorer, items, prompts, bar)
        else:
            results = score_generate(scorer, items, prompts, max_new_tokens, bar)
    bar.close()
    return _report(items, results, extra, resamples, seed)


def evaluate_completion(scorer, mcset: MCSet, norm="byte", resamples=2000, seed=0,
                        progress=False):
    """HellaSwag-style: the most likely ending of each context; returns (stats, records)."""
    items = mcset.items
    if not items:
        raise ValueError(f"{mcset.name}: no items")
    bar = _bar(sum(len(i.choices) for i in items), progress, "scoring")
    results = score_loglik(scorer, items, [i.question for i in items], norm, bar)
    bar.close()
    extra = {"task": "complete", "method": "loglik", "norm": norm, "data": mcset.name}
    return _report(items, results, extra, resamples, seed)
