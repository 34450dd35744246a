"""The seeded corpus: a realistic small office's Paperless-ngx, in any size.

`generate_corpus(n_documents, seed)` is deterministic: the same arguments give the same
users, lookups and documents (texts come from `text.document_text`). Users: admin
(superuser), alice and bob (group members), carol (no e-mail), dave (may not read custom
fields). Groups "Buchhaltung" (alice, carol) and "Familie" (bob, carol).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.paperless_double.model import (
    LOOKUP_KINDS,
    Document,
    Group,
    LookupObject,
    Note,
    Shares,
    User,
)

EPOCH = datetime(2012, 1, 1, tzinfo=UTC)
LATEST = datetime(2025, 6, 30, tzinfo=UTC)  # every generated timestamp is before this


@dataclass
class Corpus:
    seed: int
    users: dict[int, User] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)
    lookups: dict[str, dict[int, LookupObject]] = field(
        default_factory=lambda: {kind: {} for kind in LOOKUP_KINDS}
    )
    documents: dict[int, Document] = field(default_factory=dict)
    next_note_id: int = 1
    next_version_id: int = 1_000_000

    def user(self, username: str) -> User:
        for user in self.users.values():
            if user.username == username:
                return user
        raise KeyError(f"no user {username!r} in the corpus")

    def next_id(self, kind: str) -> int:
        tables: dict[str, Mapping[int, object]] = {
            "documents": self.documents,
            "users": self.users,
            "groups": self.groups,
            **self.lookups,
        }
        return max(tables[kind], default=0) + 1


def make_token(seed: int, username: str) -> str:
    """40 hex digits like a DRF token, stable for (seed, username)."""
    return hashlib.sha1(f"paperless-double:{seed}:{username}".encode()).hexdigest()


BASE_PERMISSIONS = (
    "view_correspondent",
    "view_customfield",
    "view_document",
    "view_documenttype",
    "view_note",
    "view_storagepath",
    "view_tag",
)

TAGS = [  # id, name, color, owner, parent, inbox
    (1, "Inbox", "#ff0000", None, None, True),
    (2, "Rechnungen", "#1f78b4", None, None, False),
    (3, "Steuer", "#33a02c", None, None, False),
    (4, "Steuer 2023", "#b2df8a", None, 3, False),
    (5, "Steuer 2024", "#b2df8a", None, 3, False),
    (6, "Versicherung", "#fb9a99", None, None, False),
    (7, "Gesundheit ❤️", "#e31a1c", None, None, False),
    (8, "Auto 🚗", "#fdbf6f", None, None, False),
    (9, "Wohnung & Miete", "#ff7f00", None, None, False),
    (10, "Bank", "#cab2d6", None, None, False),
    (11, "Verträge", "#6a3d9a", None, None, False),
    (12, "Arbeit", "#ffff99", None, None, False),
    (13, "Garantie", "#b15928", None, None, False),
    (14, "領収書", "#a6cee3", None, None, False),
    (15, "Wichtig ⚠️", "#ff0000", None, None, False),
    (16, "Privat 🔒", "#777777", 1, None, False),  # owned by admin: alice cannot see it
]
CORRESPONDENTS = [
    (1, "Stadtwerke München", None),
    (2, "Allianz Versicherungs-AG", None),
    (3, "Finanzamt Köln-Süd", None),
    (4, "ACME Corp.", None),
    (5, "Dr. med. Jürgen Weiß", None),
    (6, "Société Générale", None),
    (7, "株式会社サンプル", None),
    (8, "Vermieter Schmidt (privat)", 2),  # owned by alice
]
DOCUMENT_TYPES = ["Rechnung / Invoice", "Vertrag", "Kontoauszug", "Brief", "Quittung"]
STORAGE_PATHS = [
    ("Finanzen", "finanzen/{{ created_year }}/{{ correspondent }}/{{ title }}"),
    ("Haus & Wohnung", "wohnung/{{ document_type }}/{{ title }}"),
    ("Archiv", "archiv/{{ created_year }}/{{ created_month }}/{{ title }}"),
]
SELECT_PRIORITY = [("HB1QjVI0UaKaj8I3", "Niedrig"), ("f6eIrJTLHv9QVO7k", "Mittel"),
                   ("Wwjx53RV5udRImjh", "Hoch"), ("VtCsgkSDj0FAEvqp", "Dringend ⚠️")]  # fmt: skip
SELECT_DEPARTMENT = [("dDr8B8i9eUlDePSN", "Buchhaltung"), ("8SVOkhiIGQLB8Et1", "Einkauf"),
                     ("o5LkWw1dKucwE4ha", "Personal"), ("9EKMmZabCQSVkqRa", "IT")]  # fmt: skip
CUSTOM_FIELDS = [  # id, name, data_type, extra_data
    (1, "Rechnungsnummer", "string", None),
    (2, "Kundenportal", "url", None),
    (3, "Fällig am", "date", None),
    (4, "Bezahlt", "boolean", None),
    (5, "Kundennummer", "integer", None),
    (6, "MwSt-Satz", "float", None),
    (7, "Betrag", "monetary", {"default_currency": "EUR"}),
    (8, "Verknüpfte Dokumente", "documentlink", None),
    (9, "Priorität", "select", SELECT_PRIORITY),
    (10, "Zusammenfassung", "longtext", None),
    (11, "Abteilung", "select", SELECT_DEPARTMENT),
]
TITLES = [
    "Rechnung {ref}",
    "Invoice {ref}",
    "Facture {ref}",
    "发票 {ref}",
    "Kontoauszug {m}",
    "Steuerbescheid {y}",
    "Mietvertrag {y}",
    "Warranty certificate SN-{ref}",
    "Arztbrief {m}",
    "領収書 {ref}",
    "Protokoll {m} 📝",
    "Versicherungspolice {ref}",
]
MIME = [
    ("application/pdf", ".pdf", 0.7),
    ("image/png", ".png", 0.1),
    ("image/jpeg", ".jpg", 0.1),
    ("text/plain", ".txt", 0.05),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx", 0.05),
]
NOTES = ["Original liegt im Ordner „Finanzen 2019“.", "À vérifier : TVA incorrecte ?",
         "Paid by bank transfer 👍", "已付款", "Bitte bis Ende des Monats klären!"]  # fmt: skip


def _users(seed: int) -> dict[int, User]:
    joined = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)
    rows = [  # id, username, email, first, last, superuser, groups, forbidden
        (1, "admin", "admin@example.com", "Admin", "Istrator", True, (), ()),
        (2, "alice", "alice@example.com", "Alice", "Müller", False, (1,), ()),
        (3, "bob", "bob@example.com", "Bob", "Ørsted", False, (2,), ()),
        (4, "carol", "", "Carol", "Dubois", False, (1, 2), ()),
        (5, "dave", "dave@example.com", "Dave", "", False, (), ("custom_fields",)),
    ]
    users = {}
    for uid, name, email, first, last, superuser, groups, forbidden in rows:
        users[uid] = User(
            id=uid,
            username=name,
            email=email,
            first_name=first,
            last_name=last,
            token=make_token(seed, name),
            password=f"{name}-password",
            is_superuser=superuser,
            groups=groups,
            forbidden=frozenset({"users", "groups", *forbidden}),
            date_joined=joined + timedelta(minutes=uid),
        )
    return users


def _lookups(corpus: Corpus) -> None:
    tags = corpus.lookups["tags"]
    for tid, name, color, owner, parent, inbox in TAGS:
        attrs = {"color": color, "parent": parent, "is_inbox_tag": inbox}
        tags[tid] = LookupObject("tags", tid, name, Shares(owner=owner), attrs)
    for cid, name, owner in CORRESPONDENTS:
        corpus.lookups["correspondents"][cid] = LookupObject(
            "correspondents", cid, name, Shares(owner=owner)
        )
    for i, name in enumerate(DOCUMENT_TYPES, start=1):
        corpus.lookups["document_types"][i] = LookupObject("document_types", i, name)
    for i, (name, path) in enumerate(STORAGE_PATHS, start=1):
        corpus.lookups["storage_paths"][i] = LookupObject(
            "storage_paths", i, name, attrs={"path": path}
        )
    for fid, name, data_type, extra in CUSTOM_FIELDS:
        extra_data: Any
        if data_type == "select":
            assert isinstance(extra, list)
            extra_data = {"select_options": [{"id": o, "label": label} for o, label in extra]}
        else:
            extra_data = extra if isinstance(extra, dict) else None
        corpus.lookups["custom_fields"][fid] = LookupObject(
            "custom_fields", fid, name, attrs={"data_type": data_type, "extra_data": extra_data}
        )


def _field_value(rng: random.Random, fid: int, doc_id: int, n: int) -> object:
    data_type = CUSTOM_FIELDS[fid - 1][2]
    if data_type == "string":
        return f"RE-{rng.randint(2012, 2025)}-{rng.randint(0, 99999):05d}"
    if data_type == "url":
        return rng.choice(
            ["https://www.stadtwerke-muenchen.de/", f"http://intranet.local/docs?id={doc_id}"]
        )
    if data_type == "date":
        return (EPOCH + timedelta(days=rng.randint(0, 4900))).date().isoformat()
    if data_type == "boolean":
        return rng.random() < 0.6
    if data_type == "integer":
        return rng.choice([rng.randint(1000, 99999), -5, 0, 2147483647])
    if data_type == "float":
        return rng.choice([7.0, 19.0, 2.5, 0.0])
    if data_type == "monetary":
        amount = f"{rng.uniform(1, 9999):.2f}"
        return rng.choice([f"EUR{amount}", f"USD{amount}", amount])
    if data_type == "documentlink":
        return sorted(rng.sample(range(1, n + 1), k=min(n, rng.randint(1, 3))))
    if data_type == "select":
        options = SELECT_PRIORITY if fid == 9 else SELECT_DEPARTMENT
        return rng.choice(options)[0]
    return "Zusammenfassung: " + rng.choice(NOTES) * rng.randint(1, 4)  # longtext


def _shares(rng: random.Random, owner: int | None) -> Shares:
    if owner is None or owner == 1 or rng.random() < 0.6:
        return Shares(owner=owner)
    others = tuple(u for u in (2, 3, 4, 5) if u != owner)
    roll = rng.random()
    if roll < 0.35:
        return Shares(owner=owner, view_users=(rng.choice(others),))
    if roll < 0.65:
        return Shares(owner=owner, view_groups=(rng.choice((1, 2)),))
    if roll < 0.85:
        return Shares(owner=owner, change_groups=(1,))
    return Shares(owner=owner, change_users=(rng.choice(others),), view_groups=(2,))


def _document(rng: random.Random, corpus: Corpus, doc_id: int, n: int) -> Document:
    added = EPOCH + timedelta(
        seconds=rng.randint(0, int((LATEST - EPOCH).total_seconds()) - 90 * 86400)
    )
    added = added.replace(microsecond=rng.randint(0, 999_999))
    created = (added - timedelta(days=rng.randint(0, 20))).date()
    modified = added + timedelta(seconds=rng.choice([0, 60, 3600, 86400 * rng.randint(1, 80)]))
    mime, ext = "application/pdf", ".pdf"
    roll, acc = rng.random(), 0.0
    for m, e, p in MIME:
        acc += p
        if roll < acc:
            mime, ext = m, e
            break
    ref = f"{rng.choice(['RE', 'INV', 'F'])}-{created.year}-{rng.randint(0, 99999):05d}"
    title = rng.choice(TITLES).format(ref=ref, y=created.year, m=created.strftime("%m/%Y"))
    owner = rng.choices([None, 1, 2, 3, 4], weights=[35, 25, 20, 15, 5])[0]
    tag_ids = tuple(rng.sample(range(1, 17), k=rng.choice([0, 1, 1, 2, 2, 3])))
    fields = tuple(
        (fid, _field_value(rng, fid, doc_id, n))
        for fid in sorted(rng.sample(range(1, 12), k=rng.choice([0, 0, 1, 2, 3, 5])))
    )
    notes: tuple[Note, ...] = ()
    if rng.random() < 0.2:
        notes = tuple(
            Note(
                id=corpus.next_note_id + i,
                text=rng.choice(NOTES),
                created=modified - timedelta(seconds=i + 1),
                user=rng.choice([1, 2, 3]),
            )
            for i in range(rng.randint(1, 3))
        )
        corpus.next_note_id += len(notes)
    archived = mime == "application/pdf" or (mime.startswith("image/") and rng.random() < 0.5)
    stamp = created.strftime("%Y%m%d")
    return Document(
        id=doc_id,
        title=title,
        created=created,
        modified=modified,
        added=added,
        correspondent=rng.choice([None, *range(1, 9)]),
        document_type=rng.choice([None, 1, 2, 3, 4, 5]),
        storage_path=rng.choice([None, None, 1, 2, 3]),
        tags=tag_ids,
        archive_serial_number=100_000 + doc_id if rng.random() < 0.4 else None,
        original_file_name=rng.choice(
            [f"IMG_{stamp}_{doc_id}{ext}", f"{title}{ext}", f"Scan_{doc_id:04d}{ext}"]
        ),
        archived_file_name=f"{created.isoformat()} {title}.pdf" if archived else None,
        shares=_shares(rng, owner),
        notes=notes,
        custom_fields=fields,
        page_count=None if mime == "text/plain" else rng.randint(1, 6),
        mime_type=mime,
        content="" if rng.random() < 0.03 else None,  # no OCR text for a few scans
    )


def generate_corpus(n_documents: int = 300, seed: int = 7) -> Corpus:
    """A deterministic corpus of `n_documents` documents (ids 1..n) with every lookup kind."""
    corpus = Corpus(seed=seed)
    corpus.users = _users(seed)
    corpus.groups = {1: Group(1, "Buchhaltung"), 2: Group(2, "Familie")}
    _lookups(corpus)
    rng = random.Random(seed)
    for doc_id in range(1, n_documents + 1):
        corpus.documents[doc_id] = _document(rng, corpus, doc_id, n_documents)
    return corpus
