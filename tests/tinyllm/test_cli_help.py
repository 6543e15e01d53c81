"""The command line a person reads: help texts, choices, flag names, progress, `tinyllm plot`
(issue items 8 and 15)."""

import dataclasses
import io
import json
import re
import sys

import pytest

from tinyllm.cli import build_parser, main
from tinyllm.progress import progress_bar
from tinyllm.train_cli import _add_dataclass_flags, config_from_args


def help_text(capsys, *command):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: undo it


def test_train_help_shows_the_default_presets_values_and_every_choice(capsys):
    text = help_text(capsys, "train")
    options = text[text.index("options:"):]  # past the usage lines
    for flag, default in [("--vocab-size", "2048"), ("--block-size", "128"), ("--dropout", "0.25"),
                          ("--n-layer", "6"), ("--lr", "0.003"), ("--max-minutes", "4.5")]:
        assert re.search(rf"{flag} \S+ [^-]*default: {re.escape(default)}\b", options), flag
    assert "tiny: 512" in text and "medium: 4096" in text  # the other presets' values too
    for choices in ("{learned,rope}", "{gelu,swiglu}", "{layernorm,rmsnorm}", "{float32,float64}",
                    "{cpu,cuda}", "{tiny,small,medium}"):
        assert choices in text


def test_out_is_the_one_name_for_the_run_folder(capsys):
    text = help_text(capsys, "train")
    assert "--out RUN" in text and "--out-dir" not in text and "--progress" not in text
    parser = build_parser()
    for flag in ("--out", "--out-dir"):  # the old name still works, unlisted
        assert config_from_args(parser.parse_args(["train", flag, "runs/x"])).out_dir == "runs/x"
    assert config_from_args(parser.parse_args(["train", "--no-progress"])).progress is False


def subcommands():
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices


@pytest.mark.parametrize("command", ["train", "sample", "plot"])
def test_every_option_has_help(command):
    parser = subcommands()[command]
    for action in parser._actions:
        if action.help == "==SUPPRESS==" or action.dest == "help":
            continue  # hidden aliases
        assert action.help, f"tinyllm {command} {action.option_strings or action.dest}"


def test_flags_are_made_for_fields_added_later():
    @dataclasses.dataclass
    class Later:
        early_stop: int | None = dataclasses.field(
            default=None, metadata={"help": "stop after N evaluations without improvement"})
        tags: list = dataclasses.field(default_factory=list)  # not a flag
        fast: bool = False

    import argparse

    parser = argparse.ArgumentParser()
    _add_dataclass_flags(parser, Later, "later")
    args = parser.parse_args(["--early-stop", "3", "--fast"])
    assert args.early_stop == 3 and args.fast is True
    assert "stop after N evaluations" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--tags", "a"])


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_redraws_at_most_about_twice_a_second(monkeypatch):
    """A loop that updates and sets the postfix every step (as training does) for well under a
    second: a handful of draws, not one per step."""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress_bar(total=2000)
    for step in range(500):
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
    bar.close()
    draws = terminal.getvalue().count("\r")
    assert 1 <= draws <= 10, draws
    assert "loss=" in terminal.getvalue()  # the postfix does show


def write_metrics(run, lines):
    run.mkdir(exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))


def test_plot_draws_the_loss_curves_of_a_run(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    records = [{"step": s, "loss": 5.0 / s} for s in range(1, 9)]
    records.append({"step": 8, "val_loss": 1.2, "sample": "x"})
    write_metrics(run, [json.dumps(r) for r in records] + ['{"step": 9, "lo'])  # cut short
    assert main(["plot", str(run)]) == 0
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(run), "--out", str(tmp_path / "other.png")]) == 0
    assert (tmp_path / "other.png").exists()


def test_plot_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert main(["plot", str(tmp_path / "nothing")]) == 1
    assert "metrics.jsonl: missing" in capsys.readouterr().err
    run = tmp_path / "run"
    write_metrics(run, ['{"step": 1, "loss": 2.0}', "garbage", '{"step": 2, "loss": 1.0}'])
    assert main(["plot", str(run)]) == 1
    assert "metrics.jsonl:2: not a JSON line" in capsys.readouterr().err
    write_metrics(run, ['{"step": 1, "loss": 2.0}'])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["plot", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install '.[plot]'" in err


def test_plot_reads_every_evaluation_a_run_records(tmp_path):
    from tinyllm.plot import read_losses

    run = tmp_path / "run"
    write_metrics(run, ['{"step": 1, "loss": 3.0}', '{"step": 2, "loss": 2.0}',
                        '{"step": 2, "train_eval_loss": 2.5}', '{"step": 2, "test_loss": 9}'])
    train, evaluations = read_losses(run / "metrics.jsonl")
    assert train == [(1, 3.0), (2, 2.0)]
    assert evaluations == {"training split (no validation)": [(2, 2.5)]}
