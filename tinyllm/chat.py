"""`tinyllm chat RUN`: talk to a fine-tuned run in the terminal.

Each turn renders the whole conversation with the chat template (tinyllm.align.template), opens an
assistant turn, and streams the model's tokens until it writes `<|end|>`. The history is kept
as messages; when the rendered prompt no longer leaves room for a reply in the model's context
(block_size tokens), the oldest user/assistant exchanges are dropped (the system message stays)
and a note says so.

Commands: /reset (forget the conversation), /system TEXT (set the system message and reset),
/help; Ctrl-D (end of input) quits.
"""

from __future__ import annotations

import sys

import numpy as np

from tinyllm.align.template import CHAT_TOKENS, END_TOKEN, render

HELP = "commands: /reset, /system TEXT, /help; Ctrl-D quits"


class ChatSession:
    """A conversation with a model: `reply(text)` yields the answer's text as it is made."""

    def __init__(self, model, tok, system=None, max_new_tokens=100, temperature=0.8, top_k=40,
                 top_p=None, seed=None):
        self.model, self.tok = model, tok
        self.system = system
        self.sampling = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        self.max_new_tokens = max_new_tokens
        self.rng = np.random.default_rng(seed)
        block = model.config.block_size
        self.prompt_budget = block - min(max_new_tokens, block // 2)  # room left for the reply
        specials = tok.special_tokens
        self.stop_tokens = [specials[t] for t in CHAT_TOKENS] + [
            i for s, i in specials.items() if s not in CHAT_TOKENS]
        self.reset()

    def reset(self):
        self.messages = [] if not self.system else [{"role": "system", "content": self.system}]

    def set_system(self, text):
        self.system = text
        self.reset()

    def _fit(self, notes):
        """Drop the oldest exchanges until the prompt fits; returns the prompt ids."""
        dropped = 0
        while True:
            ids, _ = render(self.tok, self.messages, open_assistant=True)
            first = 1 if self.messages[0]["role"] == "system" else 0
            if len(ids) <= self.prompt_budget or len(self.messages) - first <= 1:
                break
            del self.messages[first:first + 2]  # one user message and the reply to it
            dropped += 1
        if dropped:
            notes.append(f"(dropped the {dropped} oldest exchange{'s' * (dropped > 1)} to fit "
                         f"the {self.model.config.block_size}-token context)")
        if len(ids) > self.prompt_budget:
            notes.append(f"(the message is longer than the context; only its last "
                         f"{self.prompt_budget} tokens are read)")
            ids = ids[-self.prompt_budget:]
        return ids

    def reply(self, text, notes=None):
        """Add the user's message, then yield pieces of the reply's text as they are sampled;
        the full reply joins the history. Notes about dropped history go to `notes`."""
        notes = [] if notes is None else notes
        self.messages.append({"role": "user", "content": text})
        ids = self._fit(notes)
        seed = int(self.rng.integers(2**31))
        stream = self.model.stream(np.asarray([ids]), self.max_new_tokens, seed=seed,
                                   stop_tokens=self.stop_tokens, **self.sampling)
        produced, pending = [], []
        for column in stream:
            token = int(column[0])
            if token in self.stop_tokens:
                break
            produced.append(token)
            pending.append(token)
            piece = self.tok.decode(pending)
            if not piece.endswith("\ufffd"):  # wait for the rest of a split UTF-8 character
                pending = []
                yield piece
        if pending:
            yield self.tok.decode(pending)
        self.messages.append({"role": "assistant", "content": self.tok.decode(produced)})


def chat_loop(session, stdin=None, stdout=None, prompt="you> ", bot="bot> "):
    """Read lines until end of input; answer each, streaming. Returns 0."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    stdout.write(f"chatting with the model ({HELP})\n")
    while True:
        stdout.write(prompt)
        stdout.flush()
        line = stdin.readline()
        if not line:  # Ctrl-D / end of piped input
            stdout.write("\n")
            return 0
        text = line.rstrip("\n")
        if not text.strip():
            continue
        if text.strip() == "/reset":
            session.reset()
            stdout.write("(conversation reset)\n")
            continue
        if text.startswith("/system"):
            session.set_system(text[len("/system"):].strip() or None)
            stdout.write(f"(system message {'set' if session.system else 'cleared'}; "
                         "conversation reset)\n")
            continue
        if text.startswith("/"):
            stdout.write(f"(unknown command {text.split()[0]}; {HELP})\n")
            continue
        notes = []
        pieces = session.reply(text, notes)
        first = next(pieces, "")
        for note in notes:
            stdout.write(note + "\n")
        stdout.write(bot + first)
        stdout.flush()
        for piece in pieces:
            stdout.write(piece)
            stdout.flush()
        stdout.write("\n")


def run_chat(args) -> int:
    from tinyllm.align.sft import load_run
    from tinyllm.align.vocab import has_chat_tokens, prepare_chat_vocab

    model, tok, _ = load_run(args.run_dir)
    if not has_chat_tokens(tok):
        tok, _ = prepare_chat_vocab(tok, model)
        print(f"note: {args.run_dir} has no chat tokens (not fine-tuned with `tinyllm finetune`?); "
              "they were added untrained, so expect replies that ignore the template",
              file=sys.stderr)
    if args.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be at least 1")
    session = ChatSession(model, tok, system=args.system, max_new_tokens=args.max_new_tokens,
                          temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          seed=args.seed)
    assert END_TOKEN in tok.special_tokens
    return chat_loop(session)
