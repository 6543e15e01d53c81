"""Preference data for DPO: a prompt, a chosen response and a rejected one.

One pair per JSONL line, in either form:

    {"prompt": "...", "chosen": "...", "rejected": "..."}            (optional "system")
    {"messages": [...the conversation so far...], "chosen": ..., "rejected": ...}

In the chat form, `messages` is a conversation ending in a user turn (the format of
`tinyllm.align.template`), and `chosen` / `rejected` are either the reply text or an assistant
message {"role": "assistant", "content": ...}.

Each side is rendered with the chat template as prompt + assistant reply; the tokens DPO scores
are the reply's (its content and its `<|end|>`), exactly the tokens SFT learns.

Built-in sets (`builtin:NAME`, seeded, no download) reuse the SFT helper's Q&A tasks
(`tinyllm.align.builtin_qa`, whose train and test questions never overlap):

    builtin:brackets   half the questions end with "Answer in brackets." and prefer the
                       bracketed answer "[5 1 8 3]" over the bare one the SFT model gives;
                       the other half prefer the right answer over a plausible wrong one.
                       The preferred behaviour (a format instruction SFT never taught) is
                       easy to count in greedy samples: `preferred_rate`.
    builtin:correct    every pair prefers the right answer over the plausible wrong one.

Both are built on the `mix` task (reverse, sort, add); `builtin:brackets-reverse` etc. pick one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyllm.align.sft_data import DataReport, jsonl_records
from tinyllm.align.template import check_messages, render

FORMAT_INSTRUCTION = " Answer in brackets."


class PreferenceDataError(ValueError):
    """A preference file that cannot be read; the message names the file and line."""


@dataclass
class Pair:
    prompt: list  # messages, ending in a user turn
    chosen: str
    rejected: str
    source: str = ""
    kind: str = ""  # built-in pairs: "format" or "correct"; "" for files


# ---- reading ---------------------------------------------------------------------------------
def _reply(record, name, where):
    if name not in record:
        raise PreferenceDataError(f"{where}: missing field {name!r}")
    value = record[name]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]  # [{"role": "assistant", ...}], as some exports write it
    if isinstance(value, dict):
        if value.get("role") != "assistant" or not isinstance(value.get("content"), str):
            raise PreferenceDataError(f"{where}: field {name!r} must be a string or an "
                                      "assistant message")
        value = value["content"]
    if not isinstance(value, str):
        raise PreferenceDataError(f"{where}: field {name!r} must be a string")
    return value


def record_to_pair(record, where="record"):
    """The Pair in one JSON record of either supported form."""
    if not isinstance(record, dict):
        raise PreferenceDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        prompt = record["messages"]
        try:
            check_messages(prompt, "messages")
        except ValueError as err:
            raise PreferenceDataError(f"{where}: {err}") from None
        if prompt[-1]["role"] != "user":
            raise PreferenceDataError(f"{where}: messages must end with a user turn (the "
                                      "replies are in 'chosen' and 'rejected')")
        prompt = [{"role": m["role"], "content": m["content"]} for m in prompt]
    elif "prompt" in record:
        if not isinstance(record["prompt"], str):
            raise PreferenceDataError(f"{where}: field 'prompt' must be a string")
        prompt = [{"role": "user", "content": record["prompt"]}]
        if "system" in record:
            if not isinstance(record["system"], str):
                raise PreferenceDataError(f"{where}: field 'system' must be a string")
            prompt.insert(0, {"role": "system", "content": record["system"]})
    else:
        raise PreferenceDataError(f"{where}: missing field 'prompt' (or 'messages'); found "
                                  f"{sorted(record)}")
    return Pair(prompt, _reply(record, "chosen", where), _reply(record, "rejected", where), where)


def read_pairs(path):
    """Pairs from a JSONL file; blank lines skipped, any other bad line an error naming the
    file and line number."""
    pairs = [record_to_pair(record, where)
             for record, where in jsonl_records(path, PreferenceDataError)]
    if not pairs:
        raise PreferenceDataError(f"{path}: no preference pairs")
    return pairs


# ---- built-in sets ---------------------------------------------------------------------------
BUILTIN = ("brackets", "correct")


def builtin_pairs(name, split="train", n=None, seed=0):
    """Seeded pairs of `builtin:NAME[-TASK]` (see the module docstring)."""
    from tinyllm.align.builtin_qa import TASKS, generate_items

    kind, _, task = name.partition("-")
    task = task or "mix"
    if kind not in BUILTIN or task not in TASKS:
        raise PreferenceDataError(f"unknown built-in preference set builtin:{name}; choose "
                                  f"builtin:brackets or builtin:correct (optionally -TASK, "
                                  f"TASK one of {', '.join(TASKS)})")
    pairs = []
    for i, item in enumerate(generate_items(task, split, n, seed)):
        where = f"builtin:{name}:{split}:{i}"
        if kind == "brackets" and i % 2 == 0:
            prompt = [{"role": "user", "content": item.question + FORMAT_INSTRUCTION}]
            pairs.append(Pair(prompt, f"[{item.answer}]", item.answer, where, "format"))
        else:
            prompt = [{"role": "user", "content": item.question}]
            pairs.append(Pair(prompt, item.answer, item.wrong, where, "correct"))
    return pairs


def load_pairs(spec, split="train", n=None, seed=0):
    """`builtin:NAME` or a JSONL path. A file has no split of its own: `split_pairs` cuts one."""
    if str(spec).startswith("builtin:"):
        return builtin_pairs(str(spec)[len("builtin:"):], split, n, seed)
    return read_pairs(spec)


def split_pairs(pairs, test_fraction=0.1, seed=0):
    """(train, test) of a file's pairs: a seeded shuffle, at least one pair held out."""
    if len(pairs) < 2:
        raise PreferenceDataError("need at least 2 preference pairs (one is held out)")
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_test = max(1, int(round(len(pairs) * test_fraction)))
    return [pairs[i] for i in order[n_test:]], [pairs[i] for i in order[:n_test]]


