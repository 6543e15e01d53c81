"""Cleaning: HTML to text, normalisation, quality filters and the report."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyllm.data.clean import (
    REASONS,
    CleaningReport,
    FilterConfig,
    check_quality,
    html_to_text,
    normalize,
)

# --------------------------------------------------------------------------------------------
# html_to_text: hand-written cases
# --------------------------------------------------------------------------------------------

HTML_CASES = [
    # nested inline tags vanish, block tags give paragraph breaks
    ("<div><p>One <b>bold <i>word</i></b> here.</p><p>Two</p></div>", "One bold word here.\n\nTwo"),
    # unclosed tags: <li> and <p> never closed
    ("<ul><li>a<li>b<li>c</ul>after", "a\nb\nc\n\nafter"),
    ("<p>unclosed <b>bold <i>italic", "unclosed bold italic"),
    # entities, named and numeric, and nbsp
    ("<p>x &lt; y &amp;&amp; z &gt; 0 &eacute; &#233; &#x41;</p>", "x < y && z > 0 é é A"),
    # script, style, noscript and template content is dropped
    ("<script>var a = '<p>no</p>';</script>seen<style>p {color: red}</style>", "seen"),
    ("<noscript><p>enable js</p></noscript><template><div>tpl</div></template>ok", "ok"),
    ("<script>never closed <p>hidden", ""),
    ("</script>stray close<p>fine", "stray close\n\nfine"),
    # comments, including ones with tags inside and an unclosed one
    ("a<!-- hidden <p>comment</p> -->b", "ab"),
    ("kept<!-- unclosed comment", "kept"),
    # <pre> keeps its whitespace; outside it runs of whitespace collapse
    ("<pre>  def f():\n      return 1\n</pre><p>after   pre",
     "  def f():\n      return 1\n\nafter pre"),
    ("<h1>Title</h1>\n\n\n   <p>\n   Body    text\n spans lines</p>",
     "Title\n\nBody text spans lines"),
    # <br> is a line break, two are a blank line
    ("line1<br>line2<br/><br>line4", "line1\nline2\n\nline4"),
    # tables: cells on one line, rows on separate lines
    ("<table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>", "a b\nc d"),
    # declarations, CDATA and processing instructions are not text
    ("<!DOCTYPE html><![CDATA[ x ]]><?xml version='1.0'?>z", "z"),
    # no double space across a removed tag; a lone "<" in text survives
    ("<a href='x'>link</a> and <img src=y> image", "link and image"),
    ("3 < 4 and 5 > 2", "3 < 4 and 5 > 2"),
    ("text <a href='cut off", "text"),
]


@pytest.mark.parametrize("html, expected", HTML_CASES)
def test_html_to_text_cases(html, expected):
    assert html_to_text(html) == expected


def test_html_full_page():
    page = """<!DOCTYPE html>
    <html><head><title>My page</title>
    <style>body { font: 12px }</style><script src="x.js"></script></head>
    <body><nav><a href="/">Home</a> | <a href="/b">Blog</a></nav>
    <article><h2>Hello&nbsp;world</h2><p>First paragraph,
    wrapped.</p><p>Second &mdash; with <code>code</code>.</p></article></body></html>"""
    assert html_to_text(page) == (
        "My page\n\nHome | Blog\n\nHello world\n\nFirst paragraph, wrapped.\n\n"
        "Second \u2014 with code."
    )


@given(st.text(alphabet="<>/!-&;#ab pre script=\"'\n", max_size=80))
def test_html_to_text_never_raises_on_malformed_input(html):
    text = html_to_text(html)
    assert isinstance(text, str)
    assert "\n\n\n" not in text


# --------------------------------------------------------------------------------------------
# normalize
# --------------------------------------------------------------------------------------------


def test_normalize_nfc_newlines_controls_spaces():
    raw = "Cafe\u0301\r\nline2\rline3\u2028x\x00y\x07z\ufeff\n\n\n\nend  of   it   \n"
    assert normalize(raw) == "Caf\u00e9\nline2\nline3\nxyz\n\nend  of   it"


def test_normalize_composes_after_removing_control_characters():
    # Removing the NUL brings "e" and the combining accent together; the result must be NFC.
    assert normalize("caf" + "e\x00\u0301") == "caf\u00e9"


def test_normalize_keeps_indentation_and_tabs_at_line_start():
    code = "def f():\n    return  1\n\tindented"
    assert normalize(code) == code


INDENTED_CODE = (
    "class Point:\n"
    "    x: int = 0      # aligned comments\n"
    "    y: int = 0      # stay aligned\n"
    "\n"
    "    def norm(self):\n"
    "        return (self.x ** 2  +  self.y ** 2) ** 0.5\n"
    "\tif  a:\tb\n"
    "name    value\n"
    "alpha   1\n"
)


def test_normalize_keeps_indentation_and_alignment_inside_lines():
    assert normalize(INDENTED_CODE) == INDENTED_CODE.rstrip("\n")
    # only noise goes: trailing spaces, extra blank lines, odd spaces, invisible characters
    noisy = INDENTED_CODE.replace("= 0      #", "= 0\u00a0\u00a0    #").replace(
        "\n\n", "  \n\n\n\n").replace("norm", "no\u200brm")
    assert normalize(noisy) == INDENTED_CODE.rstrip("\n")


def test_normalize_keeps_what_html_to_text_keeps_in_pre():
    html = ("<p>Example:</p><pre>def f(x):\n    if x:   # note\n        return  x\n</pre>"
            "<p>Done   here.</p>")
    text = normalize(html_to_text(html))
    assert text == "Example:\n\ndef f(x):\n    if x:   # note\n        return  x\n\nDone here."


@given(st.text(max_size=200))
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once
    assert "\r" not in once


# --------------------------------------------------------------------------------------------
# Quality filters: one case per reason
# --------------------------------------------------------------------------------------------

PROSE = (
    "The quick brown fox jumps over the lazy dog, and then it runs into the forest.\n"
    "Nobody saw where it went, but everyone agreed it was a very fine fox indeed.\n"
    "Later that day the dog woke up, looked around, and went back to sleep again.\n"
)


def test_good_prose_is_kept():
    assert check_quality(normalize(PROSE)) is None


FILTER_CASES = {
    "too_short": "Too short.",
    "non_text": "abc \ufffd\ufffd\ufffd\ufffd\ufffd " * 30,
    "too_few_letters": "".join(f"{i} {i * i} {i / 7:.3f}\n" for i in range(30)),
    "too_many_symbols": "".join(f"value{i} = {{key: [item | other]}} # note\n" for i in range(9)),
    "long_lines": "word " * 3000,
    "repeated_lines": "Home | About us | Contact\n" * 6 + PROSE,
}


@pytest.mark.parametrize("reason, text", FILTER_CASES.items(), ids=list(FILTER_CASES))
def test_each_filter_reason(reason, text):
    assert check_quality(normalize(text)) == reason


def test_filter_thresholds_are_configurable():
    short = "A perfectly good sentence."
    assert check_quality(short) == "too_short"
    assert check_quality(short, FilterConfig(min_chars=10)) is None
    long_line = "word " * 3000
    assert check_quality(long_line, FilterConfig(max_line_chars=100_000)) is None


def test_builtin_docs_mostly_pass_filters():
    from tinyllm.data.corpus import builtin_documents

    docs = builtin_documents("pydoc")
    kept = [d for d in docs if check_quality(normalize(d)) is None]
    assert len(kept) >= 0.95 * len(docs)


# --------------------------------------------------------------------------------------------
# CleaningReport
# --------------------------------------------------------------------------------------------


def test_report_counts_docs_and_bytes_per_reason():
    report = CleaningReport()
    report.keep("héllo")  # 6 bytes in UTF-8
    report.keep("abc")
    report.drop("x", "too_short")
    report.drop("yy", "too_short")
    report.drop("dup", "exact_duplicate")
    report.skip_file("bad.txt", "PermissionError")
    d = report.to_dict()
    assert d["docs_kept"] == 2 and d["bytes_kept"] == 9
    assert d["dropped"]["too_short"] == {"docs": 2, "bytes": 3}
    assert d["dropped"]["exact_duplicate"] == {"docs": 1, "bytes": 3}
    assert d["docs_seen"] == 5 and d["files_skipped"] == 1
    text = report.format()
    assert "too_short" in text and "bad.txt" in text
    with pytest.raises(ValueError):
        report.drop("x", "no_such_reason")
    assert set(REASONS) >= set(d["dropped"])
