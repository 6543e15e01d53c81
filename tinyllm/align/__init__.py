"""Alignment: turning a pre-trained GPT into one that answers.

    template.py    the chat template: special tokens, `render(tok, messages)` -> ids + trainable mask
    vocab.py       adding the template's tokens to a run's tokenizer and growing the embedding
    sft_data.py    JSONL examples (prompt/response, Alpaca, messages), batches with masked loss
    builtin_qa.py  seeded synthetic Q&A tasks (builtin:NAME) with exact-match answers
    sft.py         supervised fine-tuning: the run folder, the loop, evaluation, resume
    chat.py        (tinyllm/chat.py) the terminal chat

LoRA and DPO build on the same pieces: `template.render` for every sequence, `sft_data` for
examples and batches, `sft.prepare_model_for_finetune` as the hook that wraps the model.
"""
