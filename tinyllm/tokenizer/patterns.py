"""Split patterns: the regular expressions that cut text into chunks before BPE.

Byte-level BPE never merges across a chunk boundary, so the split pattern decides what a token
can be: with these patterns a token never mixes letters with digits or punctuation, and a word
keeps its leading space (" the" is one token, "the" another).

The two named patterns are the ones published with OpenAI's tokenizers and need the `regex`
package (the standard `re` module has no `\\p{L}` Unicode classes nor possessive quantifiers):

- ``"gpt2"``: GPT-2's pattern. Contractions, an optional space followed by letters, or by
  digits, or by other symbols, then whitespace (all but the last whitespace character of a run
  that is followed by a word, so the word can take it as its leading space).
- ``"gpt4"``: the ``cl100k_base`` pattern of GPT-3.5/GPT-4, character for character as
  tiktoken publishes it today. Case-insensitive contractions, numbers in groups of at most
  three digits, punctuation that swallows the newlines after it, runs of newlines kept
  together (good for code), and whitespace at the very end of a text kept as one chunk
  (``\\s++$``: ``"hello\\n  "`` splits as ``["hello", "\\n  "]``).
- ``"gpt4-v1"``: the pattern tinyllm called "gpt4" before, without that end-of-text rule. It
  is not offered for new tokenizers; it exists so that tokenizer files saved with it keep
  encoding exactly as they were trained (`tinyllm.tokenizer.io` maps them to this name).

Any other string is used as a custom pattern.
"""

from __future__ import annotations

import re

import regex

GPT2_SPLIT_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

# tiktoken_ext/openai_public.py, cl100k_base's pat_str.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

GPT4_V1_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN,
            "gpt4-v1": GPT4_V1_SPLIT_PATTERN}  # fmt: skip
# Names a user may pick for a new tokenizer.
PUBLIC_PATTERNS = ("gpt2", "gpt4")

# Safe cuts, for caching whole lines. A position p of a text T is a *safe cut* for a split
# pattern when splitting T[:p] and T[p:] separately gives the same chunks as splitting T. Then
# the text can be cut into segments (about a line each), and a segment seen before costs one
# dict lookup instead of a regex split: that is the line cache of `BPETokenizer`. The
# `findall` of these patterns returns segments that end at safe cuts (and a final empty one).
#
# gpt4 (and gpt4-v1, which lacks the \s++$ alternative): p is safe when T[p-1] is "\n" and
# T[p:] starts with a line's indentation and then a non-space, i.e. matches [^\S\r\n]*\S.
# Check each alternative of the split pattern:
#   - no alternative can match "\n" followed by a non-space: letters and numbers exclude "\n";
#     punctuation takes newlines only at its end ([\r\n]*); the rest is whitespace. So every
#     match containing T[p-1] ends at p: p is a chunk boundary of T.
#   - matches that start at or after p only look right (the pattern has no lookbehind), so
#     they are the same in T[p:].
#   - a match starting before p could differ in T[:p] only if it looked at T[p]. Only two do:
#     the punctuation's [\r\n]* stops at p either way (T[p] is no \r or \n), and \s*[\r\n]
#     runs through the indentation in T, backs off to the last newline (T[p-1]) and ends at p,
#     as it does when the text ends at p. \s+(?!\S) and \s+ are tried only when \s*[\r\n]
#     failed, i.e. when the whitespace run holds no newline, so they never reach T[p-1].
#   - \s++$ matches only a whitespace run that reaches the end of the text. In T[:p] it can
#     match a run ending at p, where in T it fails (T[p:] has a non-space after the
#     indentation) and \s*[\r\n] matches that same run, up to T[p-1]. Same chunk either way.
# gpt2: its \s+(?!\S) leaves the last whitespace character for the next word, so a line's
# indentation belongs to the previous newline, and a run "\n\n" + word splits differently when
# cut. p is safe when T[p-1] is "\n", T[p-2] is not whitespace (or p == 1) and T[p] is not
# whitespace: the "\n" is then a chunk alone in T ("\n" then a non-space fails \s+(?!\S) and
# \s+ takes one character) and in T[:p] (\s+(?!\S) at the end of the text), and no other
# alternative reads past a "\n".
# Both claims are also checked by hypothesis tests on texts full of whitespace variants.
SEGMENT_PATTERNS = {
    "gpt4": r"[^\n]*(?:\n(?![^\S\r\n]*\S)[^\n]*)*\n?",
    "gpt4-v1": r"[^\n]*(?:\n(?![^\S\r\n]*\S)[^\n]*)*\n?",
    "gpt2": r"[^\n]*(?:(?<=\s)\n[^\n]*|\n(?!\S)[^\n]*)*\n?",
}


