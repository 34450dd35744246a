"""The Paperless-ngx double behaves like Paperless-ngx 3.0.5 where the connector looks.

Every test talks to the double over real HTTP with `requests`, the way the client does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.paperless_double import PaperlessDouble, generate_corpus
from tests.support.paperless import CORPUS_SIZE

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "reference" / "paperless-samples"
LIGHT = (
    "id,modified,title,tags,correspondent,document_type,storage_path,owner,custom_fields,"
    "archive_serial_number,permissions"
)


def get(
    double: PaperlessDouble,
    path: str,
    user: str | None = "admin",
    version: int | None = 10,
    timeout: float = 10,
    **params: Any,
) -> requests.Response:
    headers = {}
    if user is not None:
        headers["Authorization"] = f"Token {double.token(user)}"
    if version is not None:
        headers["Accept"] = f"application/json; version={version}"
    return requests.get(
        double.url + path, params=params, headers=headers, timeout=timeout, allow_redirects=False
    )


def all_ids(double: PaperlessDouble, user: str = "admin", **params: Any) -> list[int]:
    body = get(double, "/api/documents/", user, page_size=100_000, fields="id", **params).json()
    return [row["id"] for row in body["results"]]


def expected_visible(double: PaperlessDouble, username: str) -> set[int]:
    """Paperless-ngx's rule, computed from the corpus independently of the server code."""
    user = double.corpus.user(username)
    seen = set()
    for doc in double.corpus.documents.values():
        s = doc.shares
        if doc.deleted_at is not None:
            continue
        if (
            s.owner in (None, user.id)
            or user.id in s.view_users + s.change_users
            or set(user.groups) & set(s.view_groups + s.change_groups)
        ):
            seen.add(doc.id)
    return seen


# -- shapes against the recorded samples ---------------------------------------------------


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_same_shape(sample: Any, actual: Any, where: str = "$") -> None:
    """Same keys at every level, same JSON types wherever both sides are non-null."""
    if sample is None or actual is None:
        return
    assert json_type(sample) == json_type(actual), f"{where}: {sample!r} vs {actual!r}"
    if isinstance(sample, dict):
        assert set(sample) == set(actual), f"{where}: keys {set(sample) ^ set(actual)} differ"
        for key in sample:
            if key != "value":  # a custom field's value has its field's type
                assert_same_shape(sample[key], actual[key], f"{where}.{key}")
    elif isinstance(sample, list) and sample and actual:
        assert_same_shape(sample[0], actual[0], f"{where}[0]")


def load_sample(name: str) -> Any:
    if not SAMPLES.is_dir():
        pytest.skip(f"the recorded samples are not at {SAMPLES}")
    return json.loads((SAMPLES / name).read_text())


def first_with(double: PaperlessDouble, predicate: Any) -> int:
    return min(d.id for d in double.corpus.documents.values() if predicate(d))


@pytest.mark.parametrize(
    ("sample", "path", "user", "version", "params"),
    [
        ("documents_list_v10.json", "/api/documents/", "admin", 10, {"page_size": 5}),
        ("documents_list_v9.json", "/api/documents/", "admin", 9, {"page_size": 5}),
        ("tags.json", "/api/tags/", "admin", 10, {}),
        ("tags_as_alice.json", "/api/tags/", "alice", 10, {}),
        ("correspondents.json", "/api/correspondents/", "admin", 10, {}),
        ("document_types.json", "/api/document_types/", "admin", 10, {}),
        ("storage_paths.json", "/api/storage_paths/", "admin", 10, {}),
        ("custom_fields.json", "/api/custom_fields/", "admin", 10, {}),
        ("users.json", "/api/users/", "admin", 10, {}),
        ("groups.json", "/api/groups/", "admin", 10, {}),
    ],
)
def test_lists_have_the_samples_shape(
    paperless: PaperlessDouble, sample: str, path: str, user: str, version: int, params: dict
) -> None:
    expected = load_sample(sample)
    answer = get(paperless, path, user, version, **params).json()
    assert_same_shape(expected, answer)
    # every result row, not only the first, has the sample row's keys
    keys = set(expected["results"][0])
    assert all(set(row) == keys for row in answer["results"])


