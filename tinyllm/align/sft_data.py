"""Supervised fine-tuning data: JSONL files -> conversations -> token ids -> masked batches.

One example per line, in any of three formats (the first key found decides):

    {"prompt": "...", "response": "..."}                         (optional "system")
    {"instruction": "...", "input": "...", "output": "..."}       Alpaca; "input" may be empty
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}

Each becomes a list of messages, rendered by `tinyllm.align.template.render` into ids and a
mask of the tokens to learn. An example longer than the model's context (block_size + 1 tokens,
since inputs and targets are shifted by one) is cut at the end; one with no trainable token left
is dropped. `tokenize_examples` counts what was kept, truncated and dropped (with the reason).

Targets: position t predicts token t + 1, and the loss counts it only when token t + 1 is
trainable; everywhere else the target is IGNORE (-100), which the cross-entropy skips, so prompt
tokens and padding contribute exactly zero loss and zero gradient.

Two ways to batch (`SFTBatches(mode=...)`):
  "pad"  (the default) one example per row, rows padded on the right to the longest example of
         the batch. Right padding never leaks into real tokens under causal attention, and each
         example is seen alone, exactly as at chat time.
  "pack" examples laid end to end in rows of block_size + 1 tokens (an example that does not fit
         starts the next row): no compute is spent on padding, which pays when examples are many
         and short, but an example can attend to the unrelated ones before it in its row.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyllm.align.template import check_messages, render

IGNORE = -100


class SFTDataError(ValueError):
    """A data file that cannot be read; the message names the file and line."""


@dataclass
class Example:
    messages: list
    source: str = ""  # "file:line", for messages about this example


# --- reading ----------------------------------------------------------------------------------
def _need(record, name, where):
    if name not in record:
        raise SFTDataError(f"{where}: missing field {name!r}")
    if not isinstance(record[name], str):
        raise SFTDataError(f"{where}: field {name!r} must be a string")
    return record[name]


def record_to_messages(record, where="record"):
    """The conversation in one JSON record of any supported format."""
    if not isinstance(record, dict):
        raise SFTDataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        try:
            check_messages(record["messages"], "messages")
        except ValueError as err:
            raise SFTDataError(f"{where}: {err}") from None
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    if "instruction" in record:
        instruction = _need(record, "instruction", where)
        extra = record.get("input") or ""
        if not isinstance(extra, str):
            raise SFTDataError(f"{where}: field 'input' must be a string")
        user = instruction + ("\n\n" + extra if extra else "")
        return [{"role": "user", "content": user},
                {"role": "assistant", "content": _need(record, "output", where)}]
    if "prompt" in record:
        messages = []
        if "system" in record:
            messages.append({"role": "system", "content": _need(record, "system", where)})
        messages.append({"role": "user", "content": _need(record, "prompt", where)})
        messages.append({"role": "assistant", "content": _need(record, "response", where)})
        return messages
    raise SFTDataError(f"{where}: no known fields (found {sorted(record)}); expected "
                       "prompt/response, instruction/input/output, or messages")


def jsonl_records(path, error=ValueError):
    """(record, "file:line") for each non-blank line of a JSONL file; a missing file, text that
    is not UTF-8 or a line that is not JSON raises `error` naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        yield record, where


def read_jsonl(path):
    """Examples from a JSONL file; blank lines are skipped, anything else that is not a
    supported record is an error naming the file and line."""
    examples = [Example(record_to_messages(record, where), where)
                for record, where in jsonl_records(path, SFTDataError)]
    if not examples:
        raise SFTDataError(f"{path}: no examples")
    return examples


# --- tokenizing -------------------------------------------------------------------------------
@dataclass
class DataReport:
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)  # reason -> count

    def to_dict(self):
        return {"kept": self.kept, "truncated": self.truncated, "dropped": dict(self.dropped)}

    def __str__(self):
        dropped = sum(self.dropped.values())
        why = "".join(f"; {n} {reason}" for reason, n in sorted(self.dropped.items()))
        return (f"{self.kept} examples kept ({self.truncated} truncated to the block size), "
                f"{dropped} dropped{why}")


