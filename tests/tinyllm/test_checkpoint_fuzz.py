"""Fuzzing the readers of a run folder: checkpoint safetensors (weights, optimizer moments),
state.json and config.json, damaged at random (truncated, bit-flipped, a random 8-byte header
length, garbage) and on purpose (huge header lengths, NaN weights, wrong shapes, symbolic
links). A resume either works or stops with one ValueError naming the damaged run's file; no
other exception escapes, nothing is unpickled."""

import itertools
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm import checkpoint as ckpt
from tinyllm.safetensors import SafetensorsError, load_file, read_shapes, save_file
from tinyllm.train import TrainConfig, Trainer, resume_config

FILES = ("checkpoint/model.safetensors", "checkpoint/optimizer.safetensors",
         "checkpoint/state.json", "config.json")
_counter = itertools.count()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(20):
        (corpus / f"doc{i:02d}.txt").write_text(f"Document {i}: the fox {i} jumps. " * 6)
    cfg = TrainConfig(out_dir=str(root / "run"), data=str(corpus), batch_size=2, max_steps=2,
                      eval_interval=2, eval_tokens=32, sample_tokens=2, progress=False,
                      model=dict(vocab_size=280, block_size=8, n_layer=1, n_head=1, n_embd=8))
    Trainer(cfg, log=lambda m: None).run()
    return root / "run"


def fresh_copy(template):
    run = Path(tempfile.mkdtemp(prefix="fuzz-run-")) / f"run{next(_counter)}"
    shutil.copytree(template, run, symlinks=True)
    return run


def resume(run):
    return Trainer(resume_config(run, {}), resume=True, log=lambda m: None)


def assert_refused_naming_a_file(run):
    """Resuming `run` works, or raises a ValueError that names a file of the run."""
    try:
        resume(run)
    except ValueError as err:  # CheckpointError, SafetensorsError, RunFolderError ...
        message = str(err)
        assert "\n" not in message.strip(), message
        assert str(run) in message or any(Path(f).name in message for f in FILES), message
    finally:
        shutil.rmtree(run.parent, ignore_errors=True)


damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("header"), st.binary(min_size=8, max_size=8)),
    st.tuples(st.just("garbage"), st.binary(max_size=64)),
)


@settings(max_examples=40, deadline=None)
@given(target=st.sampled_from(FILES), how=damage)
def test_damaged_files_resume_or_are_refused_by_name(template, target, how):
    run = fresh_copy(template)
    path = run / target
    data = bytearray(path.read_bytes())
    if how[0] == "truncate":
        data = data[:int(how[1] * (len(data) - 1))]
    elif how[0] == "flip":
        data[int(how[1] * (len(data) - 1))] ^= 1 << how[2]
    elif how[0] == "header":
        data[:8] = how[1]
    else:
        data = bytearray(how[1])
    path.write_bytes(bytes(data))
    assert_refused_naming_a_file(run)


@settings(max_examples=25, deadline=None)
@given(target=st.sampled_from(("checkpoint/state.json", "config.json")), data=st.data())
def test_json_with_wrong_types_is_refused_by_name(template, target, data):
    """Valid JSON, wrong content: every value of the file in turn replaced by something else."""
    run = fresh_copy(template)
    path = run / target
    obj = json.loads(path.read_text())
    keys = sorted(obj)
    key = data.draw(st.sampled_from(keys))
    value = data.draw(st.one_of(st.none(), st.booleans(), st.integers(-5, 10**20),
                                st.floats(allow_nan=True), st.text(max_size=5),
                                st.lists(st.integers(), max_size=3),
                                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
    if isinstance(obj[key], dict) and obj[key] and data.draw(st.booleans()):
        inner = data.draw(st.sampled_from(sorted(obj[key])))
        obj[key][inner] = value
    else:
        obj[key] = value
    path.write_text(json.dumps(obj))
    assert_refused_naming_a_file(run)


def test_hand_made_damage_is_refused_with_the_file_named(template):
    cases = []
    for name in ("model", "optimizer"):
        cases.append((f"checkpoint/{name}.safetensors", "huge header",
                      lambda p: p.write_bytes((2**63).to_bytes(8, "little") + b"{}"), "header length"))
    cases += [
        ("checkpoint/model.safetensors", "NaN weights", lambda p: _rewrite(p, nan=True), "NaN"),
        ("checkpoint/optimizer.safetensors", "inf moments", lambda p: _rewrite(p, nan=True), "NaN"),
        ("checkpoint/model.safetensors", "wrong shape", lambda p: _rewrite(p, shape=True),
         "does not fit"),
        ("checkpoint/optimizer.safetensors", "wrong shape", lambda p: _rewrite(p, shape=True),
         "does not fit"),
        ("checkpoint/model.safetensors", "deep JSON",
         lambda p: p.write_bytes(_header(b"[" * 100000 + b"]" * 100000)), "not valid JSON"),
        ("checkpoint/model.safetensors", "overflowing shape",
         lambda p: p.write_bytes(_header(json.dumps({"w": {"dtype": "F32", "shape": [2**62, 8],
                                                           "data_offsets": [0, 0]}}).encode())),
         "claims bytes"),
        ("checkpoint/state.json", "not UTF-8", lambda p: p.write_bytes(b'{"step": "\xff"}'),
         "not UTF-8"),
        ("checkpoint/state.json", "a string step",
         lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "step": "2"})),
         "'step' must be a non-negative integer"),
        ("config.json", "a list", lambda p: p.write_text("[1, 2]"), "not a JSON object"),
        ("config.json", "a string layer count",
         lambda p: p.write_text(p.read_text().replace('"n_layer": 1', '"n_layer": "1"')),
         "n_layer"),
    ]
    for target, what, spoil, expected in cases:
        run = fresh_copy(template)
        spoil(run / target)
        with pytest.raises(ValueError) as info:
            resume(run)
        assert Path(target).name in str(info.value) and expected in str(info.value), (what, info.value)
        shutil.rmtree(run.parent)


