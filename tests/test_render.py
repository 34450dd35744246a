"""Rendering a raw Paperless-ngx document into what the sinks store, across API versions."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tasks.document import group_key
from tasks.paperless.models import LIGHT_FIELDS
from tasks.render import (
    DocumentDataError,
    light_fingerprint,
    linked_ids,
    principals,
    render_document,
)
from tasks.snapshot import LookupSnapshot
from tests.support.render_samples import recorded_snapshot, sample

BASE = "https://paperless.example.com/archive"


def render(raw: dict[str, Any], snapshot: LookupSnapshot | None = None, **links: str):
    return render_document(
        raw,
        snapshot or recorded_snapshot(),
        source_id="home",
        base_url=BASE + "/",
        link_titles={int(k.lstrip("d")): v for k, v in links.items()},
    )


def light_of(raw: dict[str, Any]) -> dict[str, Any]:
    """What the cheap listing (fields=LIGHT_FIELDS,permissions) returns for the document."""
    return {k: copy.deepcopy(raw[k]) for k in (*LIGHT_FIELDS, "permissions") if k in raw}


# -- the searchable text -----------------------------------------------------------------


def test_recorded_document_renders_as_readable_markdown() -> None:
    raw = sample("document_full_90_full_perms.json")
    doc = render(raw, d25="Mietvertrag Schloßstraße")
    head, _, rest = doc.text.partition("\n\nMietvertrag über Wohnraum")
    assert head == (
        "# Steuerbescheid 2025\n\n"
        "Correspondent: Finanzamt Köln-Süd\n"
        "Tags: Gesundheit ❤️, Verträge\n"
        "ASN: 100089\n"
        "Created: 2014-12-20\n"
        "Kundenportal: http://intranet.local/docs?id=90\n"
        "Kundennummer: 2147483647\n"
        "MwSt-Satz: 7\n"
        "Betrag: USD 125.76\n"
        "Priorität: Mittel\n"
        "Verknüpfte Dokumente: Mietvertrag Schloßstraße, #77"
    )
    assert "Einspruch eingelegt werden." in rest
    assert rest.endswith(
        "## Notes\n\n"
        "- Admin Istrator (2017-05-30T00:11:54.752024Z): À vérifier : TVA incorrecte ?\n"
        "- Alice Müller (2019-07-14T07:30:03.817939Z): Original liegt im Ordner „Finanzen 2019“.\n"
    )
    assert doc.key == "paperless:home:90"
    assert doc.url == BASE + "/documents/90/details/"
    assert doc.created == "2014-12-20"
    assert doc.added == "2014-12-29T16:03:51.033955Z"
    assert doc.has_text is True


def test_recorded_document_with_versions_resolves_its_names() -> None:
    doc = render(sample("document_full_6_with_versions.json"))
    assert doc.correspondent == "株式会社サンプル"
    assert doc.document_type == "Vertrag"
    assert doc.storage_path == "Haus & Wohnung"
    assert "Storage path: Haus & Wohnung" in doc.text
    assert [(f.name, f.value) for f in doc.custom_fields] == [
        ("Rechnungsnummer", "RE-2016-96630"),
        ("Bezahlt", "yes"),
        ("Betrag", "GBP 0.50"),
    ]
    assert doc.modified == "2025-06-24T19:51:30Z"


def test_unknown_ids_are_left_out_but_the_document_still_renders() -> None:
    raw = {"id": 4, "title": "Brief", "tags": [7, 99], "correspondent": 404, "content": "x"}
    raw["custom_fields"] = [{"field": 77, "value": "secret"}, {"field": 4, "value": False}]
    doc = render(raw)
    assert doc.tags == ["Gesundheit ❤️"]
    assert doc.correspondent is None and "Correspondent:" not in doc.text
    assert [(f.name, f.value) for f in doc.custom_fields] == [("Bezahlt", "no")]
    assert "secret" not in doc.text


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        (7, "EUR12.50", "EUR 12.50"),
        (7, "12.50", "EUR 12.50"),  # plain amount: the field's default currency
        (7, "-3.00", "EUR -3.00"),
        (4, True, "yes"),
        (4, False, "no"),
        (3, "2025-03-08", "2025-03-08"),
        (5, -5, "-5"),
        (6, 19.25, "19.25"),
        (9, "VtCsgkSDj0FAEvqp", "Dringend ⚠️"),
        (8, [25, 77], "Vertrag 25, #77"),
        (10, "line one\nline two", "line one\nline two"),
    ],
)
def test_custom_field_values_are_readable(field: int, value: Any, shown: str) -> None:
    doc = render({"id": 1, "custom_fields": [{"field": field, "value": value}]}, d25="Vertrag 25")
    assert [f.value for f in doc.custom_fields] == [shown]


def test_plain_amount_without_default_currency_stays_plain() -> None:
    snapshot = recorded_snapshot()
    snapshot.custom_fields[7]["extra_data"] = {"default_currency": None}
    doc = render({"id": 1, "custom_fields": [{"field": 7, "value": "12.50"}]}, snapshot)
    assert doc.custom_fields[0].value == "12.50"


def test_null_custom_field_values_are_skipped() -> None:
    raw = {"id": 1, "custom_fields": [{"field": f, "value": None} for f in range(1, 12)]}
    doc = render(raw)
    assert doc.custom_fields == []
    assert doc.text == "# Document 1\n"


def test_select_option_deleted_since_is_skipped() -> None:
    doc = render({"id": 1, "custom_fields": [{"field": 9, "value": "gone"}]})
    assert doc.custom_fields == []


@pytest.mark.parametrize(
    ("field", "value"),
    [(3, "31.02.2025"), (4, "maybe"), (5, "five"), (7, "a lot"), (8, "25")],
)
def test_invalid_custom_field_values_are_data_errors(field: int, value: Any) -> None:
    with pytest.raises(DocumentDataError) as caught:
        render({"id": 12, "custom_fields": [{"field": field, "value": value}]})
    assert str(caught.value).startswith("document 12 has an invalid value")


def test_invalid_created_date_is_a_data_error_naming_document_and_field() -> None:
    with pytest.raises(DocumentDataError, match=r"document 8 has an invalid created"):
        render({"id": 8, "created": "not a date"})


def test_an_api7_document_renders_like_its_api10_twin() -> None:
    """Old select values (index into string options), note users as ids, created as time."""
    v10 = {
        "id": 2,
        "title": "Rechnung",
        "created": "2024-03-05",
        "notes": [{"id": 1, "note": "ok", "created": "2024-03-06T08:00:00Z", "user": {"id": 3}}],
        "custom_fields": [{"field": 9, "value": "Wwjx53RV5udRImjh"}],
    }
    v7 = copy.deepcopy(v10)
    v7["created"] = "2024-03-05T00:00:00+01:00"
    v7["notes"][0]["user"] = 3
    v7["custom_fields"][0]["value"] = 2
    old = recorded_snapshot()
    options = old.custom_fields[9]["extra_data"]["select_options"]
    old.custom_fields[9]["extra_data"]["select_options"] = [o["label"] for o in options]
    new_doc, old_doc = render(v10), render(v7, old)
    assert old_doc.created == new_doc.created == "2024-03-05"
    assert old_doc.custom_fields[0].value == new_doc.custom_fields[0].value == "Hoch"
    assert old_doc.notes[0].author == "Alice Müller"
    assert new_doc.notes[0].author == "Alice Müller"  # an object with the id only: resolved


def test_note_authors_fall_back_to_username_then_unknown_user() -> None:
    raw = {
        "id": 3,
        "notes": [
            {
                "note": "a",
                "created": "2024-01-01T10:00:00+01:00",
                "user": {"id": 9, "username": "zoe"},
            },
            {"note": "b", "created": "2024-01-01T10:00:00Z", "user": 4},
            {"note": "c", "created": "2024-01-01T10:00:00Z", "user": 42},
            {"note": "multi\nline", "created": "2024-01-01T10:00:00Z", "user": None},
        ],
    }
    doc = render(raw)
    assert [n.author for n in doc.notes] == ["zoe", "Bob Ørsted", "unknown user", "unknown user"]
    assert doc.notes[0].created == "2024-01-01T09:00:00Z"
    assert "- unknown user (2024-01-01T10:00:00Z): multi\n  line" in doc.text


def test_content_is_cleaned_but_never_truncated() -> None:
    big = ("Zeile mit Umlauten äöü und 😀 " * 40 + "\n") * 9000  # about 10 MB
    assert len(big.encode()) > 10_000_000
    doc = render({"id": 5, "title": "Groß", "content": "A\x00B\ud800C " + big + "ENDE"})
    assert "AB" + "C " in doc.text and "\x00" not in doc.text and "\ud800" not in doc.text
    assert doc.text.rstrip().endswith("ENDE")
    assert len(doc.text) > len(big)
    doc.model_dump_json()  # encodable: no lone surrogates left


@pytest.mark.parametrize(
    ("raw", "title"),
    [
        ({"id": 5, "title": "  ", "original_file_name": "scan_001.pdf"}, "scan_001.pdf"),
        ({"id": 5, "title": None}, "Document 5"),
        ({"id": 5}, "Document 5"),
    ],
)
def test_empty_title_falls_back(raw: dict[str, Any], title: str) -> None:
    doc = render(raw)
    assert doc.title == title and doc.text.startswith(f"# {title}\n")


def test_has_text_is_false_for_blank_content() -> None:
    assert render({"id": 1, "content": " \n\t "}).has_text is False
    assert render({"id": 1}).has_text is False


# -- access --------------------------------------------------------------------------------


def perms(view_users=(), view_groups=(), change_users=(), change_groups=()) -> dict:
    return {
        "view": {"users": list(view_users), "groups": list(view_groups)},
        "change": {"users": list(change_users), "groups": list(change_groups)},
    }


def test_unowned_document_is_public() -> None:
    doc = render({"id": 1, "owner": None, "permissions": perms()})
    assert doc.access.public is True and doc.access.users == [] and doc.owner is None


def test_owned_document_lists_owner_shares_and_superusers() -> None:
    doc = render({"id": 1, "owner": 3, "permissions": perms([4], [1], [], [2])})
    assert doc.access.public is False
    assert doc.owner == "alice@example.com"
    assert doc.access.users == ["admin@example.com", "alice@example.com", "bob@example.com"]
    assert doc.access.groups == [group_key("home", 1), group_key("home", 2)]
    assert doc.access.unresolved == []


def test_unknown_or_mailless_users_are_unresolved_never_public() -> None:
    snapshot = recorded_snapshot()
    snapshot.users[4]["email"] = ""
    doc = render({"id": 1, "owner": 5, "permissions": perms([4])}, snapshot)
    assert doc.access.public is False
    assert doc.owner == "user:5"
    assert doc.access.unresolved == ["user:4", "user:5"]
    assert doc.access.users == ["admin@example.com"]


def test_without_readable_users_an_owned_document_stays_private() -> None:
    snapshot = recorded_snapshot(forbidden=("users", "groups"))
    doc = render({"id": 1, "owner": 3, "permissions": perms([4], [1])}, snapshot)
    assert doc.access.public is False
    assert doc.access.users == []
    assert doc.access.unresolved == ["user:3", "user:4"]
    assert doc.access.groups == [group_key("home", 1)]


def test_without_full_perms_an_owned_document_is_owner_only() -> None:
    doc = render(sample("document_full_6_with_versions.json"))  # owner 2, no permissions
    assert doc.access.public is False
    assert doc.access.users == ["admin@example.com"] and doc.access.groups == []


# -- fingerprints --------------------------------------------------------------------------


def test_fingerprint_is_stable_and_follows_every_stored_change() -> None:
    raw = sample("document_full_90_full_perms.json")
    first = render(raw)
    assert render(copy.deepcopy(raw)).fingerprint == first.fingerprint
    edited = copy.deepcopy(raw)
    edited["content"] += " Nachtrag"
    assert render(edited).fingerprint != first.fingerprint
    assert render(edited).light_fingerprint == first.light_fingerprint
    assert render(raw, d25="Neuer Titel").fingerprint != first.fingerprint


def test_light_fingerprint_is_equal_from_full_document_and_listing_entry() -> None:
    for raw in [
        sample("document_full_90_full_perms.json"),
        {**sample("document_full_6_with_versions.json"), "permissions": perms([3], [1])},
    ]:
        snapshot = recorded_snapshot()
        assert light_fingerprint(raw, snapshot) == light_fingerprint(light_of(raw), snapshot)
        assert render(raw, snapshot).light_fingerprint == light_fingerprint(light_of(raw), snapshot)


def _light_after(change, raw=None) -> tuple[str, str]:
    raw = raw or {**sample("document_full_6_with_versions.json"), "permissions": perms([3])}
    raw["custom_fields"].append({"field": 9, "value": "HB1QjVI0UaKaj8I3"})
    raw["tags"] = [7]
    before = light_fingerprint(light_of(raw), recorded_snapshot())
    snapshot = recorded_snapshot()
    change(raw, snapshot)
    return before, light_fingerprint(light_of(raw), snapshot)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r, s: s.tags[7].update(name="Gesundheit"), id="tag renamed"),
        pytest.param(lambda r, s: s.correspondents[7].update(name="Sample KK"), id="corr renamed"),
        pytest.param(lambda r, s: s.document_types[2].update(name="Contract"), id="type renamed"),
        pytest.param(lambda r, s: s.storage_paths[2].update(name="Haus"), id="path renamed"),
        pytest.param(lambda r, s: s.custom_fields[4].update(name="Paid"), id="field renamed"),
        pytest.param(
            lambda r, s: s.custom_fields[9]["extra_data"]["select_options"][0].update(label="Low"),
            id="select option relabelled",
        ),
        pytest.param(lambda r, s: r.update(owner=3), id="owner changed"),
        pytest.param(lambda r, s: r["permissions"]["view"]["users"].append(4), id="shared"),
        pytest.param(lambda r, s: r["permissions"]["change"]["groups"].append(1), id="group"),
        pytest.param(lambda r, s: s.users[3].update(email="a@new.example"), id="email changed"),
        pytest.param(lambda r, s: s.users[4].update(is_superuser=True), id="new superuser"),
        pytest.param(lambda r, s: r.update(archive_serial_number=5), id="asn set"),
    ],
)
def test_light_fingerprint_notices_changes_that_do_not_bump_modified(change) -> None:
    before, after = _light_after(change)
    assert before != after


def test_light_fingerprint_ignores_what_the_listing_does_not_carry() -> None:
    before, after = _light_after(lambda r, s: r.update(content="neu", notes=[]))
    assert before == after


def test_light_fingerprint_never_raises_on_bad_data() -> None:
    snapshot = recorded_snapshot()
    bad = {"id": 1, "modified": "gestern", "custom_fields": [{"field": 3, "value": "x"}]}
    assert len(light_fingerprint(bad, snapshot)) == 32 + 64  # raw digest, then resolved
    odd = {"id": 1, "custom_fields": [{"field": 3, "value": "31.02.2025"}]}
    assert light_fingerprint(odd, snapshot) != light_fingerprint({"id": 1}, snapshot)


# -- principals and links ----------------------------------------------------------------


def test_principals_of_the_recorded_users_and_groups() -> None:
    snapshot = recorded_snapshot()
    snapshot.users[5] = {"id": 5, "username": "scanner", "email": "", "groups": [1]}
    found = principals(snapshot, "home")
    assert [(u.email, u.is_superuser) for u in found.users] == [
        ("admin@example.com", True),
        ("alice@example.com", False),
        ("bob@example.com", False),
    ]
    assert found.users[1].groups == [group_key("home", 1)]
    assert [(g.key, g.name, g.member_emails) for g in found.groups] == [
        (group_key("home", 1), "accounting", ["alice@example.com"])
    ]
    assert found.complete is True


@pytest.mark.parametrize("forbidden", [("users",), ("groups",)])
def test_principals_are_incomplete_when_users_or_groups_are_unreadable(forbidden) -> None:
    assert principals(recorded_snapshot(forbidden), "home").complete is False


def test_linked_ids_come_from_documentlink_fields_only() -> None:
    raw = sample("document_full_90_full_perms.json")
    raw["custom_fields"].append({"field": 5, "value": 12})
    assert linked_ids(raw, recorded_snapshot()) == {25, 77}
    assert linked_ids({"id": 1}, recorded_snapshot()) == set()