def tokenize_examples(examples, tok, block_size):
    """[(ids, trainable mask)] for the examples that fit, and a DataReport."""
    report, sequences = DataReport(), []
    limit = block_size + 1  # inputs are ids[:-1], targets ids[1:]
    for ex in examples:
        if not any(m["role"] == "assistant" for m in ex.messages):
            report.dropped["without an assistant message"] += 1
            continue
        ids, mask = render(tok, ex.messages)
        if len(ids) > limit:
            ids, mask = ids[:limit], mask[:limit]
            if not any(mask[1:]):
                report.dropped["with no assistant token within the block size"] += 1
                continue
            report.truncated += 1
        report.kept += 1
        sequences.append((np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=bool)))
    return sequences, report


def targets_for(ids, mask):
    """Inputs ids[:-1] and targets ids[1:], with IGNORE where the target is not trainable."""
    y = np.where(mask[1:], ids[1:], IGNORE)
    return ids[:-1], y


# --- batching ---------------------------------------------------------------------------------
def pad_batch(sequences, pad_id):
    """(x, y) of shape (B, L): one example per row, L = the longest example minus one."""
    L = max(len(ids) for ids, _ in sequences) - 1
    x = np.full((len(sequences), L), pad_id, dtype=np.int64)
    y = np.full((len(sequences), L), IGNORE, dtype=np.int64)
    for row, (ids, mask) in enumerate(sequences):
        xi, yi = targets_for(ids, mask)
        x[row, :len(xi)], y[row, :len(yi)] = xi, yi
    return x, y


def pack_rows(sequences, block_size, pad_id):
    """(x, y) of shape (rows, block_size): examples end to end, a new row when one does not fit."""
    rows, current = [], []
    for ids, mask in sequences:
        if current and sum(len(i) for i, _ in current) + len(ids) > block_size + 1:
            rows.append(current)
            current = []
        current.append((ids, mask))
    if current:
        rows.append(current)
    joined = [(np.concatenate([i for i, _ in r]), np.concatenate([m for _, m in r])) for r in rows]
    x, y = pad_batch(joined, pad_id)
    if x.shape[1] < block_size:  # same width every batch
        extra = block_size - x.shape[1]
        x = np.pad(x, ((0, 0), (0, extra)), constant_values=pad_id)
        y = np.pad(y, ((0, 0), (0, extra)), constant_values=IGNORE)
    return x, y


class SFTBatches:
    """Shuffled batches over epochs, resumable: `state_dict()` / `load_state_dict()` hold the
    epoch order and the position, so a resumed run sees exactly the batches it would have.

    mode "pad": `batch_size` examples per batch. mode "pack": `batch_size` rows, filled from
    the shuffled examples in order (see the module docstring)."""

    def __init__(self, sequences, batch_size, block_size, pad_id, mode="pad", seed=0):
        if mode not in ("pad", "pack"):
            raise ValueError(f"batching mode must be 'pad' or 'pack', got {mode!r}")
        if not sequences:
            raise ValueError("no training examples to batch")
        self.sequences, self.batch_size, self.block_size = sequences, batch_size, block_size
        self.pad_id, self.mode = pad_id, mode
        self.rng = np.random.default_rng(seed)
        self.epoch, self.pos = 0, 0
        self.order = self.rng.permutation(len(sequences))

    def _next_index(self):
        if self.pos >= len(self.order):  # a new epoch, in a new order
            self.epoch, self.pos = self.epoch + 1, 0
            self.order = self.rng.permutation(len(self.sequences))
        return self.order[self.pos]

    def _take(self):
        sequence = self.sequences[self._next_index()]
        self.pos += 1
        return sequence

    def next_batch(self):
        if self.mode == "pad":
            return pad_batch([self._take() for _ in range(self.batch_size)], self.pad_id)
        rows, length, chosen = 1, 0, []
        while True:  # take examples until batch_size rows are full
            ids, _ = self.sequences[self._next_index()]
            if length and length + len(ids) > self.block_size + 1:
                if rows == self.batch_size:
                    break
                rows, length = rows + 1, 0
            chosen.append(self._take())
            length += len(ids)
        return pack_rows(chosen, self.block_size, self.pad_id)

    def state_dict(self):
        return {"epoch": self.epoch, "pos": self.pos, "order": self.order.tolist(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.epoch, self.pos = state["epoch"], state["pos"]
        self.order = np.asarray(state["order"], dtype=np.int64)
        self.rng.bit_generator.state = state["rng"]