def test_symbolic_links_are_refused(template):
    for target in FILES + ("checkpoint",):
        run = fresh_copy(template)
        real = run.parent / ("elsewhere-" + Path(target).name)
        os.replace(run / target, real)
        os.symlink(real, run / target)
        with pytest.raises(ValueError, match="symbolic link") as info:
            resume(run)
        assert Path(target).name in str(info.value)
        shutil.rmtree(run.parent)


def test_nothing_is_ever_unpickled(template, monkeypatch):
    """A resume reads every file of the run; none of it goes through pickle or np.load."""
    import pickle

    def forbidden(*a, **k):
        raise AssertionError("unpickling or np.load while loading a run")

    run = fresh_copy(template)
    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (np, "load")):
        monkeypatch.setattr(module, name, forbidden)
    assert resume(run).step == 2
    shutil.rmtree(run.parent)


def _header(blob: bytes) -> bytes:
    return len(blob).to_bytes(8, "little") + blob


def _rewrite(path, nan=False, shape=False):
    arrays, meta = load_file(path)
    name = sorted(arrays)[0]
    if nan:
        arrays[name] = arrays[name].copy()
        arrays[name].flat[0] = math.nan
    if shape:
        arrays[name] = np.zeros(arrays[name].shape + (2,), arrays[name].dtype)
    save_file(arrays, path, meta)


def test_safetensors_reader_alone_names_the_file(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x01\x02")
    with pytest.raises(SafetensorsError, match="x.safetensors.*too short"):
        load_file(path)
    with pytest.raises(SafetensorsError, match="x.safetensors.*no such file"):
        load_file(tmp_path / "x.safetensors.missing".replace(".missing", "2"))
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(SafetensorsError, match="fifo.safetensors.*not a regular file"):
        load_file(fifo)  # would block for ever if opened
    with pytest.raises(ckpt.CheckpointError, match="fifo.safetensors.*not a regular file"):
        ckpt.read_json(fifo)


@pytest.mark.parametrize("field, value", [("n_embd", 290962), ("n_layer", 10**12),
                                          ("block_size", 10**15)])
def test_a_config_larger_than_its_weights_is_refused_before_allocating(template, field, value):
    """A hand-edited size in config.json is refused by comparing it with the checkpoint's
    weight shapes, read from the file's header: before the model is built (n_embd 290962 asked
    numpy for 1.85 TiB; a trillion layers would never finish building)."""
    run = fresh_copy(template)
    path = run / "config.json"
    obj = json.loads(path.read_text())
    obj["model"][field] = value
    if field == "n_embd":
        obj["model"]["n_head"] = 1
    path.write_text(json.dumps(obj))
    try:
        with pytest.raises(ValueError, match=r"model.safetensors (holds 1 layers|does not fit)"
                                             r".*config.json"):
            resume(run)
    finally:
        shutil.rmtree(run.parent, ignore_errors=True)


def test_read_shapes_reads_the_header_alone_with_load_files_checks(template, tmp_path):
    path = template / "checkpoint" / "model.safetensors"
    tensors, _ = load_file(path)
    assert read_shapes(path) == {name: arr.shape for name, arr in tensors.items()}
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-4])  # the header intact, the data 4 bytes short
    with pytest.raises(SafetensorsError, match="claims bytes"):
        read_shapes(cut)


def test_every_loader_checks_the_config_against_the_weights_first(template):
    """tinyllm.load, the evaluation's and the fine-tune's run loaders and --init-from refuse
    an edited config.json the same way, before building anything."""
    import tinyllm
    from tinyllm.align.sft import load_run
    from tinyllm.evaluate.runs import load_run as load_eval_run
    from tinyllm.init_from import init_config

    run = fresh_copy(template)
    try:
        obj = json.loads((run / "config.json").read_text())
        obj["model"].update(n_embd=290962, n_head=1)
        (run / "config.json").write_text(json.dumps(obj))
        init = TrainConfig(init_from=str(run), out_dir=str(run.parent / "next"))
        for load in (tinyllm.load, load_run, load_eval_run, lambda r: init_config(init)):
            with pytest.raises(ValueError, match=r"model.safetensors does not fit .*config.json"):
                load(run)
    finally:
        shutil.rmtree(run.parent, ignore_errors=True)
