"""The built-in next-line set: held-out text only, seeded, distractors from other documents."""

from tinyllm.evaluate.builtin_sets import drop_seen, held_out_documents, nextline_set


def test_nextline_items_come_from_held_out_documents_only():
    held, train = held_out_documents("pydoc")
    assert held and train
    training = "\n".join(train)
    held_texts = [text for _, text in held]
    assert not any(text in training for text in held_texts)
    mc = nextline_set("pydoc")
    assert len(mc.items) >= 150
    for item in mc.items:
        assert len(item.choices) == 4 and len(set(item.choices)) == 4
        right = item.choices[item.answer]
        home = [t for t in held_texts if item.question + right in t]
        assert len(home) == 1, item.source  # the context is followed by the right line
        assert right.strip() not in {line.strip() for t in train for line in t.split("\n")}
        for i, wrong in enumerate(item.choices):
            if i != item.answer:
                assert wrong not in home[0]  # wrong endings come from other documents
                assert len(right) * 2 / 3 <= len(wrong) <= len(right) * 1.5
    answers = [item.answer for item in mc.items]
    assert all(answers.count(k) > len(answers) / 8 for k in range(4))


def test_nextline_is_seeded():
    a, b, c = nextline_set(seed=0), nextline_set(seed=0), nextline_set(seed=1)
    assert a.items == b.items and a.items != c.items


def test_drop_seen_removes_items_whose_answer_was_trained_on():
    mc = nextline_set()
    first = mc.items[0]
    kept, dropped = drop_seen(mc, "some text\n" + first.choices[first.answer] + "\nmore")
    assert dropped >= 1 and first not in kept.items
    assert len(kept.items) == len(mc.items) - dropped
