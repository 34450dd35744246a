"""The API models read every supported API version (7 to 10) and reject bad data clearly."""

from __future__ import annotations

import pytest

from tasks.paperless.errors import AuthenticationError
from tasks.paperless.models import (
    CustomField,
    DocumentDataError,
    NoteUser,
    parse_document,
    utc_rfc3339,
)
from tasks.snapshot import LookupSnapshot
from tests.support.render_samples import RecordedLookups, recorded_snapshot, sample


def test_recorded_full_document_parses_with_permissions_and_notes() -> None:
    doc = parse_document(sample("document_full_90_full_perms.json"))
    assert doc.id == 90
    assert doc.created == "2014-12-20"
    assert doc.tags == [7, 11]
    assert doc.archive_serial_number == 100089
    assert doc.permissions is not None and doc.permissions.view.users == []
    assert doc.notes[0].note == "À vérifier : TVA incorrecte ?"
    assert isinstance(doc.notes[0].user, NoteUser) and doc.notes[0].user.username == "admin"
    assert {cf.field for cf in doc.custom_fields} == {2, 5, 6, 7, 8, 9}


def test_without_full_perms_permissions_are_absent() -> None:
    doc = parse_document(sample("document_full_90.json"))
    assert doc.permissions is None


@pytest.mark.parametrize("listing", ["documents_list_v9.json", "documents_list_v10.json"])
def test_every_document_of_a_recorded_listing_parses(listing: str) -> None:
    results = sample(listing)["results"]
    docs = [parse_document(raw) for raw in results]
    assert [d.id for d in docs] == [raw["id"] for raw in results]
    assert all(d.created and len(d.created) == 10 for d in docs)


def test_trash_listing_parses() -> None:
    assert all(parse_document(raw).id for raw in sample("trash.json")["results"])


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        ("2014-12-20", "2014-12-20"),  # API 9 and 10: a date
        ("2014-12-20T00:00:00+01:00", "2014-12-20"),  # API 7 and 8: date-time, server zone
        ("2014-12-20T23:30:00-05:00", "2014-12-20"),  # the server's calendar day, not UTC's
        ("2014-12-20T10:00:00Z", "2014-12-20"),
        (None, None),
    ],
)
def test_created_becomes_a_date_in_every_version(created: str | None, expected: str | None) -> None:
    assert parse_document({"id": 1, "created": created}).created == expected


def test_note_user_as_object_or_bare_id() -> None:
    doc = parse_document(
        {
            "id": 3,
            "notes": [
                {"id": 1, "note": "v8+", "created": "2024-01-02T03:04:05Z", "user": {"id": 2}},
                {"id": 2, "note": "v7", "created": "2024-01-02T03:04:05Z", "user": 4},
                {"id": 3, "note": "gone", "created": "2024-01-02T03:04:05Z", "user": None},
            ],
        }
    )
    assert isinstance(doc.notes[0].user, NoteUser) and doc.notes[0].user.id == 2
    assert doc.notes[1].user == 4
    assert doc.notes[2].user is None


def test_light_listing_entry_parses_with_defaults_and_ignores_unknown_fields() -> None:
    doc = parse_document({"id": 7, "modified": "2024-05-01T10:00:00Z", "brand_new_field": 1})
    assert doc.tags == [] and doc.custom_fields == [] and doc.notes == []
    assert doc.content is None and doc.owner is None and doc.permissions is None


def test_select_label_by_option_id_and_by_old_index() -> None:
    new = CustomField.model_validate(sample("custom_fields.json")["results"][0])
    assert new.select_label("o5LkWw1dKucwE4ha") == "Personal"
    assert new.select_label("no-such-option") is None
    old = CustomField(
        id=1, name="Abteilung", data_type="select", extra_data={"select_options": ["A", "B"]}
    )
    assert old.select_label(1) == "B"
    assert old.select_label(5) is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"id": 5, "created": "20.12.2014"}, "created"),
        ({"id": 5, "modified": "yesterday"}, "modified"),
        ({"id": 5, "tags": "inbox"}, "tags"),
        ({"id": 5, "owner": "alice"}, "owner"),
        ({"id": 5, "custom_fields": [{"value": 1}]}, "custom_fields.0.field"),
    ],
)
def test_invalid_data_names_the_document_and_the_field(raw: dict, field: str) -> None:
    with pytest.raises(DocumentDataError) as caught:
        parse_document(raw)
    message = str(caught.value)
    assert message.startswith("document 5 has an invalid ")
    assert field in message
    assert "\n" not in message


def test_a_document_that_is_not_an_object_is_a_data_error() -> None:
    with pytest.raises(DocumentDataError, match="not a JSON object"):
        parse_document(["id", 5])  # type: ignore[arg-type]


def test_utc_rfc3339_always_carries_a_zone() -> None:
    doc = parse_document(
        {"id": 1, "modified": "2024-05-01T12:00:00+02:00", "added": "2024-05-01T10:00:00"}
    )
    assert doc.modified is not None and doc.added is not None
    assert utc_rfc3339(doc.modified) == "2024-05-01T10:00:00Z"
    assert utc_rfc3339(doc.added) == "2024-05-01T10:00:00Z"


# -- the lookup snapshot -----------------------------------------------------------------


def test_snapshot_reads_all_seven_lookups_once() -> None:
    reader = RecordedLookups()
    snapshot = LookupSnapshot.load(reader)
    assert sorted(reader.asked) == sorted(
        [
            "tags",
            "correspondents",
            "document_types",
            "storage_paths",
            "custom_fields",
            "users",
            "groups",
        ]
    )
    assert snapshot.tags[7]["name"] == "Gesundheit ❤️"
    assert snapshot.users[3]["email"] == "alice@example.com"
    assert "password" not in snapshot.users[3]  # only what rendering needs is kept
    assert snapshot.degraded == []


def test_snapshot_survives_a_json_round_trip_with_int_keys() -> None:
    snapshot = recorded_snapshot()
    again = LookupSnapshot.model_validate_json(snapshot.model_dump_json())
    assert again == snapshot
    assert 7 in again.tags and 11 in again.custom_fields and 3 in again.users


@pytest.mark.parametrize(
    ("forbidden", "expected"),
    [
        (
            ("custom_fields",),
            "custom fields missing: the token's user may not read "
            "/api/custom_fields/; grant it view permission on custom fields",
        ),
        (("users",), "users (owners, shares and note authors) missing"),
        (("groups",), "groups (group shares) missing"),
        (("tags",), "tag names missing"),
    ],
)
def test_a_forbidden_lookup_degrades_instead_of_failing(
    forbidden: tuple[str, ...], expected: str
) -> None:
    snapshot = recorded_snapshot(forbidden)
    assert getattr(snapshot, forbidden[0]) == {}
    assert len(snapshot.degraded) == 1 and snapshot.degraded[0].startswith(expected)
    assert snapshot.correspondents  # the others are still read


def test_a_bad_token_on_a_lookup_is_not_degraded_but_raised() -> None:
    class BadToken:
        def list_lookup(self, name: str) -> list[dict]:
            raise AuthenticationError("authentication failed: …", status=401)

    with pytest.raises(AuthenticationError):
        LookupSnapshot.load(BadToken())
