"""Cleaning raw documents: HTML to text, Unicode normalisation and quality filters.

Three steps turn whatever a crawler or a folder of files gives us into text worth training on:

1. `html_to_text` keeps what a reader would see in a browser: the words, with a paragraph break
   after every block element, and nothing from scripts, styles or comments.
2. `normalize` gives every document the same spelling of the same text (Unicode NFC, ``\\n``
   line ends, no control characters, no trailing spaces or runs of blank lines, one kind of
   space), so that exact de-duplication by hash works and the tokenizer never sees two
   encodings of one character. Spaces inside a line are kept: they are indentation and
   alignment in code and tables.
3. `check_quality` decides whether a document is worth keeping and, when it is not, names the
   reason. The thresholds live in `FilterConfig`, with their defaults documented there.

`CleaningReport` counts what happened to every document and every byte, by reason, so that a
run that throws away half its input says so.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from html import unescape
from html.parser import HTMLParser

import numpy as np

__all__ = [
    "html_to_text",
    "normalize",
    "FilterConfig",
    "check_quality",
    "text_stats",
    "CleaningReport",
    "REASONS",
]

# --------------------------------------------------------------------------------------------
# HTML to text
# --------------------------------------------------------------------------------------------

# Elements whose *content* is never visible text.
_SKIP_TAGS = frozenset({"script", "style", "noscript", "template"})

# Elements that start a new paragraph (a blank line before and after them).
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "div", "section", "article", "aside", "header", "footer", "nav", "main",
        "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "dl",
        "figure", "figcaption", "form", "fieldset", "address", "details", "summary", "hr",
        "title", "body", "html", "center",
    }
)  # fmt: skip

# Elements that start a new line but not a new paragraph.
_LINE_TAGS = frozenset({"li", "tr", "dt", "dd", "option", "caption", "thead", "tbody", "tfoot"})

# Table cells are separated by a space, so "a</td><td>b" does not become "ab".
_CELL_TAGS = frozenset({"td", "th"})

_WHITESPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collects the visible text of an HTML document as a list of string pieces.

    Line structure is tracked with `_pending`, the number of newlines owed before the next
    piece of text: block elements only *request* a break, so that "<p></p><p></p>" or a
    closing tag followed by an opening one never produce more than one blank line.
    """

    def __init__(self) -> None:
        # convert_charrefs=True makes the parser unescape &amp; &#233; etc. inside text for us.
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._pending = 0  # newlines owed before the next text (0, 1 or 2)
        self._at_line_start = True  # true when the last emitted piece ended a line
        self._skip = {tag: 0 for tag in _SKIP_TAGS}  # open depth of each invisible element
        self._pre = 0  # depth of <pre>: whitespace is kept verbatim inside it

    # -- helpers ---------------------------------------------------------------------------
    def _skipping(self) -> bool:
        return any(self._skip.values())

    def _request_break(self, newlines: int) -> None:
        self._pending = max(self._pending, newlines)

    def _flush_break(self) -> None:
        if self._pending and self.parts:
            # Spaces just before a line break are invisible; drop them.
            self.parts[-1] = self.parts[-1].rstrip(" ")
            self.parts.append("\n" * self._pending)
            self._at_line_start = True
        self._pending = 0

    # -- parser callbacks --------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP_TAGS:
            self._skip[tag] += 1
        elif tag == "br":
            if not self._skipping():
                self._flush_break()
                self.parts.append("\n")
                self._at_line_start = True
        elif tag in _PARAGRAPH_TAGS:
            self._request_break(2)
            if tag == "pre":
                self._pre += 1
        elif tag in _LINE_TAGS:
            self._request_break(1)
        elif tag in _CELL_TAGS and not self._at_line_start and not self._pending:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            # A stray closing tag must not make the depth negative.
            self._skip[tag] = max(0, self._skip[tag] - 1)
        elif tag in _PARAGRAPH_TAGS:
            self._request_break(2)
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
        elif tag in _LINE_TAGS:
            self._request_break(1)

    def handle_data(self, data: str) -> None:
        if self._skipping() or not data:
            return
        if not self._pre:
            # Outside <pre>, any run of whitespace (newlines included) shows as one space,
            # and never two in a row across a tag ("a <img> b").
            data = _WHITESPACE.sub(" ", data)
            after_space = bool(self.parts) and self.parts[-1].endswith(" ")
            if self._at_line_start or self._pending or after_space:
                data = data.lstrip(" ")
            if not data:
                return
        self._flush_break()
        self.parts.append(data)
        self._at_line_start = data.endswith("\n")

    def close(self) -> None:
        # Whatever is left unparsed at the end is an unfinished construct. An unclosed comment
        # hides the rest of the page (as in a browser), and a cut-off tag is not text.
        if _UNFINISHED.match(self.rawdata):
            self.rawdata = ""
        super().close()

    # Comments, <!DOCTYPE>, <?processing instructions?> and <![CDATA[...]]> go to
    # handle_comment, handle_decl, handle_pi and unknown_decl, which HTMLParser leaves empty:
    # they are not text, so we do not override them.


