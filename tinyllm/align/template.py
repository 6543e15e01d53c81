"""The chat template: how a conversation becomes one sequence of token ids.

Every message is written as its role's special token, the content, the end token and a newline:

    <|system|>You answer briefly.<|end|>
    <|user|>What is 2 + 3?<|end|>
    <|assistant|>5<|end|>

The role markers and `<|end|>` are special tokens (one id each, added to a pre-trained run's
tokenizer by `tinyllm.align.vocab`), so no text the user types can forge them: content is
always encoded as ordinary text, even when it contains the string "<|end|>".

Training learns only what the assistant says. `render` returns, next to the ids, a mask that is
True on the tokens the model should learn to produce: the assistant's content and its `<|end|>`
(so that it learns to stop). The role marker `<|assistant|>` itself is part of the prompt, since
at chat time we write it and the model continues from there; the newline after `<|end|>` is
template glue and is not learned either.

A chat prompt is the same rendering with an open assistant turn: the conversation so far
followed by `<|assistant|>`; generation runs until the model produces `<|end|>`. Because one
function renders both, what the model sees at chat time is exactly what it was trained on.
"""

from __future__ import annotations

ROLES = ("system", "user", "assistant")
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_TOKEN = "<|end|>"
#: the template's special tokens, in the order they are added to a tokenizer
CHAT_TOKENS = (*ROLE_TOKENS.values(), END_TOKEN)
SEPARATOR = "\n"  # after each <|end|>: readability of the rendered text, not learned


def check_messages(messages, where="messages") -> None:
    """Raise ValueError naming the problem if `messages` is not a list of
    {"role": system|user|assistant, "content": str}."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: expected a non-empty list of messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"{where}[{i}]: a message must be an object with role and content")
        for field in ("role", "content"):
            if field not in message:
                raise ValueError(f"{where}[{i}]: missing field {field!r}")
        if message["role"] not in ROLES:
            raise ValueError(f"{where}[{i}]: role {message['role']!r} is not one of {ROLES}")
        if not isinstance(message["content"], str):
            raise ValueError(f"{where}[{i}]: content must be a string")


def render_text(messages, open_assistant=False) -> str:
    """The conversation as text, exactly what `tok.decode(render(tok, messages)[0])` gives."""
    check_messages(messages)
    text = "".join(ROLE_TOKENS[m["role"]] + m["content"] + END_TOKEN + SEPARATOR for m in messages)
    return text + (ROLE_TOKENS["assistant"] if open_assistant else "")


def render(tok, messages, open_assistant=False):
    """Token ids of the conversation, and a per-token mask: True where the token is assistant
    content or the `<|end|>` closing an assistant turn (the tokens training learns).

    `open_assistant=True` appends `<|assistant|>` with no content: the prompt for generating
    the next reply (its mask is all False). Returns (ids: list[int], trainable: list[bool]).
    """
    check_messages(messages)
    special = tok.special_tokens
    missing = [t for t in CHAT_TOKENS if t not in special]
    if missing:
        raise ValueError(f"the tokenizer lacks the chat tokens {missing}; add them with "
                         "tinyllm.align.vocab.add_chat_tokens")
    ids, trainable = [], []

    def put(new_ids, learn):
        ids.extend(new_ids)
        trainable.extend([learn] * len(new_ids))

    newline = tok.encode_ordinary(SEPARATOR)
    for m in messages:
        learn = m["role"] == "assistant"
        put([special[ROLE_TOKENS[m["role"]]]], False)
        put(tok.encode_ordinary(m["content"]), learn)  # content is never read as special tokens
        put([special[END_TOKEN]], learn)
        put(newline, False)
    if open_assistant:
        put([special[ROLE_TOKENS["assistant"]]], False)
    return ids, trainable


def prompt_and_answer(messages):
    """Split a conversation ending in an assistant turn into (prompt messages, answer text):
    what exact-match evaluation feeds the model and what it expects back."""
    check_messages(messages)
    if messages[-1]["role"] != "assistant":
        raise ValueError("the conversation does not end with an assistant message")
    return messages[:-1], messages[-1]["content"]