# ASCII twins: on text made only of ASCII characters, these patterns for the standard `re`
# module split exactly as the published ones do with `regex`, and about twice as fast. On ASCII
# text \p{L} is [A-Za-z], \p{N} is [0-9] and `regex`'s \s is [\t\n\v\f\r ] (it does not count
# \x1c-\x1f, unlike str.isspace). The possessive quantifiers (which `re` lacks before Python
# 3.11) can be dropped: "[^...]?+" before letters gives nothing back that a letter run could use,
# and in "[^...]++[\r\n]*" nothing after the run can fail; in gpt4's "\s++$", backtracking
# could only stop the run early, where "$" fails (a shorter run is followed by whitespace, and
# "$" before a final "\n" cannot be reached: that "\n" would end the run). `str.isascii()`
# costs nothing (CPython marks ASCII strings), so choosing the twin is free.
ASCII_PATTERNS = {
    "gpt2": r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\t\n\v\f\r 0-9A-Za-z]+"""
    r"""|[\t\n\v\f\r ]+(?![^\t\n\v\f\r ])|[\t\n\v\f\r ]+""",
    "gpt4": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n0-9A-Za-z]?[A-Za-z]+|[0-9]{1,3}"""
    r"""| ?[^\t\n\v\f\r 0-9A-Za-z]+[\r\n]*|[\t\n\v\f\r ]+$|[\t\n\v\f\r ]*[\r\n]"""
    r"""|[\t\n\v\f\r ]+(?![^\t\n\v\f\r ])|[\t\n\v\f\r ]""",
    "gpt4-v1": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n0-9A-Za-z]?[A-Za-z]+|[0-9]{1,3}"""
    r"""| ?[^\t\n\v\f\r 0-9A-Za-z]+[\r\n]*|[\t\n\v\f\r ]*[\r\n]"""
    r"""|[\t\n\v\f\r ]+(?![^\t\n\v\f\r ])|[\t\n\v\f\r ]+""",
}


def resolve_pattern(pattern: str) -> tuple[str | None, str]:
    """Return ``(name, regex_source)`` for a pattern name (``"gpt2"``, ``"gpt4"``) or a regex.

    The name is ``None`` for a custom pattern. A custom pattern is compiled once here so that a
    typo fails now, with the regex error, rather than at the first encode.
    """
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a name or a regex string, not {type(pattern).__name__}")
    if pattern in PATTERNS:
        return pattern, PATTERNS[pattern]
    for name, source in PATTERNS.items():
        if pattern == source:
            return name, source
    try:
        regex.compile(pattern)
    except regex.error as err:
        raise ValueError(f"invalid split pattern {pattern!r}: {err}") from None
    return None, pattern


def compile_pattern(source: str) -> regex.Pattern:
    """Compile a split pattern (``regex`` caches compiled patterns, so this is cheap to repeat)."""
    return regex.compile(source)


def split_keeping_gaps(pattern: regex.Pattern):
    """``split(text)``: the pattern's matches, and every stretch of text between them that it
    does not match as a chunk of its own. The named patterns match every character, so for them
    this is ``findall``; a custom pattern that misses some (digits, say) would otherwise make
    `encode` drop them without a word, and decode(encode(text)) would not give the text back.
    `findall` (in C) stays the fast path: the slow walk over the matches runs only when the
    matches do not add up to the whole text."""
    findall = pattern.findall

    def split(text: str) -> list[str]:
        chunks = findall(text)
        if (not chunks or isinstance(chunks[0], str)) and sum(map(len, chunks)) == len(text):
            return chunks  # every character matched
        chunks, end = [], 0
        for match in pattern.finditer(text):
            if match.start() > end:
                chunks.append(text[end:match.start()])
            if match.end() > match.start():
                chunks.append(match.group())
            end = match.end()
        if end < len(text):
            chunks.append(text[end:])
        return chunks

    return split


def make_split(source: str):
    """Return ``split(text) -> list of chunks`` for a pattern source; the chunks always join
    back into the text.

    For the named patterns it uses the ASCII twin (standard `re`) when the text is ASCII, else
    the published pattern; for a custom pattern, the pattern itself, keeping what it misses.
    """
    name = resolve_pattern(source)[0]
    if name not in ASCII_PATTERNS:
        return split_keeping_gaps(regex.compile(source))
    findall = regex.compile(source).findall
    ascii_findall = re.compile(ASCII_PATTERNS[name], re.ASCII).findall

    def split(text: str) -> list[str]:
        return ascii_findall(text) if text.isascii() else findall(text)

    return split


def make_split_long(source: str):
    """Like `make_split`, for long texts that are mostly but not all ASCII (training corpora).

    The text is cut at safe line cuts (see SEGMENT_PATTERNS), runs of ASCII lines are joined
    back and split with the fast twin, the other lines with the published pattern.
    """
    name = resolve_pattern(source)[0]
    split = make_split(source)
    if name not in SEGMENT_PATTERNS:
        return split
    segments = regex.compile(SEGMENT_PATTERNS[name]).findall

    def split_long(text: str) -> list[str]:
        if text.isascii():
            return split(text)
        chunks: list[str] = []
        run: list[str] = []  # consecutive lines of the same kind (ASCII or not)
        run_ascii = True
        for line in segments(text):
            if line.isascii() != run_ascii:
                chunks += split("".join(run))
                run = []
                run_ascii = not run_ascii
            run.append(line)
        chunks += split("".join(run))
        return chunks

    return split_long


def special_token_pattern(special_tokens) -> regex.Pattern | None:
    """A regex matching any of the given special-token strings, longest first.

    Longest first matters when one special token is a prefix of another (``<|end|>`` and
    ``<|endoftext|>``): the alternation takes the first alternative that matches.
    Returns ``None`` for an empty collection.
    """
    tokens = sorted(special_tokens, key=lambda s: (-len(s), s))
    if not tokens:
        return None
    return regex.compile("|".join(regex.escape(t) for t in tokens))
