"""The light fingerprint beyond tests/test_render.py: precise about what it follows, and
never stale across snapshots even though it works names out once per snapshot."""

from __future__ import annotations

import copy
import gc
from typing import Any

from tasks.render import light_fingerprint
from tasks.snapshot import LookupSnapshot
from tests.support.render_samples import recorded_snapshot

SELECT, MONEY = 9, 7  # "Priorität" (select), "Betrag" (monetary, EUR by default)
MITTEL, HOCH = "f6eIrJTLHv9QVO7k", "Wwjx53RV5udRImjh"  # two of Priorität's options


def listed(**fields: Any) -> dict[str, Any]:
    """A light listing entry as /api/documents/?fields=…&full_perms=true sends it."""
    entry: dict[str, Any] = {
        "id": 41,
        "correspondent": 7,
        "document_type": 2,
        "storage_path": 2,
        "title": "Rechnung Mai",
        "tags": [7, 11],
        "modified": "2025-05-02T08:15:00.123456Z",
        "archive_serial_number": None,
        "owner": 3,
        "permissions": {
            "view": {"users": [4], "groups": []},
            "change": {"users": [], "groups": []},
        },
        "custom_fields": [{"value": MITTEL, "field": SELECT}, {"value": "12.50", "field": MONEY}],
    }
    entry.update(fields)
    return entry


def after(change, entry: dict[str, Any] | None = None) -> tuple[str, str]:
    """The fingerprint of one entry before and after a change to a fresh snapshot."""
    entry = entry or listed()
    before = light_fingerprint(copy.deepcopy(entry), recorded_snapshot())
    snapshot = recorded_snapshot()
    change(snapshot)
    return before, light_fingerprint(entry, snapshot)


def option(snapshot: LookupSnapshot, option_id: str) -> dict[str, Any]:
    options = snapshot.custom_fields[SELECT]["extra_data"]["select_options"]
    return next(o for o in options if o["id"] == option_id)


def test_relabelling_the_chosen_option_changes_it_another_option_does_not() -> None:
    before, relabelled = after(lambda s: option(s, MITTEL).update(label="Normal"))
    assert before != relabelled
    before, other = after(lambda s: option(s, HOCH).update(label="Sehr hoch"))
    assert before == other


def test_a_new_default_currency_changes_documents_with_plain_amounts() -> None:
    before, now = after(
        lambda s: s.custom_fields[MONEY]["extra_data"].update(default_currency="CHF")
    )
    assert before != now


def test_counts_and_colours_of_lookups_do_not_matter() -> None:
    def recount(snapshot: LookupSnapshot) -> None:
        for table in (snapshot.tags, snapshot.correspondents, snapshot.custom_fields):
            for row in table.values():
                row["document_count"] = 12345
        for row in snapshot.tags.values():
            row["color"] = "#000000"

    before, now = after(recount)
    assert before == now


def test_an_e_mail_change_reaches_owned_and_shared_documents_only() -> None:
    def new_mail(snapshot: LookupSnapshot) -> None:
        snapshot.users[4]["email"] = "robert@example.com"

    shared = after(new_mail)  # shared with bob (4)
    assert shared[0] != shared[1]
    owned = after(new_mail, listed(owner=4, permissions=None))
    assert owned[0] != owned[1]
    unrelated = after(new_mail, listed(permissions=None))  # alice's alone
    assert unrelated[0] == unrelated[1]


def test_public_documents_ignore_superusers_and_shares() -> None:
    public = listed(owner=None)
    before, now = after(lambda s: s.users[4].update(is_superuser=True), public)
    assert before == now
    owned_before, owned_now = after(lambda s: s.users[4].update(is_superuser=True))
    assert owned_before != owned_now


def test_a_user_the_token_stops_seeing_changes_their_documents() -> None:
    before, now = after(lambda s: s.users.pop(4))
    assert before != now


def test_tag_order_is_not_a_change_but_a_new_tag_is() -> None:
    snapshot = recorded_snapshot()
    first = light_fingerprint(listed(tags=[7, 11]), snapshot)
    assert light_fingerprint(listed(tags=[11, 7]), snapshot) == first
    assert light_fingerprint(listed(tags=[7, 11, 1]), snapshot) != first


def test_an_unknown_id_differs_from_every_known_name() -> None:
    snapshot = recorded_snapshot()
    known = light_fingerprint(listed(correspondent=7), snapshot)
    assert light_fingerprint(listed(correspondent=999), snapshot) != known
    assert light_fingerprint(listed(correspondent=None), snapshot) != known


def test_odd_shapes_never_raise() -> None:
    snapshot = recorded_snapshot()
    odd = [
        listed(permissions="everyone"),
        listed(custom_fields=[42]),
        listed(custom_fields=[{"field": SELECT, "value": ["a", "list"]}]),
        listed(tags=[1, "2"]),
        listed(owner=[3]),
        {"id": 1},
    ]
    prints = [light_fingerprint(entry, snapshot) for entry in odd]
    assert all(len(p) == 32 + 64 for p in prints)  # raw digest, then resolved digest
    assert len(set(prints)) == len(prints)


def test_a_new_snapshot_is_never_answered_from_an_old_ones_names() -> None:
    entry = listed()
    first = recorded_snapshot()
    old = light_fingerprint(entry, first)
    del first
    gc.collect()  # a new snapshot may now reuse the old one's id()
    for _ in range(20):
        renamed = recorded_snapshot()
        renamed.tags[7]["name"] = "Umbenannt"
        assert light_fingerprint(entry, renamed) != old
