"""Corpora: the built-in ones and streaming user files."""

import json
import os
import sys
import textwrap

import pytest

from tinyllm.data.corpus import (
    builtin_documents,
    builtin_split,
    is_validation,
    iter_documents,
    split_documents,
    stdlib_documents,
)

# --------------------------------------------------------------------------------------------
# Built-in corpora
# --------------------------------------------------------------------------------------------


def test_pydoc_corpus_loads():
    docs = builtin_documents("pydoc")
    assert len(docs) > 50
    size = sum(len(d.encode("utf-8")) for d in docs)
    assert 300_000 < size < 700_000  # about 0.46 MB on CPython 3.11
    assert any("assert" in d for d in docs)
    assert all(isinstance(d, str) and d for d in docs)


def test_builtin_split_is_the_same_every_time():
    train, val = builtin_split("pydoc", val_fraction=0.1)
    train2, val2 = builtin_split("pydoc", val_fraction=0.1)
    assert (train, val) == (train2, val2)
    docs = builtin_documents("pydoc")
    assert sorted(train + val) == sorted(docs)  # a partition by document
    assert not set(train) & set(val)
    assert len(val) == len(docs) // 10
    assert val[0] == docs[9]  # documents 9, 19, 29, ... go to validation


def test_builtin_split_is_the_same_in_a_fresh_process():
    # Guards against anything that depends on hash randomisation or dict order.
    import subprocess

    code = (
        "import hashlib; from tinyllm.data.corpus import builtin_split;"
        "t, v = builtin_split('pydoc');"
        "print(hashlib.sha256(repr((t, v)).encode()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout.strip()  # fmt: skip
    import hashlib

    assert out == hashlib.sha256(repr(builtin_split("pydoc")).encode()).hexdigest()


def test_is_validation_spreads_evenly():
    flags = [is_validation(i, 0.1) for i in range(100)]
    assert sum(flags) == 10
    assert [i for i, f in enumerate(flags) if f][:3] == [9, 19, 29]
    assert sum(is_validation(i, 0.25) for i in range(100)) == 25
    assert not any(is_validation(i, 0.0) for i in range(100))
    with pytest.raises(ValueError):
        is_validation(0, 1.0)


def test_small_lists_still_get_a_validation_document():
    train, val = split_documents(["a", "b", "c"], 0.1)
    assert (train, val) == (["a", "b"], ["c"])
    assert split_documents(["a"], 0.1) == (["a"], [])


def test_stdlib_corpus_reads_docstrings_without_importing(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Package docs."""\n')
    (pkg / "mod.py").write_text(textwrap.dedent('''
        """Module docs."""
        raise SystemExit("importing this module would stop the tests")

        class Thing:
            """A thing."""

            def method(self):
                """Does it."""
        '''))
    (tmp_path / "broken.py").write_text("def (:\n")
    (tmp_path / "nodocs.py").write_text("x = 1\n")
    errors = []
    docs = stdlib_documents(tmp_path, on_error=lambda path, err: errors.append(path))
    assert docs == [
        "pkg\n\nPackage docs.",
        "pkg.mod\n\nModule docs.\n\npkg.mod.Thing\n\nA thing.\n\npkg.mod.Thing.method\n\nDoes it.",
    ]
    assert len(errors) == 1 and errors[0].endswith("broken.py")


def test_unknown_builtin_name():
    with pytest.raises(ValueError, match="unknown built-in corpus"):
        builtin_documents("wikipedia")


# --------------------------------------------------------------------------------------------
# User corpora
# --------------------------------------------------------------------------------------------


def make_tree(root):
    (root / "sub").mkdir()
    (root / "a.txt").write_text("plain text file")
    (root / "b.md").write_text("# Markdown\n\nbody")
    (root / "sub" / "c.html").write_text("<p>Hello <b>web</b></p><script>x()</script>")
    lines = [json.dumps({"text": "json one"}), "not json", json.dumps({"id": 3}),
             json.dumps({"text": "json two"})]  # fmt: skip
    (root / "sub" / "d.jsonl").write_text("\n".join(lines) + "\n")
    (root / "ignored.py").write_text("print('not a corpus file')")
    (root / ".hidden.txt").write_text("hidden")


def test_iter_documents_reads_every_kind_in_order(tmp_path):
    make_tree(tmp_path)
    errors = []
    docs = list(iter_documents([tmp_path], on_error=lambda p, e: errors.append((p, e))))
    assert docs == ["plain text file", "# Markdown\n\nbody", "Hello web", "json one", "json two"]
    assert len(errors) == 1
    path, message = errors[0]
    assert path.endswith("d.jsonl") and "2 unreadable line(s)" in message and "line 2" in message


def test_unreadable_files_are_reported_not_silently_skipped(tmp_path):
    (tmp_path / "good.txt").write_text("good")
    (tmp_path / "bad.txt").symlink_to(tmp_path / "gone.txt")  # a dangling link: open fails
    with pytest.warns(UserWarning, match="bad.txt"):
        docs = list(iter_documents([tmp_path]))
    assert docs == ["good"]
    errors = []
    list(iter_documents([tmp_path], on_error=lambda path, err: errors.append((path, err))))
    assert [os.path.basename(p) for p, _ in errors] == ["bad.txt"]
    assert "FileNotFoundError" in errors[0][1]


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        list(iter_documents([tmp_path / "nope"]))


def test_large_text_files_are_streamed_in_chunks(tmp_path):
    paragraph = "word " * 30 + "\n\n"
    (tmp_path / "big.txt").write_text(paragraph * 100)
    docs = list(iter_documents([tmp_path / "big.txt"], max_doc_chars=1000))
    assert len(docs) > 10
    assert all(len(d) <= 1000 for d in docs)
    assert "".join(docs) == paragraph * 100
    assert all(d.endswith("\n\n") for d in docs[:-1])  # cut at paragraph breaks


def test_undecodable_bytes_become_replacement_characters(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    assert list(iter_documents([tmp_path])) == ["caf\ufffd"]
