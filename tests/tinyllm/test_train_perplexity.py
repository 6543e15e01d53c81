"""The whole-split scorer: every token scored exactly once, the numbers equal a brute-force
per-token computation, bits per byte uses the bytes of exactly the scored tokens, and large
splits get a seeded sample. The trainer's evaluation uses it on the whole split."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd as ag
from autograd.backend import asnumpy
from tinyllm.evaluate.perplexity import score_text, score_tokens, token_byte_lengths, windows
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import BPETokenizer


def small_model(block_size=8, vocab_size=40, dropout=0.0, seed=3):
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16,
                    dropout=dropout)
    return GPT(cfg, seed=seed)


def brute_force_nats(model, tokens, context):
    """-ln p(tokens[i] | up to `context` tokens before it), one forward per token."""
    out = []
    with ag.no_grad():
        for i in range(1, len(tokens)):
            ctx = np.asarray(tokens[max(0, i - context):i], dtype=np.int64)[None]
            logits = asnumpy(model(ctx)[0].data)[0, -1].astype(np.float64)
            logits -= logits.max()
            out.append(math.log(np.exp(logits).sum()) - logits[tokens[i]])
    return np.array(out)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(2, 200), block=st.integers(1, 20), data=st.data())
def test_windows_score_every_token_exactly_once(n, block, data):
    stride = data.draw(st.one_of(st.none(), st.integers(1, block)))
    counts = np.zeros(n, dtype=int)
    for start, length, new in windows(n, block, stride):
        assert 1 <= new <= length <= block and start + length <= n - 1
        counts[start + length + 1 - new:start + length + 1] += 1  # the targets it scores
    assert counts[0] == 0 and (counts[1:] == 1).all()


def test_non_overlapping_scores_equal_the_models_own_loss_window_by_window():
    model = small_model()
    tokens = np.random.default_rng(0).integers(0, 40, size=37)  # 4 full windows and one of 4
    result = score_tokens(model, tokens, batch_size=3)
    assert result.tokens == 36 and result.windows == 5 and not result.sampled
    expected = 0.0
    with ag.no_grad():
        for start in range(0, 36, 8):
            chunk = tokens[start:start + 9][None]
            loss = model(chunk[:, :-1], chunk[:, 1:])[1]
            expected += float(asnumpy(loss.data)) * (chunk.shape[1] - 1)
    assert result.nats == pytest.approx(expected, rel=1e-5)
    assert result.loss == pytest.approx(expected / 36, rel=1e-5)


def brute_force_sliding(model, tokens, block, stride):
    """Target i is predicted by the first window that reaches it: window 0 for i <= block, else
    the window starting at ceil((i - block) / stride) * stride; its context starts there."""
    out = []
    with ag.no_grad():
        for i in range(1, len(tokens)):
            start = 0 if i <= block else -(-(i - block) // stride) * stride
            ctx = np.asarray(tokens[start:i], dtype=np.int64)[None]
            logits = asnumpy(model(ctx)[0].data)[0, -1].astype(np.float64)
            logits -= logits.max()
            out.append(math.log(np.exp(logits).sum()) - logits[tokens[i]])
    return np.array(out)


@pytest.mark.parametrize("stride", [1, 3, 8])
def test_sliding_window_equals_brute_force(stride):
    model = small_model()
    tokens = np.random.default_rng(1).integers(0, 40, size=30)
    result = score_tokens(model, tokens, stride=stride, batch_size=4)
    assert result.tokens == 29
    expected = brute_force_sliding(model, tokens, block=8, stride=stride).sum()
    assert result.nats == pytest.approx(expected, rel=1e-5)


def test_bits_per_byte_counts_the_bytes_of_exactly_the_scored_tokens():
    text = "hello world, hello tokens. " * 20
    tok = BPETokenizer.train(text, vocab_size=280, special_tokens=["<|endoftext|>"])
    eot = tok.special_tokens["<|endoftext|>"]
    ids = np.asarray([eot] + tok.encode(text) + [eot] + tok.encode("ab"), dtype=np.int64)
    model = small_model(vocab_size=tok.vocab_size)
    result = score_tokens(model, ids, tokenizer=tok)
    scored_text = tok.decode_bytes([i for i in ids[1:] if i != eot])
    assert result.bytes == len(scored_text) == len(text) + 2
    assert result.bits_per_byte == pytest.approx(result.nats / math.log(2) / result.bytes)
    assert token_byte_lengths(tok)[eot] == 0

    whole = score_text(model, tok, text)  # an end-of-text token in front: all of text counts
    assert whole.bytes == len(text.encode()) and whole.tokens == len(tok.encode(text))


def test_a_large_split_is_a_seeded_sample_with_its_own_bytes():
    text = "".join(chr(97 + i % 26) * (1 + i % 5) for i in range(400))
    tok = BPETokenizer.train(text, vocab_size=300)
    ids = np.asarray(tok.encode(text), dtype=np.int64)
    model = small_model(vocab_size=tok.vocab_size)
    whole = score_tokens(model, ids, tokenizer=tok)
    a = score_tokens(model, ids, tokenizer=tok, max_tokens=40, seed=7)
    b = score_tokens(model, ids, tokenizer=tok, max_tokens=40, seed=7)
    c = score_tokens(model, ids, tokenizer=tok, max_tokens=40, seed=8)
    assert a.sampled and not whole.sampled and a.total_tokens == whole.tokens == len(ids) - 1
    assert 33 <= a.tokens <= 40 and a.windows == 5
    assert (a.nats, a.bytes) == (b.nats, b.bytes)  # same seed, same windows
    assert (a.nats, a.bytes) != (c.nats, c.bytes)
    # One sampled window: its nats and bytes are exactly those of one window of the tiling
    # (the bytes of its own tokens, not the split's average bytes per token).
    one = score_tokens(model, ids, tokenizer=tok, max_tokens=8, seed=3)
    lengths = token_byte_lengths(tok)
    per_window = {int(lengths[ids[s + 1:s + n + 1]].sum()) for s, n, _ in windows(len(ids), 8)}
    assert one.windows == 1 and one.bytes in per_window
    assert one.bytes != pytest.approx(one.tokens * whole.bytes / whole.tokens, abs=0.5)
    assert score_tokens(model, ids, max_tokens=len(ids)).sampled is False


def test_dropout_is_off_while_scoring_and_the_mode_is_restored():
    model = small_model(dropout=0.5)
    tokens = np.arange(20) % 40
    first, second = score_tokens(model, tokens), score_tokens(model, tokens)
    assert first.nats == second.nats and model.training
    model.eval()
    score_tokens(model, tokens)
    assert not model.training


def test_bad_arguments_are_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match="at least 2 tokens"):
        score_tokens(model, np.array([1]))
    with pytest.raises(ValueError, match="stride"):
        score_tokens(model, np.arange(10), stride=9)
    with pytest.raises(ValueError, match="1-D"):
        score_tokens(model, np.zeros((2, 3), dtype=int))


def test_the_trainer_evaluates_the_whole_validation_split(tmp_path):
    from tinyllm.train import TrainConfig, Trainer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):  # 20 documents: numbers 9 and 19 form the validation split
        (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}: the fox {i} jumps; f(x) = {i} * x. " * 8)
    model = dict(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16)
    cfg = TrainConfig(out_dir=str(tmp_path / "run"), data=str(corpus),
                      batch_size=4, max_steps=1, progress=False, model=model)
    trainer = Trainer(cfg, log=lambda m: None)
    metrics = trainer.evaluate()
    val = trainer.eval_data
    assert trainer.eval_split == "val" and len(val) > 100
    # Every validation token after the first, once: no fixed slice, no wrap-around.
    assert metrics["val_tokens"] == len(val) - 1 and not metrics["val_sampled"]
    whole = score_tokens(trainer.model, val, tokenizer=trainer.tok)
    assert metrics["val_loss"] == pytest.approx(whole.loss)
    assert metrics["val_bpb"] == pytest.approx(whole.bits_per_byte)


def test_the_test_split_is_reported_once_at_the_end_when_present(tmp_path):
    import json

    from tinyllm.data.dataset import read_tokens, write_tokens
    from tinyllm.data.prepare import prepare
    from tinyllm.train import TrainConfig, Trainer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}: the fox {i} jumps. " * 8)
    folder = tmp_path / "prepared"
    prepare([str(corpus)], folder, vocab_size=300, progress=False)
    model = dict(vocab_size=300, block_size=16, n_layer=1, n_head=2, n_embd=16)

    def run(name):
        cfg = TrainConfig(out_dir=str(tmp_path / name), data=str(folder), batch_size=4,
                          max_steps=2, eval_interval=2, progress=False, model=model)
        return Trainer(cfg, log=lambda m: None).run()

    if not (folder / "test.bin").exists():  # a folder prepared before the test split existed
        assert not any(k.startswith("test_") for k in run("old"))
        val = np.asarray(read_tokens(folder / "val.bin"))
        write_tokens(folder / "test.bin", val[: len(val) // 2], vocab_size=300)
    test_len = len(read_tokens(folder / "test.bin"))
    summary = run("new")
    assert summary["test_tokens"] == test_len - 1 and summary["test_bpb"] > 0
    assert summary["val_tokens"] > 0
    records = [json.loads(x) for x in (tmp_path / "new" / "metrics.jsonl").read_text().split("\n") if x]
    assert sum("test_loss" in r for r in records) == 1  # never during training
