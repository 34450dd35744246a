"""The embedded local index: writing, searching, permissions, export, concurrency."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from tasks.document import CustomFieldValue, IndexedDocument, Note, Principal, Principals
from tasks.search_query import QueryError
from tasks.sinks import local
from tasks.sinks.local import EXPORT_BATCH, LocalIndex, LocalIndexError
from tests.support.documents import SOURCE, make_doc, principals, private, run_of

RUN = run_of()


@pytest.fixture
def index(tmp_path: Path):
    local = LocalIndex(tmp_path / "data" / "deeper" / "index.sqlite3")
    yield local
    local.close()


def ids(hits) -> list[int]:
    return [hit.doc_id for hit in hits]


def test_opens_in_new_directories_in_wal_mode_with_full_sync(index: LocalIndex):
    assert index.count() == 0
    assert index.path.is_file()
    db = sqlite3.connect(index.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


# -- Ranking and text -------------------------------------------------------------------


def test_exact_title_match_comes_first(index: LocalIndex):
    index.write(
        RUN,
        [
            make_doc(1, "Invoice reminder", "invoice invoice invoice overdue invoice"),
            make_doc(2, "Invoice", "A short one."),
            make_doc(3, "Letter", "mentions the invoice once, and invoice again, invoice"),
            make_doc(4, "Annual invoice summary invoice", "invoice " * 50),
        ],
    )
    hits = index.search("invoice")
    assert ids(hits)[0] == 2
    assert set(ids(hits)) == {1, 2, 3, 4}
    assert hits[0].score > hits[1].score


def test_exact_multi_word_title_ignores_case_and_punctuation(index: LocalIndex):
    index.write(
        RUN,
        [
            make_doc(1, "Annual report, 2023", "the annual report"),
            make_doc(2, "Report on the annual report 2023", "annual report 2023 " * 20),
        ],
    )
    assert ids(index.search("annual REPORT 2023")) == [1, 2]


def test_a_title_word_outranks_a_body_word(index: LocalIndex):
    index.write(
        RUN,
        [
            make_doc(1, "Letter about insurance", "Some words here and there."),
            make_doc(2, "Letter", "Some words about insurance here and there."),
        ]
        + [make_doc(i, f"Filler {i}", "unrelated words") for i in range(3, 20)],
    )
    assert ids(index.search("insurance")) == [1, 2]


def test_all_words_must_match_and_phrases_are_exact(index: LocalIndex):
    index.write(
        RUN,
        [
            make_doc(1, text="the due date is tomorrow"),
            make_doc(2, text="a date that is due"),
            make_doc(3, text="nothing relevant is due"),
        ],
    )
    assert sorted(ids(index.search("due date"))) == [1, 2]
    assert ids(index.search('"due date"')) == [1]


def test_snippet_highlights_the_match(index: LocalIndex):
    index.write(RUN, [make_doc(1, "Contract", "Rental contract for the flat in Köln, signed.")])
    (hit,) = index.search("koln")
    assert "«Köln»" in hit.snippet
    assert "\n" not in hit.snippet


def test_diacritics_are_ignored_both_ways(index: LocalIndex):
    index.write(RUN, [make_doc(1, text="Stadtwerke Köln, Gebühr"), make_doc(2, text="Cafe Muller")])
    assert ids(index.search("Koln gebuhr")) == [1]
    assert ids(index.search("Müller Café")) == [2]


def test_cjk_is_found_by_substring(index: LocalIndex):
    index.write(
        RUN,
        [
            make_doc(1, "請求書", "東京都港区の請求書です。合計 12,000 円"),
            make_doc(2, "京都", "京都の領収書"),
            make_doc(3, "Korean", "안녕하세요 고객님"),
        ],
    )
    assert ids(index.search("東京")) == [1]
    assert sorted(ids(index.search("京都"))) == [1, 2]  # 東京都 contains 京都
    assert ids(index.search("領収")) == [2]
    assert ids(index.search("고객")) == [3]
    (hit,) = index.search("港区")
    assert "«港区»" in hit.snippet and "\u200b" not in hit.snippet


def test_cjk_in_mostly_latin_text_is_found_without_phrases_across_the_gaps(index: LocalIndex):
    index.write(
        RUN,
        [
            make_doc(1, "Mietvertrag", "Vermieter 田中 Yuki, die Wohnung in 東京 wird vermietet."),
            make_doc(2, "Invoice", "ACME株式会社 sent the invoice; payable in 東京 都"),
            make_doc(3, "Letter", "Dear Mr 田中, see you in Paris."),
        ],
    )
    assert sorted(ids(index.search("田中"))) == [1, 3]
    assert ids(index.search("株式会社")) == [2]  # a CJK part of a mixed word
    assert ids(index.search("東京都")) == [2]  # words side by side form a phrase
    assert ids(index.search("田中東京")) == []  # 田中 and 東京 are far apart in doc 1
    assert ids(index.search('"Wohnung 東京"')) == [1]  # a mixed phrase: each part must occur
    (hit,) = index.search("株式")
    assert "«株式»" in hit.snippet
    assert "\u200b" not in hit.snippet and "\ue000" not in hit.snippet


def test_a_huge_word_without_spaces_is_indexed_in_linear_time(index: LocalIndex):
    # A quadratic scan for CJK words would not finish within the test's timeout.
    index.write(RUN, [make_doc(1, "Blob", "x" * 3_000_000 + " 東京")])
    assert ids(index.search("東京")) == [1]


def test_prefix_search(index: LocalIndex):
    index.write(RUN, [make_doc(1, text="Insurance policy"), make_doc(2, text="insulation")])
    assert sorted(ids(index.search("insu*"))) == [1, 2]
    assert ids(index.search("insur*")) == [1]


@pytest.mark.parametrize(
    "query",
    [
        '"',
        'unbalanced "quote',
        "AND",
        "OR NOT",
        "NEAR(a b)",
        "a* *b",
        "col:umn",
        "-minus",
        "^caret",
        "(brackets)",
        "{title}: x",
        "'single'",
        "\\",
        "a\x00b",
        "🚗",
        "",
        "   ",
    ],
)
def test_fts_syntax_in_a_query_never_crashes(index: LocalIndex, query: str):
    index.write(RUN, [make_doc(1, text="and or not near a b minus caret brackets umn")])
    index.search(query)


def test_words_that_look_like_syntax_are_found_as_text(index: LocalIndex):
    index.write(RUN, [make_doc(1, text="Terms AND conditions NEAR the station, at 10:30")])
    assert ids(index.search("and near")) == [1]
    assert ids(index.search("10:30")) == [1]
    assert ids(index.search("foo:station")) == []  # an unknown operator is text: foo AND station


def test_a_broad_query_lists_title_matches_then_the_newest(
    index: LocalIndex, monkeypatch: pytest.MonkeyPatch
):
    # Past BROAD_QUERY matches bm25 is skipped (too slow, and says little for such words).
    monkeypatch.setattr(local, "BROAD_QUERY", 5)
    docs = [make_doc(i, f"Note {i}", text="the usual words") for i in range(1, 21)]
    docs[3] = make_doc(4, "Usual suspects", text="the usual words")
    docs[6] = make_doc(7, "Usual", text="the usual words")
    index.write(RUN, docs)
    index.write(RUN, [make_doc(2, "Note 2", text="the usual words, edited")])  # keeps its place
    hits = index.search("usual", limit=6)
    assert ids(hits) == [7, 4, 20, 19, 18, 17]  # exact title, title match, then newest
    assert hits[0].score > hits[1].score
    assert "«usual»" in hits[2].snippet
    private_ones = [make_doc(i, text="the usual words", access=private("x@y.z")) for i in (18, 19)]
    index.write(RUN, private_ones)
    assert ids(index.search("usual", as_email="a@b.c", limit=4)) == [7, 4, 20, 17]
    assert len(index.search("usual", limit=100)) == 20


def test_limit(index: LocalIndex):
    index.write(RUN, [make_doc(i, text="common word") for i in range(1, 31)])
    assert len(index.search("common", limit=7)) == 7
    assert len(index.search("common", limit=100)) == 30
    assert index.search("common", limit=0) == []


# -- Operators ---------------------------------------------------------------------------


@pytest.fixture
def classified(index: LocalIndex) -> LocalIndex:
    index.write(
        RUN,
        [
            make_doc(
                1,
                "Car insurance",
                tags=["Auto 🚗", "Versicherung"],
                correspondent="ACME Corp",
                document_type="Invoice",
                created="2024-06-15",
            ),
            make_doc(
                2,
                "Electricity",
                tags=["Köln", "Invoice"],
                correspondent="Stadtwerke Köln",
                document_type="Invoice",
                created="2023-12-31",
            ),
            make_doc(
                3,
                "Tenancy",
                tags=["Invoice", "Auto 🚗"],
                correspondent="ACME Corporation",
                document_type="Contract",
                created="2024-01-01",
            ),
            make_doc(4, "Undated note", created=None),
        ],
    )
    return index


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("tag:invoice", [3, 2]),
        ("tag:INVOICE", [3, 2]),
        ('tag:"auto 🚗"', [1, 3]),
        ("tag:koln", [2]),
        ("tag:Köln", [2]),
        ('tag:"auto 🚗" tag:invoice', [3]),
        ("tag:auto", []),
        ('correspondent:"ACME Corp"', [1]),
        ('correspondent:"acme corporation"', [3]),
        ('correspondent:"stadtwerke koln"', [2]),
        ("type:invoice", [1, 2]),
        ("type:Contract", [3]),
        ("document_type:contract", [3]),
        ("created:2024", [1, 3]),
        ("created:2024-06", [1]),
        ("created:2024-06-15", [1]),
        ("created:>2024-01-01", [1]),
        ("created:>=2024-01-01", [1, 3]),
        ("created:<2024", [2]),
        ("created:<=2023-12-31", [2]),
        ("created:<=2024-01", [3, 2]),
        ("created:>2023 created:<2024-06", [3]),
        ("type:invoice created:2023", [2]),
    ],
)
def test_operators_filter_and_list_newest_first(classified: LocalIndex, query, expected):
    assert ids(classified.search(query)) == expected


def test_operators_combine_with_words(classified: LocalIndex):
    assert ids(classified.search("insurance type:invoice")) == [1]
    assert ids(classified.search("insurance type:contract")) == []
    assert ids(classified.search('electricity tag:"köln"')) == [2]


def test_operator_only_hits_carry_the_fields_a_user_reads(classified: LocalIndex):
    (hit,) = classified.search('correspondent:"ACME Corp"')
    assert hit.key == f"paperless:{SOURCE}:1"
    assert (hit.title, hit.correspondent, hit.document_type) == (
        "Car insurance",
        "ACME Corp",
        "Invoice",
    )
    assert hit.tags == ["Auto 🚗", "Versicherung"]
    assert hit.created == "2024-06-15"
    assert hit.url == "http://paperless.test/documents/1/details/"
    assert hit.snippet.startswith("# Car insurance")


def test_a_bad_operator_value_is_a_clear_error(classified: LocalIndex):
    with pytest.raises(QueryError, match="created:2024-13-01 is not a real date"):
        classified.search("created:2024-13-01")


def test_source_filter(index: LocalIndex):
    index.write(RUN, [make_doc(1, text="shared word")])
    index.write(run_of("other"), [make_doc(1, text="shared word", source_id="other")])
    assert {hit.key for hit in index.search("shared")} == {
        "paperless:main:1",
        "paperless:other:1",
    }
    assert [hit.source_id for hit in index.search("shared", source_id="other")] == ["other"]


# -- Permissions -------------------------------------------------------------------------

GROUP = "paperless-group-1@main.paperless.invalid"


@pytest.fixture
def guarded(index: LocalIndex) -> LocalIndex:
    index.write(
        RUN,
        [
            make_doc(1, text="secret public"),
            make_doc(2, text="secret alice", owner="alice@x.org", access=private("alice@x.org")),
            make_doc(3, text="secret bob", owner="bob@x.org", access=private("bob@x.org")),
            make_doc(4, text="secret shared", access=private("bob@x.org", "Alice@X.org")),
            make_doc(5, text="secret group", access=private("bob@x.org", groups=(GROUP,))),
            make_doc(6, text="secret orphan", access=private(unresolved=("user:9",))),
        ],
    )
    index.record_principals(
        RUN,
        Principals(
            users=[
                Principal(email="alice@x.org", username="alice"),
                Principal(email="bob@x.org", username="bob", groups=[GROUP]),
                Principal(email="carol@x.org", username="carol", groups=[GROUP]),
                Principal(email="root@x.org", username="root", is_superuser=True),
            ]
        ),
    )
    return index


@pytest.mark.parametrize(
    ("email", "visible"),
    [
        ("alice@x.org", [1, 2, 4]),
        ("ALICE@x.org ", [1, 2, 4]),
        ("bob@x.org", [1, 3, 4, 5]),
        ("carol@x.org", [1, 5]),
        ("root@x.org", [1, 2, 3, 4, 5, 6]),
        ("stranger@x.org", [1]),
    ],
)
def test_as_email_sees_public_own_shared_group_or_everything_as_superuser(
    guarded: LocalIndex, email, visible
):
    assert sorted(ids(guarded.search("secret", as_email=email))) == visible


def test_without_as_email_everything_is_visible(guarded: LocalIndex):
    assert sorted(ids(guarded.search("secret"))) == [1, 2, 3, 4, 5, 6]


def test_operator_only_queries_are_filtered_too(guarded: LocalIndex):
    assert sorted(ids(guarded.search("created:2024", as_email="carol@x.org"))) == [1, 5]


def test_a_document_with_only_unresolved_principals_is_for_superusers(guarded: LocalIndex):
    for email in ("alice@x.org", "bob@x.org", "carol@x.org", "stranger@x.org", "user:9"):
        assert 6 not in ids(guarded.search("orphan", as_email=email))
    assert ids(guarded.search("orphan", as_email="root@x.org")) == [6]


def test_record_principals_replaces_the_sources_users(guarded: LocalIndex):
    guarded.record_principals(RUN, principals(Principal(email="root@x.org", username="root")))
    assert sorted(ids(guarded.search("secret", as_email="root@x.org"))) == [1]
    assert sorted(ids(guarded.search("secret", as_email="carol@x.org"))) == [1]


def test_superuser_of_one_source_is_not_superuser_of_another(guarded: LocalIndex):
    other = run_of("other")
    guarded.write(
        other, [make_doc(7, text="secret elsewhere", source_id="other", access=private("x@y.z"))]
    )
    assert 7 not in ids(guarded.search("secret", as_email="root@x.org"))
    guarded.record_principals(
        other, principals(Principal(email="root@x.org", username="r", is_superuser=True))
    )
    assert 7 in ids(guarded.search("secret", as_email="root@x.org"))


def test_group_members_from_the_group_list_count(index: LocalIndex):
    from tasks.document import Group

    index.write(RUN, [make_doc(1, text="memo", access=private(groups=(GROUP,)))])
    index.record_principals(
        RUN, Principals(groups=[Group(key=GROUP, name="Finance", member_emails=["dan@x.org"])])
    )
    assert ids(index.search("memo", as_email="dan@x.org")) == [1]


def test_access_changes_on_rewrite(guarded: LocalIndex):
    guarded.write(RUN, [make_doc(2, text="secret alice", access=private("carol@x.org"))])
    assert 2 not in ids(guarded.search("secret", as_email="alice@x.org"))
    assert 2 in ids(guarded.search("secret", as_email="carol@x.org"))


# -- Upsert, delete, states, sources ----------------------------------------------------


def test_upsert_replaces_text_classification_and_search_rows(classified: LocalIndex):
    classified.write(
        RUN,
        [make_doc(1, "Bicycle insurance", text="pedals", tags=["Fahrrad"], created="2022-02-02")],
    )
    assert classified.count() == 4
    assert ids(classified.search("bicycle")) == [1]
    assert ids(classified.search("car")) == []
    assert ids(classified.search("pedals")) == [1]
    assert 1 not in ids(classified.search('tag:"auto 🚗"'))
    assert ids(classified.search("tag:fahrrad")) == [1]
    assert ids(classified.search("created:2022")) == [1]
    for _ in range(3):
        classified.write(RUN, [make_doc(1, "Bicycle insurance", text="pedals")])
    assert len(classified.search("pedals")) == 1
    assert classified.count() == 4


def test_a_repeated_id_in_one_page_keeps_the_last(index: LocalIndex):
    index.write(RUN, [make_doc(1, text="first"), make_doc(1, text="second")])
    assert index.count() == 1
    assert ids(index.search("second")) == [1]
    assert ids(index.search("first")) == []


def test_rewriting_the_newest_document_with_a_new_one_in_one_page(index: LocalIndex):
    # The new row must not take the row id the rewritten (newest) one keeps.
    index.write(RUN, [make_doc(1, text="old one"), make_doc(2, text="old two")])
    index.write(RUN, [make_doc(3, text="brand new"), make_doc(2, text="two again")])
    assert index.count() == 3
    assert ids(index.search("two")) == [2]
    assert ids(index.search("brand")) == [3]
    assert [row["text"] for row in index.export()] == ["old one", "two again", "brand new"]


def test_delete_removes_from_search_and_export(index: LocalIndex):
    index.write(RUN, [make_doc(i, text="keep", tags=["T"]) for i in range(1, 6)])
    index.write(run_of("other"), [make_doc(2, text="keep", source_id="other")])
    index.delete(RUN, [2, 4, 999])
    assert sorted(ids(index.search("keep", source_id=SOURCE))) == [1, 3, 5]
    assert sorted(ids(index.search("tag:t"))) == [1, 3, 5]
    assert [row["doc_id"] for row in index.export(SOURCE)] == [1, 3, 5]
    assert index.count("other") == 1  # same id in another source is untouched
    index.delete(RUN, [])


def test_stored_states(index: LocalIndex):
    docs = [make_doc(i) for i in range(1, 1201)]
    index.write(RUN, docs)
    index.write(run_of("other"), [make_doc(5, source_id="other", fingerprint="x")])
    states = index.stored_states(SOURCE)
    assert len(states) == 1200
    assert states[5].fingerprint == docs[4].fingerprint
    assert states[5].light_fingerprint == docs[4].light_fingerprint
    wanted = list(range(0, 1300, 2))  # more ids than one IN list holds, some unknown
    subset = index.stored_states(SOURCE, wanted)
    assert sorted(subset) == [i for i in wanted if 1 <= i <= 1200]
    assert index.stored_states(SOURCE, []) == {}
    assert index.stored_states("other")[5].fingerprint == "x"


def test_remove_source_forgets_documents_search_rows_access_and_principals(guarded: LocalIndex):
    guarded.write(run_of("other"), [make_doc(1, text="secret other", source_id="other")])
    assert guarded.remove_source(SOURCE) == 6
    assert guarded.count(SOURCE) == 0
    assert guarded.count() == 1
    assert [hit.source_id for hit in guarded.search("secret")] == ["other"]
    assert guarded.search("tag:invoice created:2024") == []
    assert guarded.stored_states(SOURCE) == {}
    db = sqlite3.connect(guarded.path)
    for table in ("doc_tags", "doc_users", "doc_groups", "principals"):
        assert db.execute(
            f"SELECT count(*) FROM {table} WHERE source_id = ?", (SOURCE,)
        ).fetchone() == (0,)
    # the FTS rows went too: an integrity check compares them with the documents
    db.execute("INSERT INTO documents_fts(documents_fts, rank) VALUES ('integrity-check', 1)")
    db.close()
    assert guarded.remove_source(SOURCE) == 0


# -- Export ------------------------------------------------------------------------------


def rich_doc(doc_id: int, source_id: str = SOURCE, **fields) -> IndexedDocument:
    values = dict(
        title="Çà et là — 請求書 🚗",
        text="Line one\nZeile zwei: Grüße 👋\t«quoted» \"double\" 'single' \\ back\n" * 3,
        has_text=True,
        correspondent="Stadtwerke Köln",
        document_type="Rechnung",
        storage_path="Finanzen/2024",
        tags=["Auto 🚗", "Invoice", "invoice"],
        archive_serial_number=12345,
        original_file_name="scan 01.pdf",
        archived_file_name="2024-06-15 scan.pdf",
        mime_type="application/pdf",
        page_count=3,
        created="2024-06-15",
        added="2024-06-16T08:00:00+02:00",
        modified="2024-06-17T10:11:12.123456+00:00",
        custom_fields=[
            CustomFieldValue(name="Betrag", data_type="monetary", value="EUR 12.50"),
            CustomFieldValue(name="Paid", data_type="boolean", value="yes"),
        ],
        notes=[Note(author="Ada Lovelace", created="2024-06-18T09:00:00Z", text="Bezahlt ✅")],
        owner="ada@x.org",
        access=private("ada@x.org", groups=(GROUP,), unresolved=("user:7",)),
        source_id=source_id,
    )
    values.update(fields)
    return make_doc(doc_id, **values)


def test_export_round_trips_every_field(index: LocalIndex):
    docs = [
        rich_doc(2),
        make_doc(1, "Bare", text="", has_text=False, created=None, added=None, modified=None),
        rich_doc(3, text="x" * (1024 * 1024) + " end"),
        rich_doc(1, source_id="another"),
    ]
    index.write(RUN, docs[:3])
    index.write(run_of("another"), docs[3:])
    rows = list(index.export())
    assert [(row["source_id"], row["doc_id"]) for row in rows] == [
        ("another", 1),
        (SOURCE, 1),
        (SOURCE, 2),
        (SOURCE, 3),
    ]
    by_key = {doc.key: doc for doc in docs}
    for row in rows:
        assert row["key"] == f"paperless:{row['source_id']}:{row['doc_id']}"
        assert IndexedDocument.model_validate(row) == by_key[row["key"]]
        assert set(row) == {"key", *IndexedDocument.model_fields}
    assert len(rows[3]["text"]) == 1024 * 1024 + 4
    assert [row["doc_id"] for row in index.export("another")] == [1]


def test_export_streams_in_order_past_a_batch(index: LocalIndex):
    index.write(RUN, [make_doc(i) for i in range(EXPORT_BATCH * 2 + 7, 0, -1)])
    stream = index.export(SOURCE)
    first = next(stream)
    assert first["doc_id"] == 1
    index.write(RUN, [make_doc(9999)])  # writing while an export is open does not block
    rest = [row["doc_id"] for row in stream]
    assert rest == [*range(2, EXPORT_BATCH * 2 + 8), 9999]


# -- Processes ---------------------------------------------------------------------------


def _write_range(path: str, start: int, stop: int) -> None:
    local = LocalIndex(Path(path))
    for page in range(start, stop, 20):
        docs = [make_doc(i, text=f"word{i % 7} shared") for i in range(page, min(page + 20, stop))]
        local.write(RUN, docs)
    local.close()


def test_two_processes_writing_at_once_lose_nothing(index: LocalIndex):
    index.count()  # create the file first, as the worker's parent process would
    ctx = multiprocessing.get_context("spawn")
    workers = [
        ctx.Process(target=_write_range, args=(str(index.path), 1, 401)),
        ctx.Process(target=_write_range, args=(str(index.path), 301, 701)),  # overlaps
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert index.count() == 700
    assert sorted(index.stored_states(SOURCE)) == list(range(1, 701))
    assert len(index.search("shared", limit=1000)) == 700


def _write_in_child(index: LocalIndex) -> None:
    inherited = index._conn
    index.write(RUN, [make_doc(2, text="from the child")])
    if inherited is None or index._conn is inherited:
        raise SystemExit(3)  # it used the parent's connection


def test_a_forked_child_opens_its_own_connection(index: LocalIndex):
    index.write(RUN, [make_doc(1, text="from the parent")])
    child = multiprocessing.get_context("fork").Process(target=_write_in_child, args=(index,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert sorted(ids(index.search("from"))) == [1, 2]
    index.write(RUN, [make_doc(3, text="from the parent again")])
    assert index.count() == 3


def test_close_then_use_again_and_close_without_opening(tmp_path: Path):
    index = LocalIndex(tmp_path / "index.sqlite3")
    index.close()
    assert not index.path.exists()  # closing opened nothing
    index.write(RUN, [make_doc(1)])
    index.close()
    assert index.count() == 1  # reopens on demand
    index.close()


def test_a_file_that_is_not_an_index_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "index.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LocalIndexError, match=r"could not be opened .*; check the disk space"):
        LocalIndex(bad).count()
