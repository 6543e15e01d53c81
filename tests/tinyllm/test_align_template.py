"""The chat template: rendering round trip, the trainable mask, and growing a run's vocabulary."""

import numpy as np
import pytest

from tests.tinyllm.align_helpers import chat_tokenizer
from tinyllm.align.template import CHAT_TOKENS, END_TOKEN, render, render_text
from tinyllm.align.vocab import add_chat_tokens, grow_token_embeddings, prepare_chat_vocab
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import BPETokenizer

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": "assistant", "content": "It is 5."},
    {"role": "user", "content": "And <|end|> 2 + 4? ünïcødé"},  # a forged marker stays text
    {"role": "assistant", "content": "6"},
]


def test_render_round_trip_reproduces_the_template_text():
    tok = chat_tokenizer()
    ids, _ = render(tok, CONVERSATION)
    assert tok.decode(ids) == render_text(CONVERSATION)
    assert render_text(CONVERSATION).startswith("<|system|>Answer briefly.<|end|>\n<|user|>")
    prompt_ids, prompt_mask = render(tok, CONVERSATION[:2], open_assistant=True)
    assert tok.decode(prompt_ids) == render_text(CONVERSATION[:2], open_assistant=True)
    assert tok.decode(prompt_ids).endswith("<|assistant|>") and not any(prompt_mask)
    # a chat prompt is a prefix of the rendered training example: train and chat agree
    assert ids[:len(prompt_ids)] == prompt_ids


def test_user_text_cannot_forge_a_special_token():
    tok = chat_tokenizer()
    ids, _ = render(tok, CONVERSATION)
    end = tok.special_tokens[END_TOKEN]
    # one <|end|> id per message, although the user typed the string "<|end|>" once more
    assert ids.count(end) == len(CONVERSATION)


def test_mask_is_true_exactly_on_assistant_content_and_its_end():
    tok = chat_tokenizer()
    ids, mask = render(tok, CONVERSATION)
    learned = [i for i, m in zip(ids, mask) if m]
    end = tok.special_tokens[END_TOKEN]
    expected = (tok.encode_ordinary("It is 5.") + [end] + tok.encode_ordinary("6") + [end])
    assert learned == expected
    # and the masked runs sit right after <|assistant|> markers
    assistant = tok.special_tokens["<|assistant|>"]
    starts = [i for i in range(1, len(ids)) if mask[i] and not mask[i - 1]]
    assert [ids[i - 1] for i in starts] == [assistant, assistant]


def test_render_refuses_bad_messages_and_a_tokenizer_without_chat_tokens():
    tok = chat_tokenizer()
    with pytest.raises(ValueError, match=r"role 'bot'"):
        render(tok, [{"role": "bot", "content": "hi"}])
    with pytest.raises(ValueError, match=r"missing field 'content'"):
        render(tok, [{"role": "user"}])
    plain = BPETokenizer(tok.merges, "gpt4", {"<|endoftext|>": tok.vocab_size})
    with pytest.raises(ValueError, match="lacks the chat tokens"):
        render(plain, CONVERSATION)


def test_adding_chat_tokens_keeps_every_old_id_and_saves(tmp_path):
    base = BPETokenizer.train("hello world, hello there " * 30, vocab_size=270,
                              special_tokens=["<|endoftext|>"])
    grown, added = add_chat_tokens(base)
    assert added == len(CHAT_TOKENS) and grown.vocab_size == base.vocab_size + added
    text = "hello there, world"
    assert grown.encode(text) == base.encode(text)
    assert [grown.special_tokens[t] for t in CHAT_TOKENS] == list(
        range(base.vocab_size, grown.vocab_size))
    assert add_chat_tokens(grown) == (grown, 0)  # idempotent
    grown.save(tmp_path / "tok.json")
    assert BPETokenizer.load(tmp_path / "tok.json").special_tokens == grown.special_tokens


@pytest.mark.parametrize("tied", [True, False])
def test_growing_the_embedding_keeps_old_rows_and_sets_new_rows_to_the_mean(tied):
    model = GPT(GPTConfig(vocab_size=40, block_size=8, n_layer=1, n_head=2, n_embd=8,
                          tie_weights=tied), seed=1)
    old_in = model.transformer.wte.weight.data.copy()
    old_out = model.output_weight().data.copy()
    x = np.array([[1, 2, 3, 39]])
    before = model(x)[0].data.copy()
    assert grow_token_embeddings(model, 44) == 4
    assert model.config.vocab_size == 44
    wte = model.transformer.wte.weight.data
    np.testing.assert_array_equal(wte[:40], old_in)
    np.testing.assert_allclose(wte[40:], np.repeat(old_in.mean(0, keepdims=True), 4, 0),
                               rtol=1e-6)
    out = model.output_weight().data
    assert out.shape == (44, 8)
    np.testing.assert_allclose(out[40:], np.repeat(old_out.mean(0, keepdims=True), 4, 0),
                               rtol=1e-6)
    assert (model.output_weight() is model.transformer.wte.weight) == tied
    after = model(x)[0].data
    np.testing.assert_allclose(after[..., :40], before, rtol=1e-5, atol=1e-6)  # old logits kept
    # the new rows are real parameters: they get gradients and are saved
    _, loss = model(np.array([[40, 41, 42]]), np.array([[41, 42, 43]]))
    loss.backward()
    assert np.abs(model.transformer.wte.weight.grad[40:43]).sum() > 0
    assert model.state_dict()["transformer.wte.weight"].shape == (44, 8)


def test_prepare_chat_vocab_grows_tokenizer_and_model_together():
    base = BPETokenizer.train("hello world " * 30, vocab_size=262, special_tokens=[])
    model = GPT(GPTConfig(vocab_size=base.vocab_size, block_size=8, n_layer=1, n_head=2,
                          n_embd=8))
    tok, rows = prepare_chat_vocab(base, model)
    assert rows == 4 and model.config.vocab_size == tok.vocab_size
    assert prepare_chat_vocab(tok, model) == (tok, 0)
    with pytest.raises(ValueError, match="cannot shrink"):
        grow_token_embeddings(model, 10)