_UNFINISHED = re.compile(r"<[a-zA-Z/!?]")
_TAG = re.compile(r"<[^>]*>")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _crude_html_to_text(html: str) -> str:
    """Fallback for HTML so broken that `HTMLParser` gives up: drop anything tag-shaped."""
    html = re.sub(r"(?is)<(script|style|noscript|template)\b.*?(</\1\s*>|$)", " ", html)
    html = re.sub(r"(?s)<!--.*?(-->|$)", " ", html)
    return unescape(_TAG.sub(" ", html))


def html_to_text(html: str) -> str:
    """Return the visible text of an HTML document.

    Tags are dropped; the content of ``script``, ``style``, ``noscript`` and ``template`` and
    all comments are dropped; entities are unescaped; block elements (``p``, ``div``, headings,
    lists, tables, ...) become paragraph or line breaks and ``<br>`` a line break; text inside
    ``<pre>`` keeps its whitespace. Malformed HTML (unclosed or stray tags, a ``<`` in text)
    never raises: the standard-library parser is forgiving, and if it does give up we fall back
    to stripping anything that looks like a tag.

    >>> html_to_text("<p>Fish &amp; chips<br>daily</p><script>x()</script><p>Bye")
    'Fish & chips\\ndaily\\n\\nBye'
    """
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # the parser raises AssertionError on a few pathological inputs
        text = _WHITESPACE.sub(" ", _crude_html_to_text(html))
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n").rstrip()


# --------------------------------------------------------------------------------------------
# Normalisation
# --------------------------------------------------------------------------------------------

# Every way of ending a line that Unicode knows, turned into "\n".
_NEWLINES = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# Removed: C0 and C1 control characters except tab and newline; invisible characters that
# only break words apart for a tokenizer (byte-order mark / zero-width no-break space,
# zero-width space, word joiner, soft hyphen). Zero-width (non-)joiners stay: they change how
# emoji and some scripts render.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\ufeff\u200b\u2060\u00ad]")
# Spaces of other widths (no-break, en, em, thin, ideographic, ...) become a plain space, one
# for one, so that alignment is kept and " the" is always spelt the same way.
_ODD_SPACES = re.compile(r"[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
# Any character that one of the patterns above would change.
_UNUSUAL = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufeff\u200b\u2060\u00ad\u2028\u2029"
    r"\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
)
_TRAILING_SPACES = re.compile(r"[ \t]+$", re.MULTILINE)
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def _has_any(text: str, needles) -> bool:
    return any(needle in text for needle in needles)