def test_documents_have_the_samples_shape(paperless: PaperlessDouble) -> None:
    with_notes = first_with(paperless, lambda d: d.notes and d.custom_fields)
    full = get(paperless, f"/api/documents/{with_notes}/").json()
    assert_same_shape(load_sample("document_full_90.json"), full)
    perms = get(paperless, f"/api/documents/{with_notes}/", full_perms="true").json()
    assert_same_shape(load_sample("document_full_90_full_perms.json"), perms)
    assert "user_can_change" not in perms and "is_shared_by_requester" not in perms

    paperless.add_version(with_notes, "Korrigierte Fassung", label="v2 – korrigiert")
    versioned = get(paperless, f"/api/documents/{with_notes}/").json()
    assert_same_shape(load_sample("document_full_6_with_versions.json"), versioned)
    assert [v["is_root"] for v in versioned["versions"]] == [False, True]
    assert versioned["content"] == "Korrigierte Fassung"

    notes = get(paperless, f"/api/documents/{with_notes}/notes/").json()
    assert_same_shape(load_sample("notes_doc_6.json"), notes)

    paperless.trash_document(with_notes)
    assert_same_shape(load_sample("trash.json"), get(paperless, "/api/trash/").json())


@pytest.mark.parametrize("version", [9, 10])
def test_headers_match_the_recorded_ones(paperless: PaperlessDouble, version: int) -> None:
    if not SAMPLES.is_dir():
        pytest.skip(f"the recorded samples are not at {SAMPLES}")
    recorded = dict(
        line.split(": ", 1)
        for line in (SAMPLES / f"headers_v{version}.txt").read_text().splitlines()[1:]
        if ": " in line
    )
    answer = get(paperless, "/api/documents/", version=version, page_size=5)
    for name in ("content-type", "x-api-version", "x-version", "allow"):
        assert answer.headers[name] == recorded[name]
    assert parsedate_to_datetime(answer.headers["date"]).tzinfo is not None


# -- versions, auth, permissions ----------------------------------------------------------


def test_all_is_listed_up_to_version_9_only(paperless: PaperlessDouble) -> None:
    v9 = get(paperless, "/api/documents/", version=9, page_size=3, ordering="id").json()
    assert v9["all"] == sorted(paperless.corpus.documents)
    assert [row["id"] for row in v9["results"]] == [1, 2, 3]
    assert "all" not in get(paperless, "/api/documents/", version=10, page_size=3).json()
    assert "all" not in get(paperless, "/api/documents/", version=None, page_size=3).json()


def test_unsupported_versions_get_406(paperless: PaperlessDouble) -> None:
    for version in (8, 11):
        answer = get(paperless, "/api/documents/", version=version)
        assert answer.status_code == 406
        assert answer.json() == {"detail": 'Invalid version in "Accept" header.'}
    ok = get(paperless, "/api/documents/", version=9)
    assert ok.headers["X-Api-Version"] == "10"  # the newest, not the negotiated one
    assert ok.headers["X-Version"] == "3.0.5"


def test_an_old_2x_server_speaks_7_to_9_with_the_old_shapes() -> None:
    corpus = generate_corpus(40, seed=3)
    with PaperlessDouble(corpus, api_versions={7, 8, 9}, release="2.15.3") as double:
        assert get(double, "/api/documents/", version=10).status_code == 406
        doc_id = first_with(double, lambda d: d.notes)
        v9 = get(double, f"/api/documents/{doc_id}/", version=9).json()
        v8 = get(double, f"/api/documents/{doc_id}/", version=8).json()
        v7 = get(double, f"/api/documents/{doc_id}/", version=7).json()
        assert len(v9["created"]) == 10 and v8["created"] == v9["created"] + "T00:00:00Z"
        assert isinstance(v8["notes"][0]["user"], dict)
        assert isinstance(v7["notes"][0]["user"], int)
        newest = get(double, "/api/documents/", version=None)
        assert newest.headers["X-Api-Version"] == "9" and "all" in newest.json()


def test_wrong_or_missing_credentials_get_401(paperless: PaperlessDouble) -> None:
    missing = get(paperless, "/api/documents/", user=None)
    assert missing.status_code == 401
    wrong = requests.get(
        paperless.url + "/api/documents/", headers={"Authorization": "Token nope"}, timeout=5
    )
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "Invalid token."})
    assert "X-Api-Version" not in wrong.headers
    basic = requests.get(paperless.url + "/api/documents/", auth=("bob", "bob-password"), timeout=5)
    assert basic.status_code == 200
    assert (
        requests.get(paperless.url + "/api/documents/", auth=("bob", "x"), timeout=5).status_code
        == 401
    )


