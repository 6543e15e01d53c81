"""`tinyllm chat`: template prompts, streaming, history within the context, commands, EOF."""

import io
import json
import os
import select
import time
from pathlib import Path

import numpy as np
import pytest

from autograd import optim
from tests.tinyllm.align_helpers import make_base_run
from tinyllm import checkpoint as ckpt
from tinyllm.align.sft import load_run
from tinyllm.align.template import render, render_text
from tinyllm.align.vocab import prepare_chat_vocab
from tinyllm.chat import ChatSession, chat_loop
from tinyllm.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with the chat tokens (as `tinyllm finetune` leaves it; training is not needed)."""
    root = tmp_path_factory.mktemp("chat")
    model, tok, _ = load_run(make_base_run(root / "base", block_size=64))
    tok, _ = prepare_chat_vocab(tok, model)
    chat = root / "chat"
    chat.mkdir()
    (chat / "config.json").write_text(json.dumps({"model": model.config.to_dict()}))
    tok.save(chat / "tokenizer.json")
    ckpt.save_checkpoint(chat, model, optim.AdamW(model.parameters()), {"step": 0})
    return root


def session(run, **kw):
    model, tok, _ = load_run(run / "chat")
    return ChatSession(model, tok, **{"max_new_tokens": 8, "seed": 0, **kw})


class Recorder:
    """Wraps the model: records every prompt the session generates from."""

    def __init__(self, model):
        self.model, self.config, self.prompts = model, model.config, []

    def stream(self, ids, n, **kw):
        self.prompts.append(np.asarray(ids)[0].tolist())
        return self.model.stream(ids, n, **kw)


def test_reply_streams_and_prompt_is_the_template_with_an_open_assistant_turn(run):
    s = session(run, system="Be brief.")
    s.model = Recorder(s.model)
    pieces = list(s.reply("hello"))
    assert s.messages[-1] == {"role": "assistant", "content": "".join(pieces)}
    expected = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    assert s.tok.decode(s.model.prompts[0]) == render_text(expected, open_assistant=True)
    list(s.reply("again"))
    second = s.tok.decode(s.model.prompts[1])
    assert second == render_text(s.messages[:-1], open_assistant=True)
    assert second.startswith(render_text(expected))  # the history is in the prompt


def test_oldest_exchanges_are_dropped_with_a_note_and_the_system_message_stays(run):
    s = session(run, system="Sys.")
    notes = []
    for i in range(12):
        list(s.reply(f"message number {i} with some words in it", notes))
    assert any("dropped the" in n and "64-token context" in n for n in notes)
    assert s.messages[0] == {"role": "system", "content": "Sys."}
    assert s.messages[1]["content"].startswith("message number ")
    assert s.messages[1]["content"] != "message number 0 with some words in it"
    ids, _ = render(s.tok, s.messages[:-1], open_assistant=True)
    assert len(ids) <= s.prompt_budget


def test_chat_loop_commands_and_end_of_input(run):
    s = session(run)
    out = io.StringIO()
    stdin = io.StringIO("hi\n/system You are terse.\nhello\n/reset\n/bogus\n\nlast one\n")
    assert chat_loop(s, stdin, out) == 0
    text = out.getvalue()
    assert text.count("bot> ") == 3
    assert "(system message set; conversation reset)" in text
    assert "(conversation reset)" in text and "(unknown command /bogus" in text
    assert s.system == "You are terse."
    # after /reset only the system message and the last exchange remain
    assert [m["role"] for m in s.messages] == ["system", "user", "assistant"]
    assert s.messages[1]["content"] == "last one"


def test_cli_chat_through_piped_stdin(run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2 + 3?\n/reset\nhello\n"))
    assert main(["chat", str(run / "chat"), "--max-new-tokens", "5", "--temperature", "0",
                 "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("bot> ") == 2 and out.startswith("chatting with the model")


def test_cli_chat_on_a_run_without_chat_tokens_notes_it(run, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    assert main(["chat", str(run / "base"), "--max-new-tokens", "3"]) == 0
    assert "has no chat tokens" in capsys.readouterr().err


def test_cli_chat_bad_input_is_one_line(run, capsys):
    assert main(["chat", str(run / "missing")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]
    assert main(["chat", str(run / "chat"), "--max-new-tokens", "0"]) == 1
    assert "--max-new-tokens must be at least 1" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_chat_in_a_pseudo_terminal_quits_on_ctrl_d(run):
    """The real command on a terminal: a reply streams back, then Ctrl-D ends the chat."""
    import subprocess
    import sys

    main_fd, child_fd = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "tinyllm", "chat", str(run / "chat"),
                             "--max-new-tokens", "4", "--seed", "0"], stdin=child_fd,
                            stdout=child_fd, stderr=child_fd, env=env, close_fds=True)
    os.close(child_fd)
    seen = b""

    def read_until(marker, count=1):
        nonlocal seen
        deadline = time.monotonic() + 60
        while seen.count(marker) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([main_fd], [], [], 1.0)
            if ready:
                try:
                    seen += os.read(main_fd, 4096)
                except OSError:  # the child closed the terminal
                    break
        return seen.count(marker) >= count

    try:
        assert read_until(b"you> ")
        os.write(main_fd, b"hello there\n")
        assert read_until(b"bot> ") and read_until(b"you> ", 2)
        os.write(main_fd, b"\x04")  # Ctrl-D on an empty line: end of input
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main_fd)