def normalize(text: str) -> str:
    """Return `text` in canonical form, changing only what is noise.

    - ``\\r\\n``, ``\\r`` and the other Unicode line separators become ``\\n``;
    - control characters (except tab and newline), byte-order marks, zero-width spaces, word
      joiners and soft hyphens are removed;
    - no-break, thin, em and other odd spaces become plain spaces, one for one;
    - Unicode NFC, so "é" is always one code point, never "e" plus a combining accent;
    - spaces and tabs at the end of a line go; at most one blank line in a row, and no blank
      lines at either end.

    Everything else inside a line is kept: leading indentation, runs of spaces that align
    columns in code or tables, tabs. (Collapsing them would wreck the code that documentation
    is full of, and undo what `html_to_text` keeps for ``<pre>``.)

    The function is idempotent: ``normalize(normalize(t)) == normalize(t)``. (That is why NFC
    comes after removing control characters: removing one can bring a letter and its accent
    together.) Each regular expression runs only when a quick test says it could change
    something, because most documents are already clean and `in` is far faster.
    """
    if _UNUSUAL.search(text):
        text = _NEWLINES.sub("\n", text)
        text = _CONTROL.sub("", text)
        text = _ODD_SPACES.sub(" ", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if _has_any(text, (" \n", "\t\n")) or text.endswith((" ", "\t")):
        text = _TRAILING_SPACES.sub("", text)
    if "\n\n\n" in text:
        text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip("\n")


# --------------------------------------------------------------------------------------------
# Quality filters
# --------------------------------------------------------------------------------------------

# Character classes used by the filters. Each code point maps to one class through a lookup
# table, so counting the classes of a whole document is one NumPy indexing operation.
LETTER, DIGIT, SPACE, PUNCT, SYMBOL, NONTEXT = range(6)

# Punctuation found in ordinary prose; everything else that is neither letter, digit nor space
# ("#", "{", "|", "=", "@", math and currency signs, box drawing, ...) counts as a symbol.
_PROSE_PUNCT = set(".,;:!?'\"()-\u2013\u2014\u2018\u2019\u201c\u201d\u2026")


@lru_cache(maxsize=1)
def _char_class_table() -> np.ndarray:
    """A uint8 table giving the class of every Unicode code point (built once, ~0.2 s)."""
    by_category = {"L": LETTER, "M": LETTER, "N": DIGIT, "Z": SPACE, "S": SYMBOL, "P": SYMBOL}
    # C* (control, format, private use, unassigned, surrogate) is not text.
    classes = bytes(
        by_category.get(unicodedata.category(chr(cp))[0], NONTEXT) for cp in range(0x110000)
    )
    table = np.frombuffer(classes, dtype=np.uint8).copy()
    for ch in _PROSE_PUNCT:
        table[ord(ch)] = PUNCT
    table[[ord("\t"), ord("\n")]] = SPACE
    table[0xFFFD] = NONTEXT  # the replacement character left by undecodable bytes
    return table


def text_stats(text: str) -> dict:
    """Counts used by the filters: characters per class, lines, repeated lines, longest line."""
    table = _char_class_table()
    if text.isascii():  # the common case: one byte per character, 4x less data to look up
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    counts = np.bincount(table[codes], minlength=6)
    lines = text.split("\n")
    nonblank = [line for line in map(str.strip, lines) if line]
    return {
        "chars": len(text),
        "letters": int(counts[LETTER]),
        "digits": int(counts[DIGIT]),
        "spaces": int(counts[SPACE]),
        "punct": int(counts[PUNCT]),
        "symbols": int(counts[SYMBOL]),
        "nontext": int(counts[NONTEXT]),
        "lines": len(nonblank),
        "repeated_lines": len(nonblank) - len(set(nonblank)),
        "longest_line": max(map(len, lines)),
    }


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the quality filters. A document is dropped for the first rule it breaks.

    The defaults are deliberately lenient: they remove boilerplate, binary junk and
    machine-generated tables, while keeping technical prose with code in it (the built-in
    Python documentation corpus passes almost whole).

    Attributes:
        min_chars: "too_short" below this many characters (default 100: a couple of sentences).
        max_nontext_fraction: "non_text" when more than this fraction of the characters are
            undecodable (U+FFFD), private-use or unassigned code points (default 0.1: a
            binary file read as text).
        min_letter_fraction: "too_few_letters" when letters are less than this fraction of the
            visible (non-space) characters (default 0.4; English prose is about 0.8, the
            Python documentation 0.65 to 0.85, numeric tables and hex dumps far less).
        max_symbol_fraction: "too_many_symbols" when symbols (anything but letters, digits,
            spaces and prose punctuation) are more than this fraction of the visible characters
            (default 0.2; prose is about 0.01, Python documentation about 0.05, minified code
            or ASCII art 0.3 and more).
        max_line_chars: "long_lines" when any line is longer than this (default 10,000
            characters: minified scripts, base64 blobs, text without any line structure).
        max_repeated_line_fraction: "repeated_lines" when more than this fraction of the
            non-blank lines repeat an earlier line (default 0.5: navigation menus, logs, spam).
    """

    min_chars: int = 100
    max_nontext_fraction: float = 0.1
    min_letter_fraction: float = 0.4
    max_symbol_fraction: float = 0.2
    max_line_chars: int = 10_000
    max_repeated_line_fraction: float = 0.5


# Every reason a document can be dropped, in the order the rules are checked; the two
# duplicate reasons come from `tinyllm.data.dedup`.
REASONS = (
    "too_short",
    "non_text",
    "too_few_letters",
    "too_many_symbols",
    "long_lines",
    "repeated_lines",
    "exact_duplicate",
    "near_duplicate",
)


def check_quality(text: str, config: FilterConfig | None = None) -> str | None:
    """Return why `text` should be dropped (one of `REASONS`), or None to keep it.

    `text` should already be normalised. The rules run from cheapest to most expensive, and the
    first that fails names the reason.
    """
    config = config or FilterConfig()
    if len(text) < config.min_chars:
        return "too_short"
    s = text_stats(text)
    if s["nontext"] > config.max_nontext_fraction * s["chars"]:
        return "non_text"
    visible = max(1, s["chars"] - s["spaces"])
    if s["letters"] < config.min_letter_fraction * visible:
        return "too_few_letters"
    if s["symbols"] > config.max_symbol_fraction * visible:
        return "too_many_symbols"
    if s["longest_line"] > config.max_line_chars:
        return "long_lines"
    if s["repeated_lines"] > config.max_repeated_line_fraction * max(1, s["lines"]):
        return "repeated_lines"
    return None


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class CleaningReport:
    """Documents and UTF-8 bytes kept and dropped, per reason.

    Bytes are counted on the text at the point of the decision (after HTML extraction and
    normalisation), so kept + dropped bytes add up to the cleaned input. `skipped_files` lists
    inputs that could not be read at all, with the error.
    """

    docs_kept: int = 0
    bytes_kept: int = 0
    dropped_docs: dict[str, int] = field(default_factory=dict)
    dropped_bytes: dict[str, int] = field(default_factory=dict)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    def keep(self, text: str) -> None:
        self.docs_kept += 1
        self.bytes_kept += len(text.encode("utf-8"))

    def drop(self, text: str, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown drop reason {reason!r}; expected one of {REASONS}")
        self.dropped_docs[reason] = self.dropped_docs.get(reason, 0) + 1
        self.dropped_bytes[reason] = self.dropped_bytes.get(reason, 0) + len(text.encode("utf-8"))

    def skip_file(self, path: str, error: str) -> None:
        self.skipped_files.append((str(path), str(error)))

    @property
    def docs_dropped(self) -> int:
        return sum(self.dropped_docs.values())

    @property
    def bytes_dropped(self) -> int:
        return sum(self.dropped_bytes.values())

    @property
    def docs_seen(self) -> int:
        return self.docs_kept + self.docs_dropped

    def to_dict(self) -> dict:
        """A JSON-ready summary (used in ``meta.json``)."""
        return {
            "docs_seen": self.docs_seen,
            "docs_kept": self.docs_kept,
            "bytes_kept": self.bytes_kept,
            "docs_dropped": self.docs_dropped,
            "bytes_dropped": self.bytes_dropped,
            "dropped": {
                reason: {"docs": self.dropped_docs[reason], "bytes": self.dropped_bytes[reason]}
                for reason in REASONS
                if reason in self.dropped_docs
            },
            "files_skipped": len(self.skipped_files),
            "skipped_files": [{"path": p, "error": e} for p, e in self.skipped_files],
        }

    @classmethod
    def from_dict(cls, d: dict) -> CleaningReport:
        """Rebuild a report from `to_dict` output (e.g. read back from ``meta.json``)."""
        return cls(
            docs_kept=d["docs_kept"],
            bytes_kept=d["bytes_kept"],
            dropped_docs={reason: v["docs"] for reason, v in d["dropped"].items()},
            dropped_bytes={reason: v["bytes"] for reason, v in d["dropped"].items()},
            skipped_files=[(s["path"], s["error"]) for s in d["skipped_files"]],
        )

    def format(self) -> str:
        """A small human-readable table of the report."""
        rows = [("kept", self.docs_kept, self.bytes_kept)]
        rows += [(r, self.dropped_docs[r], self.dropped_bytes[r]) for r in REASONS
                 if r in self.dropped_docs]  # fmt: skip
        lines = [f"{'':<18}{'docs':>10}{'bytes':>14}"]
        lines += [f"{name:<18}{docs:>10,}{size:>14,}" for name, docs, size in rows]
        if self.skipped_files:
            lines.append(f"unreadable files skipped: {len(self.skipped_files)}")
            lines += [f"  {p}: {e}" for p, e in self.skipped_files[:10]]
            if len(self.skipped_files) > 10:
                lines.append(f"  ... and {len(self.skipped_files) - 10} more")
        return "\n".join(lines)
