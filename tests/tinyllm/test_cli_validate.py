"""Every bad flag is refused before any work starts, with one line naming it (issue item 7)."""

import tracemalloc

import numpy as np
import pytest

import tinyllm.train
from autograd import optim
from tinyllm import validate
from tinyllm.cli import main
from tinyllm.model import GPT, GPTConfig
from tinyllm.train import param_groups


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a Trainer is ever built: validation must come first (building one
    prepares data, minutes on the built-in corpus)."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the flags were checked")

    monkeypatch.setattr(tinyllm.train, "Trainer", refuse)


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tinyllm {command}: error: "), err
    return lines[0]


@pytest.mark.parametrize("flags, named", [
    (["--eval-interval", "0"], "--eval-interval"),
    (["--dtype", "foo"], "--dtype"),
    (["--grad-accum", "0"], "--grad-accum"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--dropout", "1"], "--dropout"),
    (["--dropout", "-0.1"], "--dropout"),
    (["--vocab-size", "200"], "--vocab-size"),
    (["--max-steps", "0"], "--max-steps"),
    (["--lr", "0"], "--lr"),
    (["--beta2", "1.0"], "--beta2"),
    (["--n-embd", "100", "--n-head", "3"], "--n-head"),
    (["--block-size", "0"], "--block-size"),
])
def test_bad_train_flags_are_refused_before_any_work(flags, named, tmp_path, capsys, no_training):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *flags]) == 1
    assert named in one_error_line(capsys, "train")
    assert not out.exists()


def test_float16_on_the_cpu_is_refused_with_the_reason(tmp_path, capsys, no_training):
    assert main(["train", "--out", str(tmp_path / "run"), "--dtype", "float16"]) == 1
    line = one_error_line(capsys, "train")
    assert "float16" in line and "NaN" in line and "float32" in line


def test_a_block_size_that_cannot_fit_is_refused_with_the_estimate(tmp_path, capsys, no_training):
    assert main(["train", "--out", str(tmp_path / "run"), "--block-size", "100000"]) == 1
    line = one_error_line(capsys, "train")
    assert "--block-size 100000" in line and "GiB" in line and "available" in line
    assert not (tmp_path / "run").exists()


def test_a_prepared_tokenizer_needs_no_vocab_size_check():
    cfg = tinyllm.train.TrainConfig(tokenizer="tok.json")
    validate.check_train(cfg, dict(vocab_size=100), trains_tokenizer=False, available=2**40)
    with pytest.raises(ValueError, match="--vocab-size must be at least 257"):
        validate.check_train(cfg, dict(vocab_size=100), trains_tokenizer=True, available=2**40)


def test_argparse_errors_are_one_line_naming_the_command(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--pos", "absolute"])
    assert stop.value.code == 2
    line = one_error_line(capsys, "train")
    assert "--pos" in line and "learned" in line and "rope" in line
    assert main(["sample", "runs/x", "--no-such-flag"]) == 2
    assert "--no-such-flag" in one_error_line(capsys, "sample")


@pytest.mark.parametrize("flags, named", [
    (["--max-new-tokens", "-5"], "--max-new-tokens"),
    (["--temperature", "-0.5"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--top-k", "0"], "--top-k"),
    (["--top-k", "-2"], "--top-k"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--num-samples", "0"], "--num-samples"),
])
def test_bad_sample_flags_are_refused_before_loading(flags, named, tmp_path, capsys):
    # The run folder does not exist: the flag must be named before anything is loaded.
    assert main(["sample", str(tmp_path / "no-run"), *flags]) == 1
    assert named in one_error_line(capsys, "sample")


def test_generate_checks_its_settings_too():
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=4))
    for bad in (dict(max_new_tokens=-1), dict(temperature=-1.0), dict(top_k=0), dict(top_p=2.0)):
        args = {"max_new_tokens": 3, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            model.generate(np.array([[1]]), args.pop("max_new_tokens"), **args)


@pytest.mark.parametrize("options", [dict(), dict(pos="rope", mlp="swiglu", norm="rmsnorm"),
                                     dict(bias=False, tie_weights=False)])
def test_parameter_count_from_the_shapes_is_exact(options):
    config = GPTConfig(vocab_size=300, block_size=32, n_layer=3, n_head=2, n_embd=24, **options)
    assert validate._count_parameters(config) == GPT(config).num_parameters()


def test_memory_estimate_is_close_to_the_measured_peak():
    """The estimate is within -20%..+50% of the peak of one training step (tracemalloc sees
    NumPy's buffers), counting the weights and AdamW moments that live across steps."""
    config = GPTConfig(vocab_size=512, block_size=64, n_layer=2, n_head=4, n_embd=64,
                       dropout=0.1)
    model = GPT(config)
    opt = optim.AdamW(param_groups(model, 0.1), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 512, (8, 64)), rng.integers(0, 512, (8, 64))
    model(x, y)[1].backward()  # a first step creates the AdamW moments
    opt.step()
    opt.zero_grad()
    resident = 3 * sum(p.data.nbytes for p in model.parameters())  # weights + two moments
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model(x, y)[1].backward()
        opt.step()
        opt.zero_grad()
        peak = tracemalloc.get_traced_memory()[1] - base + resident
    finally:
        tracemalloc.stop()
    estimate = sum(validate.estimate_training_memory(config, 8).values())
    assert 0.8 * peak <= estimate <= 1.5 * peak, (estimate, peak)


def test_check_memory_compares_with_what_is_available():
    config = GPTConfig(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64)
    need = sum(validate.estimate_training_memory(config, 4).values())
    validate.check_memory(config, 4, available=need + 1)
    with pytest.raises(ValueError, match=r"would need about .* GiB .* has .* GiB available"):
        validate.check_memory(config, 4, available=need - 1)
    assert validate.available_memory() is None or validate.available_memory() > 0


def test_vocab_size_check_counts_the_specials():
    validate.check_vocab_size(258, n_special=2)
    with pytest.raises(ValueError, match="at least 258"):
        validate.check_vocab_size(257, n_special=2)


def test_load_names_what_is_missing(tmp_path):
    import tinyllm

    with pytest.raises(ValueError, match="not a run folder"):
        tinyllm.load(tmp_path)
    (tmp_path / "config.json").write_text('{"model": {"vocab_size": 300, "n_layer": 1}}')
    with pytest.raises(ValueError, match="no checkpoint"):
        tinyllm.load(tmp_path)


@pytest.mark.parametrize("value, message", [("openblas", "AUTOGRAD_BLAS='openblas'"),
                                            ("mkl", "AUTOGRAD_BLAS=mkl")])
def test_a_bad_blas_choice_is_refused_before_any_work(value, message, no_training, capsys,
                                                      monkeypatch, tmp_path):
    from autograd import blas

    monkeypatch.setattr(blas, "_candidates", lambda: [tmp_path / "no-libmkl_rt.so"])  # no MKL
    monkeypatch.setenv("AUTOGRAD_BLAS", value)
    assert main(["train", "--out", str(tmp_path / "run")]) == 1
    assert message in one_error_line(capsys, "train")
    assert not (tmp_path / "run").exists()
