"""Scoring methods on a hand-made model whose logits are known, and batching on a real GPT."""

import dataclasses

import numpy as np
import pytest

from tests.tinyllm.eval_fakes import EOT, LETTER_IDS, BigramModel, ByteTokenizer, hand_loglik, log_softmax
from tinyllm import GPT, GPTConfig
from tinyllm.evaluate.mc_data import MCItem, MCSet
from tinyllm.evaluate.multiple_choice import (
    cloze_prompt,
    evaluate_completion,
    evaluate_multiple_choice,
    first_letter,
    join_ending,
    letter_prompt,
)
from tinyllm.evaluate.scoring import LMScorer

ITEM = MCItem("What is 2 + 2?", ("three", "four", "five", "twenty-two"), 1, "math", "t:1")


def bigram_table(seed=0, vocab=261):
    return np.random.default_rng(seed).normal(0, 2, size=(vocab, vocab)).astype(np.float32)


def test_loglikelihood_equals_the_hand_computed_sum():
    table = bigram_table()
    scorer = LMScorer(BigramModel(table), ByteTokenizer(letter_tokens=False), batch_size=3)
    tok = scorer.tokenizer
    # plain; empty context; context cut; a continuation longer than the context window
    pairs = [("The cat", " sat"), ("", "Hello"), ("x" * 100, " tail"), ("ab", "yz" * 70)]
    requests = [(tok.encode_ordinary(c), tok.encode_ordinary(t)) for c, t in pairs]
    scores = scorer.loglikelihood(requests)
    for (ctx, cont), score in zip(requests, scores):
        # a bigram model needs only the previous token, so cutting context changes nothing
        expected = hand_loglik(table, ctx or [EOT], cont)
        assert score.logprob == pytest.approx(expected, abs=1e-9)
        assert score.n_tokens == len(cont)
    assert [s.truncated for s in scores] == [False, False, True, False]
    assert scorer.model.calls >= 2


def test_greedy_flag_is_true_only_when_every_token_is_the_argmax():
    table = np.zeros((261, 261), np.float32)
    table[ord("a"), ord("b")] = 5.0
    table[ord("b"), ord("c")] = 5.0
    scorer = LMScorer(BigramModel(table), ByteTokenizer(letter_tokens=False))
    got = scorer.loglikelihood([([ord("a")], [ord("b"), ord("c")]),
                                ([ord("a")], [ord("b"), ord("d")])])
    assert [g.greedy for g in got] == [True, False]


def test_letter_method_renormalises_the_next_token_over_the_letters():
    table = np.zeros((261, 261), np.float32)
    letter_logits = np.array([1.0, 3.0, 2.0, 0.0])
    table[ord(":"), list(LETTER_IDS.values())] = letter_logits
    table[ord(":"), ord("Z")] = 10.0  # a likelier non-letter must not matter
    mc = MCSet([ITEM])
    stats, records = evaluate_multiple_choice(LMScorer(BigramModel(table), ByteTokenizer()), mc,
                                              method="letter", resamples=50)
    np.testing.assert_allclose(records[0]["scores"], log_softmax(letter_logits), atol=1e-12)
    assert records[0]["pred"] == 1 and stats["micro"]["accuracy"] == 1.0


def test_letter_method_with_multi_token_letters_uses_their_whole_likelihood():
    table = bigram_table(1)
    tok = ByteTokenizer(letter_tokens=False)  # " A" is two tokens here
    scorer = LMScorer(BigramModel(table, block_size=512), tok)
    prompt = letter_prompt(ITEM, [])
    _, records = evaluate_multiple_choice(scorer, MCSet([ITEM]), method="letter", resamples=10)
    raw = np.array([hand_loglik(table, tok.encode_ordinary(prompt), tok.encode_ordinary(" " + L))
                    for L in "ABCD"])
    np.testing.assert_allclose(records[0]["scores"], log_softmax(raw), atol=1e-9)
    assert records[0]["pred"] == int(np.argmax(raw))


@pytest.mark.parametrize("norm", ["none", "token", "byte"])
def test_loglik_method_scores_each_choice_by_its_normalised_likelihood(norm):
    table = bigram_table(2)
    tok = ByteTokenizer(letter_tokens=False)
    scorer = LMScorer(BigramModel(table, block_size=256), tok, batch_size=2)
    shots = [MCItem("Is ice cold?", ("yes", "no"), 0, "math")]
    mc = MCSet([ITEM], {"math": shots})
    _, records = evaluate_multiple_choice(scorer, mc, method="loglik", shots=1, norm=norm,
                                          resamples=10)
    prompt = cloze_prompt(ITEM, shots)
    assert prompt.startswith("Question: Is ice cold?\nAnswer: yes\n\nQuestion: What is 2 + 2?")
    ctx = tok.encode_ordinary(prompt)
    sums = [hand_loglik(table, ctx, tok.encode_ordinary(" " + c)) for c in ITEM.choices]
    sizes = {"none": [1] * 4, "token": [len(c) + 1 for c in ITEM.choices],
             "byte": [len((" " + c).encode()) for c in ITEM.choices]}[norm]
    expected = np.array(sums) / np.array(sizes)
    np.testing.assert_allclose(records[0]["scores"], expected, atol=1e-9)
    np.testing.assert_allclose(records[0]["logprob"], sums, atol=1e-9)
    assert records[0]["pred"] == int(np.argmax(expected))


