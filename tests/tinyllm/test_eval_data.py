"""Reading MMLU-layout CSV folders, JSONL sets and completion sets; one-line errors."""

import json

import pytest

from tinyllm.evaluate.mc_data import EvalDataError, load_completion, load_multiple_choice, read_mmlu_csv

# Rows shaped like MMLU's own files: no header, quoted fields with commas, quotes and newlines.
ALGEBRA_TEST = '''"Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.",0,1,2,3,B
"Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | \
If H and K are subgroups of G then HK is a subgroup of G.","True, True","False, False",\
"True, False","False, True",B
"Which one is ""odd""?
(two lines)",a,b,c,d,d
'''
ALGEBRA_DEV = '''Find the degree for the given field extension Q(sqrt(2)) over Q.,0,2,1,3,B
"Let p = (1, 2, 5, 4)(2, 3) in S_5 . Find the index of <p> in S_5.",8,2,24,120,C
'''
ANATOMY_TEST = '''What is the embryological origin of the hyoid bone?,The first pharyngeal arch,\
The first and second pharyngeal arches,The second pharyngeal arch,\
The second and third pharyngeal arches,D
'''


def mmlu_tree(root):
    (root / "test").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "test" / "abstract_algebra_test.csv").write_text(ALGEBRA_TEST)
    (root / "dev" / "abstract_algebra_dev.csv").write_text(ALGEBRA_DEV)
    (root / "test" / "anatomy_test.csv").write_text(ANATOMY_TEST)
    return root


def test_mmlu_data_folder_as_shipped(tmp_path):
    mc = load_multiple_choice(mmlu_tree(tmp_path / "data"))
    assert [i.subject for i in mc.items] == ["abstract_algebra"] * 3 + ["anatomy"]
    first, second, third, anatomy = mc.items
    assert first.choices == ("0", "1", "2", "3") and first.answer == 1
    assert second.choices[0] == "True, True" and second.answer == 1
    assert third.question == 'Which one is "odd"?\n(two lines)' and third.answer == 3
    assert anatomy.answer == 3 and anatomy.source.endswith("anatomy_test.csv:1")
    assert [d.answer for d in mc.dev["abstract_algebra"]] == [1, 2]
    assert "anatomy" not in mc.dev


def test_flat_folder_and_single_file_find_their_dev_examples(tmp_path):
    (tmp_path / "abstract_algebra_test.csv").write_text(ALGEBRA_TEST)
    (tmp_path / "abstract_algebra_dev.csv").write_text(ALGEBRA_DEV)
    flat = load_multiple_choice(tmp_path)
    single = load_multiple_choice(tmp_path / "abstract_algebra_test.csv")
    assert len(flat.items) == len(single.items) == 3
    assert len(flat.dev["abstract_algebra"]) == len(single.dev["abstract_algebra"]) == 2


@pytest.mark.parametrize("text, message", [
    ("q,a,b,c,A\n", "expected 6 columns"),
    ("q,a,b,c,d,A\nq2,a,b,c,d,e,B\n", ":2: expected 6 columns"),
    ("q,a,b,c,d,E\n", "answer 'E' is not one of A, B, C, D"),
    ("", "empty file"),
    ("\n\n", "empty file"),
])
def test_bad_csv_gives_one_line_naming_file_and_row(tmp_path, text, message):
    path = tmp_path / "x_test.csv"
    path.write_text(text)
    with pytest.raises(EvalDataError) as err:
        read_mmlu_csv(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_jsonl_multiple_choice(tmp_path):
    path = tmp_path / "set.jsonl"
    rows = [{"question": "q1", "choices": ["a", "b", "c"], "answer": 2, "subject": "s"},
            {"question": "q2", "choices": ["a", "b"], "answer": "B"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mc = load_multiple_choice(path)
    assert [(i.answer, len(i.choices), i.subject) for i in mc.items] == [(2, 3, "s"), (1, 2, "set")]


@pytest.mark.parametrize("row, message", [
    ({"question": "q", "choices": ["a", "b"], "answer": 2}, ":1: answer 2 is not a choice"),
    ({"question": "q", "choices": ["a"], "answer": 0}, "at least two strings"),
    ({"question": "q", "answer": 0}, "missing field(s) choices"),
])
def test_bad_jsonl_names_the_line(tmp_path, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(EvalDataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_multiple_choice(path)


def test_not_json_and_missing_paths(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "choices": ["a", "b"], "answer": 0}\n{oops\n')
    with pytest.raises(EvalDataError, match=r"bad.jsonl:2: not valid JSON"):
        load_multiple_choice(path)
    with pytest.raises(EvalDataError, match="no such file"):
        load_multiple_choice(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalDataError, match="no MMLU-layout CSV"):
        load_multiple_choice(tmp_path / "empty")


def test_completion_reads_our_names_and_hellaswags(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"context": "He", "endings": ["a", "b"], "label": 1}) + "\n"
                    + json.dumps({"ctx": "She", "endings": ["c", "d", "e"], "label": "2",
                                  "activity_label": "Baking"}) + "\n")
    mc = load_completion(path)
    assert [(i.question, i.answer, i.subject) for i in mc.items] == [("He", 1, "c"),
                                                                     ("She", 2, "Baking")]
    path.write_text(json.dumps({"context": "He", "endings": ["a", "b"]}) + "\n")
    with pytest.raises(EvalDataError, match="c.jsonl:1: needs"):
        load_completion(path)
