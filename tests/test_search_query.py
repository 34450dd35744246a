"""The search query language, parsed without any index."""

from __future__ import annotations

import pytest

from tasks.search_query import (
    DateRange,
    QueryError,
    Term,
    fold,
    fts_match,
    parse_query,
    spread_cjk,
    title_key,
    unspread_cjk,
)


def test_free_words_and_quoted_phrases_are_terms():
    parsed = parse_query('invoice "due date"  acme')
    assert parsed.terms == [Term("invoice"), Term("due date", phrase=True), Term("acme")]
    assert not parsed.has_filters


def test_operators_fold_case_and_diacritics_and_keep_quoted_spaces():
    parsed = parse_query('TAG:Köln tag:"Auto 🚗" correspondent:"ACME Corp" type:Invoice rent')
    assert parsed.tags == ["koln", "auto 🚗"]
    assert parsed.correspondents == ["acme corp"]
    assert parsed.document_types == ["invoice"]
    assert parsed.terms == [Term("rent")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", DateRange("2024-01-01", "2025-01-01")),
        ("2024-06", DateRange("2024-06-01", "2024-07-01")),
        ("2024-12", DateRange("2024-12-01", "2025-01-01")),
        ("2024-02-29", DateRange("2024-02-29", "2024-03-01")),
        (">2024-01-01", DateRange("2024-01-02", None)),
        (">=2024-01-01", DateRange("2024-01-01", None)),
        ("<2024", DateRange(None, "2024-01-01")),
        ("<=2023-12-31", DateRange(None, "2024-01-01")),
        (">2024-06", DateRange("2024-07-01", None)),
    ],
)
def test_created_values_become_half_open_ranges(value, expected):
    assert parse_query(f"created:{value}").created == [expected]


@pytest.mark.parametrize("value", ["yesterday", "2024-13", "2023-02-29", "24-01-01", ""])
def test_a_bad_created_value_is_a_clear_error(value):
    with pytest.raises(QueryError, match="created:"):
        parse_query(f"created:{value}")


def test_an_operator_without_a_value_is_an_error():
    with pytest.raises(QueryError, match='needs a value, for example tag:"Some name"'):
        parse_query("tag: invoice")


def test_unknown_operators_and_colons_are_searched_as_text():
    parsed = parse_query("foo:bar 10:30 https://example.org")
    assert [term.text for term in parsed.terms] == ["foo:bar", "10:30", "https://example.org"]
    assert not parsed.has_filters
    parsed = parse_query('title:"due date"')
    assert parsed.terms == [Term("title"), Term("due date", phrase=True)]


def test_punctuation_and_emoji_alone_are_not_terms():
    assert parse_query('& - 🚗 "" *').terms == []


def test_prefix_words():
    assert parse_query("invo*").terms == [Term("invo", prefix=True)]


def test_fts_syntax_in_terms_is_quoted():
    parsed = parse_query('a"b NEAR(x y) OR -c col:d')
    match = fts_match(parsed.terms, "{t}", "cjk")
    assert match == (
        '{t} : "a""b" AND {t} : "NEAR(x" AND {t} : "y)" AND {t} : "OR" '
        'AND {t} : "-c" AND {t} : "col:d"'
    )


def test_cjk_terms_go_to_the_spread_column():
    match = fts_match(parse_query("東京").terms, "{t}", "cjk")
    assert match == 'cjk : "\u200b東\u200b\u200b京\u200b"'
    assert unspread_cjk(spread_cjk("ACME 東京都")) == "ACME 東京都"


def test_fold_and_title_key():
    assert fold("  KÖLN ") == "koln"
    assert title_key("Invoice — 2024/03,  ACME!") == title_key("invoice 2024 03 acme")
    assert parse_query('Invoice "2024/03" ACME').text_key == "invoice 2024 03 acme"