def test_users_and_groups_are_forbidden_to_non_superusers(paperless: PaperlessDouble) -> None:
    for path in ("/api/users/", "/api/groups/"):
        answer = get(paperless, path, "alice")
        assert answer.status_code == 403
        assert answer.json() == {"detail": "You do not have permission to perform this action."}
        assert get(paperless, path, "admin").status_code == 200
    assert get(paperless, "/api/custom_fields/", "dave").status_code == 403
    assert get(paperless, "/api/custom_fields/", "alice").status_code == 200
    paperless.set_forbidden("alice", "users", "groups", "tags")
    assert get(paperless, "/api/tags/", "alice").status_code == 403


def test_users_see_only_the_lookups_they_may_view(paperless: PaperlessDouble) -> None:
    admin_tags = {t["id"] for t in get(paperless, "/api/tags/", "admin").json()["results"]}
    alice_tags = {t["id"] for t in get(paperless, "/api/tags/", "alice").json()["results"]}
    assert admin_tags - alice_tags == {16}  # "Privat 🔒" belongs to admin
    bob = {c["id"] for c in get(paperless, "/api/correspondents/", "bob").json()["results"]}
    alice = {c["id"] for c in get(paperless, "/api/correspondents/", "alice").json()["results"]}
    assert alice - bob == {8}  # alice's own correspondent
    steuer = next(
        t for t in get(paperless, "/api/tags/").json()["results"] if t["name"] == "Steuer"
    )
    assert [c["name"] for c in steuer["children"]] == ["Steuer 2023", "Steuer 2024"]


@pytest.mark.parametrize("username", ["admin", "alice", "bob", "carol", "dave"])
def test_visibility_follows_owner_and_shares(paperless: PaperlessDouble, username: str) -> None:
    seen = set(all_ids(paperless, username))
    if username == "admin":
        assert seen == set(paperless.corpus.documents)
    else:
        assert seen == expected_visible(paperless, username)
        assert seen != set(paperless.corpus.documents)
    assert {d["id"] for d in paperless.visible_documents(username)} == seen


def test_hidden_documents_answer_404_and_their_notes_403(paperless: PaperlessDouble) -> None:
    hidden = first_with(paperless, lambda d: d.shares.owner == 1 and d.notes)
    assert get(paperless, f"/api/documents/{hidden}/", "bob").status_code == 404
    assert get(paperless, f"/api/documents/{hidden}/notes/", "bob").status_code == 403
    assert get(paperless, f"/api/documents/{hidden}/download/", "bob").status_code == 403
    assert get(paperless, "/api/documents/999999/").status_code == 404
    shown = get(paperless, f"/api/documents/{hidden}/notes/", "admin").json()
    assert len(shown) == len(paperless.document(hidden).notes)


def test_shares_show_in_full_perms_and_user_can_change(paperless: PaperlessDouble) -> None:
    doc_id = first_with(paperless, lambda d: d.shares.owner == 2 and not d.shares.is_shared())
    paperless.set_permissions([doc_id], view_users=[3], change_groups=[2])
    perms = get(paperless, f"/api/documents/{doc_id}/", "alice", full_perms="true").json()
    assert perms["permissions"] == {
        "view": {"users": [3], "groups": []},
        "change": {"users": [], "groups": [2]},
    }
    as_alice = get(paperless, f"/api/documents/{doc_id}/", "alice").json()
    assert as_alice["is_shared_by_requester"] is True and as_alice["user_can_change"] is True
    as_bob = get(paperless, f"/api/documents/{doc_id}/", "bob").json()  # bob is in Familie
    assert as_bob["user_can_change"] is True and as_bob["is_shared_by_requester"] is False


# -- lists: pagination, filters, fields ---------------------------------------------------


def test_pagination_links_and_invalid_page(paperless: PaperlessDouble) -> None:
    first = get(paperless, "/api/documents/", page_size=80, ordering="id", fields="id").json()
    assert first["count"] == CORPUS_SIZE and first["previous"] is None
    assert (
        first["next"] == f"{paperless.url}/api/documents/?fields=id&ordering=id&page=2&page_size=80"
    )
    second = requests.get(
        first["next"], headers={"Authorization": f"Token {paperless.token('admin')}"}, timeout=5
    ).json()
    assert (
        second["previous"] == f"{paperless.url}/api/documents/?fields=id&ordering=id&page_size=80"
    )
    third = get(
        paperless, "/api/documents/", page=3, page_size=80, ordering="id", fields="id"
    ).json()
    assert third["next"] is None and third["previous"].endswith("page=2&page_size=80")
    ids = [r["id"] for page in (first, second, third) for r in page["results"]]
    assert ids == sorted(paperless.corpus.documents)
    past = get(paperless, "/api/documents/", page=4, page_size=80)
    assert (past.status_code, past.json()) == (404, {"detail": "Invalid page."})
    assert len(get(paperless, "/api/documents/").json()["results"]) == 25  # default size


