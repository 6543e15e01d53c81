"""Small shared pieces for the alignment tests: a tokenizer with the chat tokens, a tiny GPT."""

from tinyllm.align.vocab import add_chat_tokens
from tinyllm.tokenizer import BPETokenizer

TEXT = ("The quick brown fox jumps over the lazy dog. What is 2 + 3? It is 5. "
        "Reverse the list: a b c. Sort these numbers. Hello, world! ") * 20

_TOK = None


def chat_tokenizer():
    """A small BPE tokenizer (trained once per session) with the chat tokens added."""
    global _TOK
    if _TOK is None:
        base = BPETokenizer.train(TEXT, vocab_size=300, special_tokens=["<|endoftext|>"])
        _TOK = add_chat_tokens(base)[0]
    return _TOK


def make_base_run(run_dir, block_size=48, n_embd=32, dropout=0.1, seed=0):
    """A run folder as pre-training leaves it (config.json, tokenizer.json without the chat
    tokens, checkpoint/), holding a tiny randomly initialised GPT."""
    import json
    from pathlib import Path

    from autograd import optim
    from tinyllm import checkpoint as ckpt
    from tinyllm.model import GPT, GPTConfig

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    chat = chat_tokenizer()
    plain = {s: i for s, i in chat.special_tokens.items() if s == "<|endoftext|>"}
    tok = BPETokenizer(chat.merges, "gpt4", plain)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=1, n_head=2,
                       n_embd=n_embd, dropout=dropout)
    model = GPT(config, seed=seed)
    (run_dir / "config.json").write_text(json.dumps({"model": config.to_dict(), "train": {}}))
    tok.save(run_dir / "tokenizer.json")
    ckpt.save_checkpoint(run_dir, model, optim.AdamW(model.parameters()), {"step": 0})
    return run_dir


def write_jsonl(path, records):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