def preferred(pair, reply):
    """Did `reply` (a model's greedy answer) show the preferred behaviour of a built-in pair?
    format pairs: the bracketed right answer; correct pairs: the right answer."""
    return reply.strip() == pair.chosen


# ---- tokenizing ------------------------------------------------------------------------------
def _side(tok, pair, reply):
    """(ids, scored mask) of prompt + reply: True on the reply's tokens and its <|end|>."""
    prefix, _ = render(tok, pair.prompt, open_assistant=True)
    ids, trainable = render(tok, pair.prompt + [{"role": "assistant", "content": reply}])
    scored = np.asarray(trainable, dtype=bool)
    scored[:len(prefix)] = False  # earlier assistant turns of a multi-turn prompt are context
    return np.asarray(ids, dtype=np.int64), scored


def tokenize_pairs(pairs, tok, block_size):
    """[(chosen ids, chosen mask, rejected ids, rejected mask)], the pairs kept (in the same
    order) and a DataReport. A side longer
    than block_size + 1 tokens is cut at the end; a pair with a side that keeps no reply token
    is dropped."""
    report, out, kept = DataReport(), [], []
    limit = block_size + 1
    for pair in pairs:
        sides, cut = [], False
        for reply in (pair.chosen, pair.rejected):
            ids, mask = _side(tok, pair, reply)
            if len(ids) > limit:
                ids, mask, cut = ids[:limit], mask[:limit], True
            sides.append((ids, mask))
        if not all(m[1:].any() for _, m in sides):
            report.dropped["with no reply token within the block size"] += 1
            continue
        report.kept += 1
        report.truncated += cut
        out.append((*sides[0], *sides[1]))
        kept.append(pair)
    return out, kept, report
