"""A tiny corpus and a tiny training configuration, shared by the training tests that need a
real (if very small) run: one layer, 16 wide, a 290-token vocabulary, a few steps."""

from tinyllm.train import TrainConfig

MODEL = dict(vocab_size=290, block_size=16, n_layer=1, n_head=2, n_embd=16)


def write_fox_corpus(folder):
    """Twenty short documents, enough for a validation and a test split."""
    for i in range(20):
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i}: the fox {i} jumps. " * 6)
    return str(folder)


def tiny_config(out_dir, data, **overrides):
    base = dict(out_dir=str(out_dir), data=data, batch_size=2, eval_tokens=64, sample_tokens=4,
                progress=False, model=dict(MODEL))
    return TrainConfig(**{**base, **overrides})
