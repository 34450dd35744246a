"""The client, snapshot and rendering against the Paperless-ngx test double (real HTTP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tasks.paperless.client import PaperlessClient
from tasks.paperless.errors import BadResponseError, TransientError
from tasks.render import DocumentDataError, light_fingerprint, linked_ids, render_document
from tasks.snapshot import LookupSnapshot
from tests.paperless_double import PaperlessDouble, generate_corpus
from tests.support.paperless import CORPUS_SEED, CORPUS_SIZE


@pytest.fixture
def double() -> Iterator[PaperlessDouble]:
    server = PaperlessDouble(generate_corpus(CORPUS_SIZE, seed=CORPUS_SEED)).start()
    yield server
    server.stop()


def connect(double: PaperlessDouble, user: str = "admin", **kwargs: Any) -> PaperlessClient:
    kwargs.setdefault("backoff_factor", 0.01)
    return PaperlessClient(double.url, double.token(user), **kwargs)


def rendered(client: PaperlessClient, double: PaperlessDouble, snapshot: LookupSnapshot):
    docs = {}
    for raw in client.get_documents(client.list_document_ids()):
        links = sorted(linked_ids(raw, snapshot))
        titles = client.get_titles(links) if links else {}
        docs[raw["id"]] = render_document(
            raw, snapshot, source_id="home", base_url=double.url, link_titles=titles
        )
    return docs


def assert_only_get(double: PaperlessDouble) -> None:
    assert double.log and {r.method for r in double.log} == {"GET"}


def test_a_whole_read_as_admin(double: PaperlessDouble) -> None:
    client = connect(double)
    info = client.probe()
    assert (info.api_version, info.server_version, info.document_count) == (10, "3.0.5", 200)
    snapshot = LookupSnapshot.load(client)
    assert len(snapshot.users) == 5
    # carol has no e-mail address: said once, by name, with what to do.
    assert snapshot.degraded == [
        "users without an e-mail address cannot be given access to private documents: "
        "carol; add an e-mail address in Paperless-ngx"
    ]
    light, server_time = client.list_light()
    assert [d["id"] for d in light] == list(range(1, 201))
    assert all("permissions" in d and "content" not in d for d in light)
    assert abs(server_time - double.clock.now()) < timedelta(seconds=5)
    docs = rendered(client, double, snapshot)
    assert sorted(docs) == list(range(1, 201))
    # The cheap listing and the full document agree on every light fingerprint.
    for entry in light:
        assert light_fingerprint(entry, snapshot) == docs[entry["id"]].light_fingerprint
    owned = [d for d in docs.values() if d.owner is not None]
    assert owned and all(not d.access.public for d in owned)
    assert all("admin" in " ".join(d.access.users) for d in owned)  # the superuser sees all
    assert all(d.access.public for d in docs.values() if d.owner is None)
    assert_only_get(double)


@pytest.mark.parametrize(
    ("user", "missing"),
    [("alice", ["users", "groups"]), ("dave", ["custom fields", "users", "groups"])],
)
def test_a_user_token_degrades_and_never_widens_access(
    double: PaperlessDouble, user: str, missing: list[str]
) -> None:
    client = connect(double, user)
    snapshot = LookupSnapshot.load(client)
    assert [line.split(" ")[0] for line in snapshot.degraded] == [m.split(" ")[0] for m in missing]
    docs = rendered(client, double, snapshot)
    expected = [d["id"] for d in double.visible_documents(user)]
    assert sorted(docs) == expected
    for doc in docs.values():
        assert doc.access.public == (doc.owner is None)
        if doc.owner is not None:
            assert doc.access.users == [] and doc.access.unresolved  # no user could be mapped
    if user == "dave":
        assert all(d.custom_fields == [] for d in docs.values())


def test_light_fingerprint_follows_changes_that_do_not_bump_modified(
    double: PaperlessDouble,
) -> None:
    client = connect(double)

    def fingerprints() -> dict[int, tuple[str, str]]:
        snapshot = LookupSnapshot.load(client)
        light, _ = client.list_light()
        return {d["id"]: (d["modified"], light_fingerprint(d, snapshot)) for d in light}

    before = fingerprints()
    tagged = next(d for d in double.visible_documents("admin") if d["tags"])
    double.rename_tag(tagged["tags"][0], "Umbenannt")
    double.set_permissions([1], owner=3, view_groups=[2])
    after = fingerprints()
    changed = {i for i in before if before[i][1] != after[i][1]}
    assert {1, tagged["id"]} <= changed
    assert all(before[i][0] == after[i][0] for i in before)  # `modified` never moved
    assert len(changed) < len(before)  # and the others kept theirs


def test_incremental_ids_use_the_servers_clock(double: PaperlessDouble) -> None:
    client = connect(double)
    double.clock.set(datetime(2031, 1, 1, tzinfo=UTC))
    start = client.probe().server_time
    double.clock.advance(60)
    double.edit_document(5, title="Neu")
    double.add_note(9, "alice", "geprüft")
    assert client.list_document_ids(modified_after=start) == [5, 9]
    assert client.list_document_ids(modified_after=start + timedelta(hours=1)) == []


def test_an_older_server_is_spoken_to_in_api_9_with_all() -> None:
    double = PaperlessDouble(generate_corpus(30, seed=3), api_versions={7, 8, 9}).start()
    try:
        client = connect(double)
        assert client.api_version == 9
        double.reset_log()
        assert client.list_document_ids() == list(range(1, 31))
        assert len(double.log) == 1  # `all` carried every id in one answer
        snapshot = LookupSnapshot.load(client)
        assert len(rendered(client, double, snapshot)) == 30
    finally:
        double.stop()


def test_a_path_prefix() -> None:
    double = PaperlessDouble(generate_corpus(10, seed=3), prefix="/paperless").start()
    try:
        assert double.url.endswith("/paperless")
        client = PaperlessClient(double.url + "/", double.token("admin"))
        assert client.probe().document_count == 10
        assert client.get_documents([2])[0]["id"] == 2
    finally:
        double.stop()


def test_transient_faults_are_ridden_out(double: PaperlessDouble) -> None:
    client = connect(double, api_version=10)
    double.faults.add(r"^/api/documents/$", statuses=[500, 502, 503], times=3)
    assert len(client.get_documents([1, 2, 3])) == 3
    double.faults.add(r"^/api/tags/$", drop=True, times=1)
    assert client.list_lookup("tags")
    double.faults.add(r"^/api/tags/$", status=429, retry_after=1, times=1)
    double.reset_log()
    started = time.monotonic()
    assert client.list_lookup("tags")
    assert time.monotonic() - started >= 0.95 and len(double.log) == 2
    assert_only_get(double)


def test_lasting_faults_become_clear_errors(double: PaperlessDouble) -> None:
    client = connect(double, api_version=10, retries=2)
    double.faults.add(r"^/api/documents/$", status=503)
    with pytest.raises(TransientError, match="answered 503 after retries"):
        client.get_documents([1])
    double.faults.clear()
    double.faults.add(r"^/api/tags/$", malformed=True)
    with pytest.raises(BadResponseError, match="is not JSON"):
        client.list_lookup("tags")


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("unknown_tag", lambda d: d.tags is not None),
        ("unknown_correspondent", lambda d: d.correspondent is None),
        ("unknown_custom_field", lambda d: True),
        ("huge_content", lambda d: len(d.text) > 10_000_000 and d.has_text),
        ("nul_bytes", lambda d: "\x00" not in d.text + d.title),
        ("lone_surrogate", lambda d: d.model_dump_json() is not None),
        ("empty_title", lambda d: d.title.strip() != ""),
    ],
)
def test_bad_data_still_renders(double: PaperlessDouble, kind: str, check) -> None:
    double.faults.bad_document(7, kind)
    client = connect(double, api_version=10)
    snapshot = LookupSnapshot.load(client)
    (raw,) = client.get_documents([7])
    doc = render_document(raw, snapshot, source_id="home", base_url=double.url, link_titles={})
    assert check(doc)


@pytest.mark.parametrize("kind", ["invalid_date", "invalid_modified"])
def test_invalid_dates_are_document_data_errors(double: PaperlessDouble, kind: str) -> None:
    double.faults.bad_document(7, kind)
    client = connect(double, api_version=10)
    snapshot = LookupSnapshot.load(client)
    (raw,) = client.get_documents([7])
    with pytest.raises(DocumentDataError, match="document 7 has an invalid"):
        render_document(raw, snapshot, source_id="home", base_url=double.url, link_titles={})
    light, _ = client.list_light()
    assert len(light_fingerprint(next(d for d in light if d["id"] == 7), snapshot)) == 32 + 64
