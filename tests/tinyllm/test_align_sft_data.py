"""SFT data: the three JSONL formats, one-line errors, the report, batches and loss masking."""

import json

import numpy as np
import pytest

import autograd as ag
from autograd import functional as F
from tests.tinyllm.align_helpers import chat_tokenizer
from tinyllm.align.sft_data import (
    IGNORE,
    SFTBatches,
    SFTDataError,
    pack_rows,
    pad_batch,
    read_jsonl,
    tokenize_examples,
)
from tinyllm.model import GPT, GPTConfig


def write(tmp_path, lines, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_three_formats_become_the_same_kind_of_conversation(tmp_path):
    path = write(tmp_path, [
        {"prompt": "What is 2 + 3?", "response": "5"},
        "",
        {"instruction": "Add the numbers.", "input": "2 3", "output": "5"},
        {"instruction": "Say hi.", "output": "hi"},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    ])
    examples = read_jsonl(path)
    assert [e.source for e in examples] == [f"{path}:1", f"{path}:3", f"{path}:4", f"{path}:5"]
    assert examples[0].messages == [{"role": "user", "content": "What is 2 + 3?"},
                                    {"role": "assistant", "content": "5"}]
    assert examples[1].messages[0] == {"role": "user", "content": "Add the numbers.\n\n2 3"}
    assert examples[2].messages[0] == {"role": "user", "content": "Say hi."}
    assert [m["role"] for m in examples[3].messages] == ["system", "user", "assistant"]


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "x"', r"data.jsonl:2: not valid JSON"),
    ('{"prompt": "x"}', r"data.jsonl:2: missing field 'response'"),
    ('{"instruction": "x"}', r"data.jsonl:2: missing field 'output'"),
    ('{"prompt": "x", "response": 5}', r"data.jsonl:2: field 'response' must be a string"),
    ('{"text": "x"}', r"data.jsonl:2: no known fields"),
    ('[1, 2]', r"data.jsonl:2: expected a JSON object"),
    ('{"messages": [{"role": "user"}]}', r"data.jsonl:2: messages\[0\]: missing field 'content'"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', r"data.jsonl:2: .*role 'robot'"),
])
def test_a_bad_line_is_an_error_naming_file_line_and_field(tmp_path, line, message):
    path = write(tmp_path, ['{"prompt": "a", "response": "b"}', line])
    with pytest.raises(SFTDataError, match=message):
        read_jsonl(path)


def test_missing_or_empty_file_is_an_error(tmp_path):
    with pytest.raises(SFTDataError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(SFTDataError, match="no examples"):
        read_jsonl(write(tmp_path, [""]))


def test_report_counts_kept_truncated_and_dropped_with_reasons(tmp_path):
    tok = chat_tokenizer()
    path = write(tmp_path, [
        {"prompt": "hi", "response": "hello"},  # fits
        {"prompt": "hi", "response": "hello " * 40},  # answer cut at the block size
        {"prompt": "hello " * 40, "response": "x"},  # the prompt alone fills the block
        {"messages": [{"role": "user", "content": "only a question"}]},
    ])
    sequences, report = tokenize_examples(read_jsonl(path), tok, block_size=24)
    assert report.to_dict() == {"kept": 2, "truncated": 1, "dropped": {
        "with no assistant token within the block size": 1, "without an assistant message": 1}}
    assert "2 examples kept (1 truncated" in str(report)
    assert max(len(ids) for ids, _ in sequences) == 25


def sequences_for(pairs):
    tok = chat_tokenizer()
    from tinyllm.align.sft_data import Example

    examples = [Example([{"role": "user", "content": p}, {"role": "assistant", "content": r}])
                for p, r in pairs]
    return tok, tokenize_examples(examples, tok, block_size=32)[0]


PAIRS = [("What is 2 + 3?", "5"), ("Reverse the list: a b c", "c b a"), ("Hello", "Hello, world!"),
         ("Sort these numbers: 3 1 2", "1 2 3"), ("What is 1 + 1?", "2")]


def test_padded_batch_targets_only_assistant_tokens():
    tok, seqs = sequences_for(PAIRS[:3])
    x, y = pad_batch(seqs, pad_id=0)
    assert x.shape == y.shape == (3, max(len(i) for i, _ in seqs) - 1)
    for row, (ids, mask) in enumerate(seqs):
        n = len(ids) - 1
        np.testing.assert_array_equal(x[row, :n], ids[:-1])
        assert (x[row, n:] == 0).all() and (y[row, n:] == IGNORE).all()  # padding ignored
        learned = y[row][y[row] != IGNORE]
        np.testing.assert_array_equal(learned, ids[1:][mask[1:]])
        answer = tok.decode(learned.tolist())
        assert answer == PAIRS[row][1] + "<|end|>"


def test_packed_rows_hold_several_examples_and_the_same_targets():
    _, seqs = sequences_for(PAIRS)
    x, y = pack_rows(seqs, block_size=64, pad_id=0)
    assert x.shape[1] == 64 and x.shape[0] < len(seqs)
    padded_targets = sorted(pad_batch(seqs, 0)[1][pad_batch(seqs, 0)[1] != IGNORE].tolist())
    assert sorted(y[y != IGNORE].tolist()) == padded_targets


@pytest.mark.parametrize("mode", ["pad", "pack"])
def test_batches_resume_exactly_from_their_state(mode):
    _, seqs = sequences_for(PAIRS)
    a = SFTBatches(seqs, batch_size=2, block_size=32, pad_id=0, mode=mode, seed=3)
    for _ in range(3):
        a.next_batch()
    state = json_round_trip(a.state_dict())
    b = SFTBatches(seqs, batch_size=2, block_size=32, pad_id=0, mode=mode, seed=99)
    assert a.mode == mode
    b.load_state_dict(state)
    for _ in range(6):  # across epoch boundaries
        for u, v in zip(a.next_batch(), b.next_batch()):
            np.testing.assert_array_equal(u, v)


def json_round_trip(obj):
    return json.loads(json.dumps(obj))


def test_every_example_is_seen_once_per_epoch():
    _, seqs = sequences_for(PAIRS)
    batches = SFTBatches(seqs, batch_size=1, block_size=32, pad_id=0, seed=0)
    firsts = [tuple(batches.next_batch()[0][0, :8]) for _ in range(len(seqs))]
    assert sorted(firsts) == sorted(tuple(ids[:8]) for ids, _ in seqs)


@pytest.mark.parametrize("mode", ["pad", "pack"])
def test_prompt_and_padding_positions_get_exactly_zero_gradient(mode):
    tok, seqs = sequences_for(PAIRS)
    x, y = (pad_batch(seqs, 0) if mode == "pad" else pack_rows(seqs, 64, 0))
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2,
                          n_embd=16, dtype="float64"), seed=0)
    logits, _ = model(x)
    logits = ag.Tensor(logits.data, requires_grad=True)  # a leaf, to read d loss / d logits
    loss = F.cross_entropy(logits, y)
    loss.backward()
    grad = logits.grad
    ignored = y == IGNORE
    assert ignored.sum() > 0 and (~ignored).sum() > 0
    assert (grad[ignored] == 0.0).all()  # exactly zero, not just small
    assert (np.abs(grad[~ignored]).sum(axis=-1) > 0).all()