def test_default_order_is_newest_created_first(paperless: PaperlessDouble) -> None:
    rows = get(paperless, "/api/documents/", page_size=1000, fields="id,created").json()["results"]
    created = [r["created"] for r in rows]
    assert created == sorted(created, reverse=True)
    modified = get(
        paperless, "/api/documents/", page_size=1000, fields="modified", ordering="-modified"
    ).json()
    values = [r["modified"] for r in modified["results"]]
    assert values == sorted(values, reverse=True)


def test_document_filters(paperless: PaperlessDouble) -> None:
    docs = paperless.corpus.documents.values()
    assert set(all_ids(paperless, id__in="3,1,2,999")) == {1, 2, 3}
    assert all_ids(paperless, id__in="3,1,2", ordering="id") == [1, 2, 3]
    assert len(all_ids(paperless, id__in="", tags__id__in="")) == CORPUS_SIZE  # empty: ignored
    cutoff = sorted(d.modified for d in docs)[CORPUS_SIZE // 2]
    newer = {d.id for d in docs if d.modified > cutoff}
    assert set(all_ids(paperless, modified__gt=cutoff.isoformat().replace("+00:00", "Z"))) == newer
    assert set(all_ids(paperless, modified__gt=cutoff.isoformat())) == newer  # %2B encoded
    at_or_newer = {d.id for d in docs if d.modified >= cutoff}
    assert set(all_ids(paperless, modified__gte=cutoff.isoformat())) == at_or_newer
    assert set(all_ids(paperless, tags__id__in="3,4")) == {
        d.id for d in docs if {3, 4} & set(d.tags)
    }
    assert set(all_ids(paperless, correspondent__id__in="1")) == {
        d.id for d in docs if d.correspondent == 1
    }
    assert set(all_ids(paperless, owner__id__in="2,3")) == {
        d.id for d in docs if d.shares.owner in (2, 3)
    }
    assert set(all_ids(paperless, custom_fields__id__in="8")) == {
        d.id for d in docs if any(f == 8 for f, _ in d.custom_fields)
    }


def test_an_unencoded_plus_in_a_date_is_a_400(paperless: PaperlessDouble) -> None:
    raw = requests.get(
        paperless.url + "/api/documents/?modified__gt=2024-01-01T00:00:00+00:00",
        headers={"Authorization": f"Token {paperless.token('admin')}"},
        timeout=5,
    )
    assert raw.status_code == 400
    assert raw.json() == {"modified__gt": ["Enter a valid date/time."]}


def test_fields_limit_the_document_fields(paperless: PaperlessDouble) -> None:
    rows = get(paperless, "/api/documents/", fields="id,title").json()["results"]
    assert all(set(row) == {"id", "title"} for row in rows)
    light = get(paperless, "/api/documents/", fields=LIGHT, full_perms="true").json()["results"]
    assert all(set(row) == set(LIGHT.split(",")) for row in light)
    # like DRF's DynamicFieldsModelSerializer: full_perms adds nothing that `fields` omits
    no_perms = get(paperless, "/api/documents/", fields="id,owner", full_perms="true").json()
    assert all(set(row) == {"id", "owner"} for row in no_perms["results"])


# -- HTTP behaviour ------------------------------------------------------------------------


def test_api_root_redirects_to_the_schema_viewer(paperless: PaperlessDouble) -> None:
    answer = get(paperless, "/api/")
    assert answer.status_code == 302
    assert answer.headers["Location"] == "/api/schema/view/"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_writes_are_refused_and_logged(paperless: PaperlessDouble, method: str) -> None:
    answer = requests.request(
        method,
        paperless.url + "/api/documents/1/",
        json={"title": "x"},
        headers={"Authorization": f"Token {paperless.token('admin')}"},
        timeout=5,
    )
    assert answer.status_code == 405
    assert paperless.document(1).title != "x"
    assert [(r.method, r.path, r.status) for r in paperless.log] == [
        (method, "/api/documents/1/", 405)
    ]


def test_request_log_and_counters(paperless: PaperlessDouble) -> None:
    get(paperless, "/api/documents/", page_size=1)
    get(paperless, "/api/tags/", "alice")
    get(paperless, "/api/tags/", "alice")
    assert paperless.counts["/api/tags/"] == 2
    first = paperless.log[0]
    assert (first.method, first.path, first.query, first.user, first.status) == (
        "GET", "/api/documents/", {"page_size": "1"}, "admin", 200,
    )  # fmt: skip
    paperless.reset_log()
    assert paperless.log == [] and not paperless.counts


def test_download_serves_archived_or_original_file(paperless: PaperlessDouble) -> None:
    doc_id = first_with(
        paperless, lambda d: d.archived_file_name and d.mime_type != "application/pdf"
    )
    doc = paperless.document(doc_id)
    archived = get(paperless, f"/api/documents/{doc_id}/download/")
    assert archived.status_code == 200 and archived.content.startswith(b"%PDF")
    assert archived.headers["Content-Type"] == "application/pdf"
    assert "attachment" in archived.headers["Content-Disposition"]
    original = get(paperless, f"/api/documents/{doc_id}/download/", original="true")
    assert original.headers["Content-Type"] == doc.mime_type
    assert original.content != archived.content


def test_a_path_prefix_mounts_the_api_below_it() -> None:
    with PaperlessDouble(generate_corpus(30, seed=1), prefix="/paperless/") as double:
        assert double.url.endswith("/paperless")
        page = get(double, "/api/documents/", page_size=10).json()
        assert page["next"].startswith(double.url + "/api/documents/?")
        assert get(double, "/api/").headers["Location"] == "/paperless/api/schema/view/"
        bare = requests.get(double.url.removesuffix("/paperless") + "/api/documents/", timeout=5)
        assert bare.status_code == 404


def test_stopping_makes_it_unreachable_and_start_serves_on_the_same_port(
    paperless: PaperlessDouble,
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {paperless.token('admin')}"
    url = paperless.url + "/api/documents/?page_size=1"
    assert session.get(url, timeout=5).status_code == 200
    paperless.stop()
    with pytest.raises(requests.ConnectionError):
        session.get(url, timeout=5)
    paperless.start()
    assert session.get(url, timeout=5).status_code == 200


# -- faults --------------------------------------------------------------------------------


def test_status_faults_hit_the_next_n_matching_requests(paperless: PaperlessDouble) -> None:
    paperless.faults.add(r"^/api/documents/$", status=503, times=2)
    assert get(paperless, "/api/tags/").status_code == 200  # other paths untouched
    answers = [get(paperless, "/api/documents/") for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 200]
    assert answers[0].headers["Content-Type"].startswith("text/html")  # a proxy's page
    assert [r.status for r in paperless.requests("/api/documents/")] == [503, 503, 200]


def test_rate_faults_are_deterministic_per_seed(paperless: PaperlessDouble) -> None:
    def run() -> list[int]:
        paperless.faults.clear()
        paperless.faults.add(rate=0.3, statuses=[500, 502, 503, 429], retry_after=1, seed=3)
        return [get(paperless, "/api/tags/").status_code for _ in range(40)]

    first, second = run(), run()
    assert first == second
    failed = [s for s in first if s != 200]
    assert 4 <= len(failed) <= 20 and set(failed) <= {500, 502, 503, 429}


def test_429_carries_retry_after(paperless: PaperlessDouble) -> None:
    paperless.faults.add(status=429, retry_after=2, times=1)
    answer = get(paperless, "/api/documents/")
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"


def test_malformed_body_is_not_json(paperless: PaperlessDouble) -> None:
    paperless.faults.add(r"^/api/documents/$", malformed=True, times=1)
    answer = get(paperless, "/api/documents/")
    assert answer.status_code == 200
    with pytest.raises(ValueError):
        answer.json()
    assert get(paperless, "/api/documents/").json()["count"] == CORPUS_SIZE


def test_dropped_connection_and_slow_response(paperless: PaperlessDouble) -> None:
    paperless.faults.add(r"^/api/documents/$", drop=True, times=1)
    with pytest.raises(requests.ConnectionError):
        get(paperless, "/api/documents/")
    assert paperless.log[-1].status == 0
    paperless.faults.add(r"^/api/tags/$", delay=1.0, times=1)
    with pytest.raises(requests.ReadTimeout):
        get(paperless, "/api/tags/", timeout=0.3)
    assert get(paperless, "/api/tags/").status_code == 200


def test_latency_is_added_per_pattern(paperless: PaperlessDouble) -> None:
    paperless.faults.set_latency(r"^/api/tags/$", 0.3)
    started = time.monotonic()
    get(paperless, "/api/correspondents/")
    fast = time.monotonic() - started
    started = time.monotonic()
    get(paperless, "/api/tags/")
    assert time.monotonic() - started >= 0.3 > fast


def test_a_vanished_document_is_listed_but_not_fetched(paperless: PaperlessDouble) -> None:
    paperless.faults.vanish(5)
    assert 5 in all_ids(paperless)
    fetched = get(paperless, "/api/documents/", id__in="4,5,6", full_perms="true").json()
    assert {r["id"] for r in fetched["results"]} == {4, 6}
    assert get(paperless, "/api/documents/5/").status_code == 404
    paperless.faults.clear()
    assert get(paperless, "/api/documents/5/").status_code == 200


def test_bad_documents(paperless: PaperlessDouble) -> None:
    paperless.faults.bad_document(7, "lone_surrogate", "nul_bytes")
    paperless.faults.bad_document(8, "unknown_tag", "unknown_correspondent", "unknown_custom_field")
    paperless.faults.bad_document(9, "invalid_date", "empty_title")
    paperless.faults.bad_document(10, "huge_content")
    raw = get(paperless, "/api/documents/7/")
    assert b"\\ud800" in raw.content and b"\\u0000" in raw.content
    assert "\x00" in raw.json()["content"]
    eight = get(paperless, "/api/documents/8/").json()
    assert 9999 in eight["tags"] and eight["correspondent"] == 9998
    assert {"value": "?", "field": 9995} in eight["custom_fields"]
    nine = get(paperless, "/api/documents/9/").json()
    assert nine["created"] == "2023-02-30" and nine["title"] == ""
    ten = get(paperless, "/api/documents/", id__in="10").json()["results"][0]
    assert len(ten["content"]) >= 10_000_000
    light = get(paperless, "/api/documents/", id__in="8", fields="id,title").json()["results"]
    assert light == [{"id": 8, "title": paperless.document(8).title}]  # only carried fields spoil
    with pytest.raises(ValueError):
        paperless.faults.bad_document(1, "no_such_kind")
    paperless.faults.clear()
    assert get(paperless, "/api/documents/9/").json()["title"] != ""


# -- mutations and `modified` -------------------------------------------------------------


def modified(double: PaperlessDouble, doc_id: int) -> str:
    return get(double, f"/api/documents/{doc_id}/").json()["modified"]


def test_edits_notes_and_restores_bump_modified_to_the_server_clock(
    paperless: PaperlessDouble,
) -> None:
    moment = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    paperless.clock.set(moment)
    paperless.edit_document(1, title="Neu")
    assert modified(paperless, 1) == "2026-03-01T12:00:00.123456Z"
    answer = get(paperless, "/api/documents/1/")
    assert parsedate_to_datetime(answer.headers["Date"]) == moment.replace(microsecond=0)
    paperless.clock.advance(60)
    note_id = paperless.add_note(2, "alice", "Bitte prüfen")
    assert modified(paperless, 2) == "2026-03-01T12:01:00.123456Z"
    notes = get(paperless, "/api/documents/2/notes/").json()
    assert notes[0]["id"] == note_id and notes[0]["user"]["username"] == "alice"
    paperless.clock.advance(60)
    paperless.delete_note(2, note_id)
    assert modified(paperless, 2) == "2026-03-01T12:02:00.123456Z"
    paperless.trash_document(3)
    before = paperless.document(3).modified
    paperless.clock.advance(60)
    paperless.restore_document(3)
    assert paperless.document(3).modified > before


def test_bulk_edits_permissions_renames_and_trash_do_not_bump(paperless: PaperlessDouble) -> None:
    before = {doc_id: modified(paperless, doc_id) for doc_id in (1, 2, 3)}
    paperless.clock.advance(3600)
    paperless.bulk_edit([1, 2], add_tags=[15], remove_tags=[1], correspondent=4)
    paperless.set_permissions([1], owner=3, view_groups=[1])
    paperless.rename_tag(15, "Sehr wichtig")
    paperless.rename_correspondent(4, "ACME GmbH")
    paperless.rename_custom_field(9, "Prio")
    paperless.relabel_select_option(9, "Wwjx53RV5udRImjh", "High")
    paperless.trash_document(3)
    assert {doc_id: modified(paperless, doc_id) for doc_id in (1, 2)} == {
        1: before[1],
        2: before[2],
    }
    one = get(paperless, "/api/documents/1/", full_perms="true").json()
    assert 15 in one["tags"] and 1 not in one["tags"] and one["correspondent"] == 4
    assert one["owner"] == 3 and one["permissions"]["view"]["groups"] == [1]
    tags = {t["id"]: t["name"] for t in get(paperless, "/api/tags/").json()["results"]}
    assert tags[15] == "Sehr wichtig"
    fields = {f["id"]: f for f in get(paperless, "/api/custom_fields/").json()["results"]}
    assert fields[9]["name"] == "Prio"
    assert {"id": "Wwjx53RV5udRImjh", "label": "High"} in fields[9]["extra_data"]["select_options"]
    assert 3 not in all_ids(paperless)
    trash = get(paperless, "/api/trash/").json()["results"]
    assert [(r["id"], r["modified"]) for r in trash] == [(3, before[3])]


def test_added_and_deleted_documents(paperless: PaperlessDouble) -> None:
    doc = paperless.add_document("Neuer Scan", owner=2, tags=[1], content="Hallo Welt")
    assert doc.id == CORPUS_SIZE + 1
    assert doc.id in all_ids(paperless, "alice") and doc.id not in all_ids(paperless, "bob")
    assert get(paperless, f"/api/documents/{doc.id}/").json()["content"] == "Hallo Welt"
    paperless.delete_document(doc.id)
    assert doc.id not in all_ids(paperless)
    user = paperless.add_user("erin", email="erin@example.com", groups=(2,))
    assert get(paperless, "/api/documents/", "erin").status_code == 200
    assert user.token == paperless.token("erin")


# -- generator and command line -----------------------------------------------------------


def test_the_corpus_is_deterministic_and_varied() -> None:
    one, two = generate_corpus(120, seed=5), generate_corpus(120, seed=5)
    with PaperlessDouble(one) as a, PaperlessDouble(two) as b:
        assert a.visible_documents("admin") == b.visible_documents("admin")
    docs = list(one.documents.values())
    assert any(d.shares.owner is None for d in docs) and any(d.shares.is_shared() for d in docs)
    assert any(d.archived_file_name is None for d in docs) and any(d.content == "" for d in docs)
    assert any(d.notes for d in docs) and any(d.archive_serial_number for d in docs)
    types = {
        one.lookups["custom_fields"][f].attrs["data_type"] for d in docs for f, _ in d.custom_fields
    }
    assert types == {
        "string", "url", "date", "boolean", "integer", "float", "monetary", "documentlink",
        "select", "longtext",
    }  # fmt: skip
    assert one.user("carol").email == "" and "custom_fields" in one.user("dave").forbidden
    assert generate_corpus(120, seed=6).documents[1].title != one.documents[1].title or (
        generate_corpus(120, seed=6).documents[1].created != one.documents[1].created
    )


def test_the_command_line_prints_url_and_tokens_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.paperless_double", "--documents", "50", "--seed", "2"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        answer = requests.get(
            info["url"] + "/api/documents/",
            headers={"Authorization": f"Token {info['tokens']['admin']}"},
            timeout=5,
        )
        assert answer.json()["count"] == 50
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.slow
def test_100k_documents_generate_fast_and_list_in_one_request() -> None:
    started = time.monotonic()
    corpus = generate_corpus(100_000, seed=7)
    assert time.monotonic() - started < 60
    with PaperlessDouble(corpus) as double:
        answer = get(
            double,
            "/api/documents/",
            page_size=100_000,
            fields=LIGHT,
            full_perms="true",
            timeout=120,
        )
        assert len(answer.json()["results"]) == 100_000
        cutoff = (datetime(2025, 6, 30, tzinfo=UTC) - timedelta(days=30)).isoformat()
        assert all(
            r["modified"] > cutoff[:19]
            for r in get(
                double,
                "/api/documents/",
                page_size=100_000,
                fields="modified",
                modified__gt=cutoff,
                timeout=120,
            ).json()["results"]
        )