def test_length_normalisation_changes_the_choice_when_it_should():
    # Every byte costs the same except one cheap byte in the long choice: the plain sum prefers
    # the short choice (fewer bytes to pay for), per-token and per-byte the long one.
    table = np.zeros((261, 261), np.float32)
    table[ord(" "), ord("f")] = 4.0  # " f..." is likelier at its first byte
    item = MCItem("q", ("ab", "fourteen"), 1, "s")
    scorer = LMScorer(BigramModel(table), ByteTokenizer(letter_tokens=False))
    _, rec = evaluate_multiple_choice(scorer, MCSet([item]), method="loglik", norm="byte",
                                      resamples=10)
    assert rec[0]["pred_by_norm"] == {"none": 0, "token": 1, "byte": 1}


def test_generate_method_takes_the_first_letter_of_the_greedy_text():
    table = np.zeros((261, 261), np.float32)
    table[ord(":"), LETTER_IDS[" C"]] = 5.0
    table[LETTER_IDS[" C"], EOT] = 5.0
    stats, records = evaluate_multiple_choice(LMScorer(BigramModel(table), ByteTokenizer()),
                                              MCSet([ITEM]), method="generate", resamples=10)
    assert records[0]["text"] == " C" and records[0]["pred"] == 2
    assert stats["micro"]["accuracy"] == 0.0 and stats["unanswered"] == 0


def test_first_letter_rule():
    assert first_letter(" B) because", 4) == 1
    assert first_letter("  c", 4) == 2
    assert first_letter("The answer is B", 4) is None  # 'T' is not a choice: unanswered
    assert first_letter("123", 4) is None


def test_completion_joins_with_a_space_and_picks_the_likeliest_ending():
    assert join_ending("He sat", "down") == " down"
    assert join_ending("line one\n", "line two") == "line two"
    table = bigram_table(3)
    tok = ByteTokenizer(letter_tokens=False)
    item = MCItem("A man is", ("cooking", "flying away", "sleeping"), 0, "act")
    scorer = LMScorer(BigramModel(table), tok)
    _, rec = evaluate_completion(scorer, MCSet([item]), norm="none", resamples=10)
    ctx = tok.encode_ordinary("A man is")
    sums = [hand_loglik(table, ctx, tok.encode_ordinary(" " + e)) for e in item.choices]
    np.testing.assert_allclose(rec[0]["scores"], sums, atol=1e-9)
    assert rec[0]["pred"] == int(np.argmax(sums))


def _equal_to_rounding(a, b):
    """Equal, floats to float32 rounding. Batched and one-by-one scoring do the same arithmetic
    on rows of matrices of other sizes, and a BLAS may round a row by what surrounds it:
    OpenBLAS on an AMD EPYC does (its kernels take the rows in blocks, the last one otherwise);
    MKL, and OpenBLAS on an AVX-512 Xeon, gave the same bits. (Seen there: at most 1.5e-7 apart
    on sums of 30-600, 6e-9 relative; a padding or masking mistake moves them by whole units.)"""
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and _equal_to_rounding(dataclasses.asdict(a), dataclasses.asdict(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal_to_rounding(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(map(_equal_to_rounding, a, b))
    if isinstance(a, float):
        return a == pytest.approx(b, rel=1e-6, abs=1e-6)
    return a == b


def test_batched_scoring_equals_one_by_one_on_a_real_gpt():
    cfg = GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg, seed=1)

    class Tok:
        special_tokens = {"<|endoftext|>": 0}

    rng = np.random.default_rng(0)
    requests = [(rng.integers(1, 300, rng.integers(0, 60)).tolist(),
                 rng.integers(1, 300, rng.integers(1, 12)).tolist()) for _ in range(40)]
    requests += [([5, 6], rng.integers(1, 300, 100).tolist()), ([], list(range(1, 70)))]  # long
    one = LMScorer(model, Tok(), batch_size=1).loglikelihood(requests)
    for batch_size in (5, 40):
        batched = LMScorer(model, Tok(), batch_size=batch_size).loglikelihood(requests)
        assert _equal_to_rounding(batched, one)
    assert not _equal_to_rounding([one[0].logprob], [one[0].logprob + 1e-4])  # it can fail
    # and the padded computation is the unpadded one up to float32 rounding
    import autograd as ag

    model.eval()
    for (ctx, cont), score in list(zip(requests, one))[:5]:
        seq = (ctx or [0]) + cont
        with ag.no_grad():
            logits = np.asarray(model(np.asarray([seq[:-1]]))[0].data[0], np.float64)
        direct = sum(log_softmax(logits[len(seq) - 1 - len(cont) + j])[cont[j]]
                     for j in range(len(cont)))
        assert score.logprob == pytest.approx(direct, abs=1e-4)


def test_letter_method_batched_equals_one_by_one_on_a_real_gpt():
    from tinyllm.tokenizer import BPETokenizer

    text = "The following are multiple choice questions. A B C D Answer: A\n" * 20
    tok = BPETokenizer.train(text, 300, special_tokens=["<|endoftext|>"])
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2,
                          n_embd=32), seed=0)
    items = [MCItem(f"Question {i}?", ("w", "x", "y", "z"), i % 4, "s") for i in range(9)]
    runs = [evaluate_multiple_choice(LMScorer(model, tok, batch_size=b), MCSet(items),
                                     method=m, resamples=10)[1]
            for m in ("letter", "loglik") for b in (1, 4)]
    assert _equal_to_rounding(runs[0], runs[1]) and _equal_to_rounding(runs[2], runs[3])
