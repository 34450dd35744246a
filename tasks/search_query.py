"""The query language of `paperless-connector search`, parsed into plain parts.

    invoice "due date" tag:invoice tag:"Auto 🚗" correspondent:"ACME Corp" type:Invoice
    created:2024  created:2024-06  created:>2024-01-01  created:<=2023-12-31

Free words and "quoted phrases" must all occur (AND); a word ending in `*` is a prefix.
Operator names and values are case-insensitive, and values match without diacritics
(`tag:koln` finds the tag "Köln"); several operators of one kind must all hold. A word
that merely looks like an operator (`10:30`, `https://x`, `foo:bar`) is searched as text,
so pasting text never fails; only a known operator with a bad value is an error.

This module knows nothing of SQLite: `tasks/sinks/local.py` turns a `ParsedQuery` into SQL
and uses `fts_match` to build the FTS5 expression, where every term is quoted so that FTS5
syntax characters in a query are plain text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import groupby


class QueryError(ValueError):
    """A search query cannot be understood; the message says what to write instead."""


@dataclass(frozen=True)
class Term:
    text: str  # as the user wrote it, without quotes or a trailing `*`
    phrase: bool = False
    prefix: bool = False


@dataclass(frozen=True)
class DateRange:
    """`created` limits as a half-open interval of ISO dates: start <= created < end."""

    start: str | None
    end: str | None


@dataclass
class ParsedQuery:
    terms: list[Term] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # fold()ed values
    correspondents: list[str] = field(default_factory=list)
    document_types: list[str] = field(default_factory=list)
    created: list[DateRange] = field(default_factory=list)

    @property
    def has_filters(self) -> bool:
        return bool(self.tags or self.correspondents or self.document_types or self.created)

    @property
    def text_key(self) -> str:
        """The free text as `title_key` would fold it, to spot an exact-title match."""
        return title_key(" ".join(term.text for term in self.terms))


OPERATORS = {
    "tag": "tags",
    "tags": "tags",
    "correspondent": "correspondents",
    "type": "document_types",
    "document_type": "document_types",
    "created": "created",
}

# A token: an optional `name:` prefix, then a "quoted" value (the closing quote may be
# missing) or a run of non-space characters.
_TOKEN = re.compile(r'(?:(?P<op>[A-Za-z_]+):)?(?:"(?P<quoted>[^"]*)"?|(?P<bare>\S*))')
_DATE_FILTER = re.compile(r"^(?P<cmp><=|>=|<|>|=)?(?P<value>\d{4}(?:-\d{2}(?:-\d{2})?)?)$")
_WORD = re.compile(r"\w+")
# Hangul, kana, CJK ideographs: scripts written without spaces between words (or, for
# Korean, with particles glued to them), which unicode61 cannot split into words.
CJK_CLASS = (
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]"
)
_CJK = re.compile(CJK_CLASS)
_CJK_RUN = re.compile(CJK_CLASS + "+")
ZWSP = "\u200b"  # a separator to unicode61, invisible in text, never typed in a query
_TWO_ZWSP = ZWSP * 2
CJK_GAP = "\ue000"  # a token to unicode61 (private use), between stretches of CJK words
# A word with a CJK character in it: its leading part cannot hold CJK, so a failed try
# gives back no more than the word.
_NOT_CJK = "[^\\s" + CJK_CLASS[1:]  # neither space nor CJK
_CJK_WORD = rf"{_NOT_CJK}*{CJK_CLASS}\S*"
# From the start of such a word, it and the CJK words right after it.
_STRETCH = re.compile(rf"\S*(?:\s+{_CJK_WORD})*")
_NON_SPACE = re.compile(r"\S*")


def fold(value: str) -> str:
    """Case- and diacritic-insensitive form of a name: "Köln " and "KOLN" both give "koln"."""
    decomposed = unicodedata.normalize("NFKD", value.strip())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped).casefold()


def title_key(title: str) -> str:
    """A title reduced to its folded words, so punctuation and spacing do not matter."""
    return " ".join(_WORD.findall(fold(title)))


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def spread_cjk(text: str) -> str:
    """Put a zero-width space around every CJK character: unicode61 makes each one a token.

    unicode61 keeps a run of Han or kana characters (no spaces between words) as one token,
    so "東京" would not find "東京都". With one token per character a phrase query of the
    characters finds any substring, of any length, exactly.
    """
    # A run of CJK characters at a time: one call back per run, not per character.
    return _CJK_RUN.sub(lambda run: ZWSP + _TWO_ZWSP.join(run.group()) + ZWSP, text)


def cjk_stretches(text: str) -> str:
    """The text's words that hold CJK characters, spread (see `spread_cjk`), for the index.

    Words that follow one another stay together, so a phrase of several CJK words is
    found; stretches apart are joined by CJK_GAP, a token no query holds, so that no phrase
    matches across two of them. Only these words, not the whole text: in a mostly Latin
    document with a few CJK names, indexing all of it twice cost a third of a write.
    Linear in the text: each CJK character is found by the regex engine, and the word it
    sits in by matching backwards on the reversed text from there.
    """
    found = _CJK.search(text)
    if found is None:
        return ""
    backwards = text[::-1]
    stretches: list[str] = []
    while found is not None:
        cjk_at = found.start()
        word_head = _NON_SPACE.match(backwards, len(text) - cjk_at)
        assert word_head is not None  # `\S*` matches anywhere, as does `_STRETCH`
        stretch = _STRETCH.match(text, cjk_at - len(word_head.group()))
        assert stretch is not None
        stretches.append(stretch.group())
        found = _CJK.search(text, max(stretch.end(), cjk_at + 1))
    # Spread once, joined: CJK_GAP and the spaces around it are no CJK characters.
    return spread_cjk(f" {CJK_GAP} ".join(stretches))


def unspread_cjk(text: str) -> str:
    return text.replace(ZWSP, "").replace(f" {CJK_GAP} ", " … ").replace(CJK_GAP, "…")


def parse_query(query: str) -> ParsedQuery:
    """Split a query into terms and filters; raise `QueryError` for a bad operator value."""
    parsed = ParsedQuery()
    query = query.replace("\x00", " ")  # SQLite would end the FTS5 expression there
    for match in _TOKEN.finditer(query):
        op, quoted, bare = match.group("op"), match.group("quoted"), match.group("bare")
        kind = OPERATORS.get(op.lower()) if op else None
        value = quoted if quoted is not None else (bare or "")
        if kind is None and op and quoted is not None:  # foo:"a b": the word, the phrase
            _add_term(parsed, op, phrase=False)
            _add_term(parsed, quoted, phrase=True)
        elif kind is None:  # 10:30, https://x, foo:bar: as written, colons and all
            _add_term(parsed, match.group(0) if op else value, phrase=quoted is not None)
        elif kind == "created":
            parsed.created.append(_date_range(value))
        elif not value.strip():
            raise QueryError(f'"{op}:" needs a value, for example {op}:"Some name".')
        else:
            getattr(parsed, kind).append(fold(value))
    return parsed


def _add_term(parsed: ParsedQuery, text: str, *, phrase: bool) -> None:
    if phrase:
        if _WORD.search(text):
            parsed.terms.append(Term(text.strip(), phrase=True))
        return
    text = text.strip('"')
    prefix = text.endswith("*") and len(text) > 1
    text = text.rstrip("*")
    if _WORD.search(text):  # punctuation or emoji alone is not indexed: nothing to find
        parsed.terms.append(Term(text, phrase=False, prefix=prefix))


def _date_range(value: str) -> DateRange:
    found = _DATE_FILTER.match(value.strip())
    if found is None:
        raise QueryError(
            f"created:{value} is not a date filter; write created:2024, created:2024-06, "
            "created:2024-06-30, optionally after <, <=, > or >= (created:>=2024-01-01)."
        )
    start, end = _period(found.group("value"))
    comparison = found.group("cmp") or "="
    if comparison == ">":
        return DateRange(end, None)
    if comparison == ">=":
        return DateRange(start, None)
    if comparison == "<":
        return DateRange(None, start)
    if comparison == "<=":
        return DateRange(None, end)
    return DateRange(start, end)


def _period(value: str) -> tuple[str, str]:
    """The first day of a year, month or day, and the first day after it (ISO strings)."""
    parts = [int(part) for part in value.split("-")]
    try:
        if len(parts) == 1:
            first = date(parts[0], 1, 1)
            after = date(parts[0] + 1, 1, 1)
        elif len(parts) == 2:
            first = date(parts[0], parts[1], 1)
            after = date(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1)
        else:
            first = date(parts[0], parts[1], parts[2])
            after = first + timedelta(days=1)
    except ValueError:
        raise QueryError(
            f"created:{value} is not a real date; check the month (01-12) and the day."
        ) from None
    return first.isoformat(), after.isoformat()


def fts_match(terms: list[Term], columns: str, cjk_column: str) -> str:
    """The FTS5 MATCH expression of the terms (all must occur); empty when there are none.

    Every term is a double-quoted FTS5 string, so `AND`, `NEAR`, `-`, `:` or `*` typed by a
    user are just text. The words of a term that hold CJK characters are looked up in
    `cjk_column`, where each of those characters is its own token (see `cjk_stretches`);
    the other words of the same term in `columns`. A phrase mixing both must then hold
    each part, not necessarily side by side.
    """
    parts = []
    for term in terms:
        if not has_cjk(term.text):
            star = " *" if term.prefix else ""
            parts.append(f"{columns} : {_quote(term.text)}{star}")
            continue
        for cjk, words in groupby(term.text.split(), key=has_cjk):
            text = " ".join(words)
            if cjk:
                parts.append(f"{cjk_column} : {_quote(spread_cjk(text))}")
            elif _WORD.search(text):
                parts.append(f"{columns} : {_quote(text)}")
    return " AND ".join(parts)


def _quote(text: str) -> str:
    return '"' + " ".join(text.split()).replace('"', '""') + '"'
