"""Helpers of the randomized model check (tests/test_model_check.py, issue 8).

`Mutator` changes the Paperless-ngx double the way people and Paperless-ngx itself do,
one random mutation at a time, and says in one line what it did. `rendered_mismatches`
and `model_mismatches` compare the sink's export with the server's state: the first
against a fresh rendering with our own renderer, the second against the double's records
directly, so a bug shared by the pipeline and the renderer still shows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.paperless_double import PaperlessDouble
from tests.paperless_double.model import Document, Shares, User
from tests.paperless_double.serialise import document_content
from tests.support.worker import server_documents

OTHER_USERS = (2, 3, 4, 5)  # alice, bob, carol (no e-mail), dave
GROUPS = (1, 2)
NAME_PIECES = ("Neu", "Geändert", "Ärger", "重要", "Plan ✈️", "Büro & Haus", "Q3", "x")


class Mutator:
    """Random mutations of a double, each drawn from `rng` and described in one line."""

    def __init__(self, double: PaperlessDouble, rng: random.Random) -> None:
        self.double = double
        self.rng = rng
        self.serial = 0
        self.kinds: dict[str, Callable[[], str | None]] = {
            "edit_document": self.edit_document,
            "add_document": self.add_document,
            "delete_document": self.delete_document,
            "trash_document": self.trash_document,
            "restore_document": self.restore_document,
            "empty_trash": self.empty_trash,
            "add_note": self.add_note,
            "delete_note": self.delete_note,
            "set_permissions": self.set_permissions,
            "bulk_edit": self.bulk_edit,
            "rename": self.rename,
            "relabel_select_option": self.relabel_select_option,
            "add_version": self.add_version,
            "share_lookup": self.share_lookup,
        }
        # Edits and permission changes are what users do most; the rest now and then.
        self.weights = [6, 2, 1, 2, 1, 1, 2, 1, 4, 2, 3, 1, 1, 1]

    def mutate(self) -> str:
        """Apply one random mutation that fits the current state; its description."""
        while True:
            kind = self.rng.choices(list(self.kinds), self.weights)[0]
            described = self.kinds[kind]()
            if described is not None:
                return described

    # -- choosing ----------------------------------------------------------------------------

    def _live(self) -> list[Document]:
        docs = self.double.corpus.documents.values()
        return sorted((d for d in docs if d.deleted_at is None), key=lambda d: d.id)

    def _trashed(self) -> list[Document]:
        docs = self.double.corpus.documents.values()
        return sorted((d for d in docs if d.deleted_at is not None), key=lambda d: d.id)

    def _name(self) -> str:
        self.serial += 1
        return f"{self.rng.choice(NAME_PIECES)} {self.serial}"

    def _ids(self, kind: str) -> list[int]:
        return sorted(self.double.corpus.lookups[kind])

    def _maybe(self, kind: str) -> int | None:
        return self.rng.choice([None, *self._ids(kind)])

    def _tags(self) -> list[int]:
        return self.rng.sample(self._ids("tags"), k=self.rng.choice([0, 1, 2, 3]))

    def _field_value(self, field_id: int) -> Any:
        field = self.double.corpus.lookups["custom_fields"][field_id]
        kind, rng = field.attrs["data_type"], self.rng
        if rng.random() < 0.1:
            return None  # an instance without a value
        if kind == "select":
            return rng.choice(field.attrs["extra_data"]["select_options"])["id"]
        if kind == "monetary":
            amount = f"{rng.uniform(0, 5000):.2f}"
            return rng.choice([f"EUR{amount}", f"USD{amount}", amount])
        if kind == "documentlink":
            ids = [d.id for d in self._live()] + list(self.double.corpus.documents)
            return sorted(set(rng.sample(ids, k=rng.randint(0, 3))))
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "integer":
            return rng.choice([0, -7, rng.randint(1, 99999)])
        if kind == "float":
            return rng.choice([0.0, 7.0, 19.5])
        if kind == "date":
            return f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if kind == "url":
            return f"https://example.com/{self.serial}"
        return f"Wert {self._name()}"  # string, longtext

    def _custom_fields(self) -> list[tuple[int, Any]]:
        chosen = self.rng.sample(self._ids("custom_fields"), k=self.rng.choice([0, 1, 2, 4]))
        return [(fid, self._field_value(fid)) for fid in sorted(chosen)]

    def _shares(self) -> dict[str, Any]:
        rng = self.rng

        def some(pool: tuple[int, ...]) -> list[int]:
            return sorted(rng.sample(pool, k=rng.choice([0, 0, 1, 2])))

        return {
            "owner": rng.choice([None, None, 1, 2, 2, 3, 4, 5]),
            "view_users": some(OTHER_USERS),
            "view_groups": some(GROUPS),
            "change_users": some(OTHER_USERS),
            "change_groups": some(GROUPS),
        }

    # -- mutations -----------------------------------------------------------------------------

    def edit_document(self) -> str:
        doc = self.rng.choice(self._live())
        editors: dict[str, Callable[[], Any]] = {
            "title": lambda: f"Titel {self._name()}",
            "content": lambda: f"Neuer Text {self._name()}\nZweite Zeile.",
            "tags": self._tags,
            "correspondent": lambda: self._maybe("correspondents"),
            "document_type": lambda: self._maybe("document_types"),
            "storage_path": lambda: self._maybe("storage_paths"),
            "custom_fields": self._custom_fields,
            "archive_serial_number": lambda: self.rng.choice([None, 500_000 + self.serial]),
        }
        names = self.rng.sample(sorted(editors), k=self.rng.randint(1, 3))
        changes = {name: editors[name]() for name in names}
        self.double.edit_document(doc.id, **changes)
        return f"edit_document({doc.id}, {changes})"

    def add_document(self) -> str:
        fields: dict[str, Any] = {
            "content": f"Frisch gescannt {self._name()}",
            "tags": self._tags(),
            "correspondent": self._maybe("correspondents"),
            "custom_fields": self._custom_fields(),
        }
        if self.rng.random() < 0.6:
            fields.update(self._shares())
        title = f"Neues Dokument {self._name()}"
        doc = self.double.add_document(title, **fields)
        return f"add_document({doc.id}, {title!r}, {fields})"

    def delete_document(self) -> str:
        doc = self.rng.choice(self._live() + self._trashed())
        self.double.delete_document(doc.id)
        return f"delete_document({doc.id})"

    def trash_document(self) -> str:
        doc = self.rng.choice(self._live())
        self.double.trash_document(doc.id)
        return f"trash_document({doc.id})"

    def restore_document(self) -> str | None:
        trashed = self._trashed()
        if not trashed:
            return None
        doc = self.rng.choice(trashed)
        self.double.restore_document(doc.id)
        return f"restore_document({doc.id})"

    def empty_trash(self) -> str | None:
        if not self._trashed():
            return None
        return f"empty_trash() -> {self.double.empty_trash()}"

    def add_note(self) -> str:
        doc = self.rng.choice(self._live())
        author = self.rng.choice(["admin", "alice", "bob", "carol"])
        text = f"Notiz {self._name()}"
        note_id = self.double.add_note(doc.id, author, text)
        return f"add_note({doc.id}, {author}, {text!r}) -> {note_id}"

    def delete_note(self) -> str | None:
        noted = [d for d in self._live() if d.notes]
        if not noted:
            return None
        doc = self.rng.choice(noted)
        note = self.rng.choice(doc.notes)
        self.double.delete_note(doc.id, note.id)
        return f"delete_note({doc.id}, {note.id})"

    def set_permissions(self) -> str:
        docs = self.rng.sample(self._live(), k=self.rng.randint(1, 4))
        ids = [d.id for d in docs]
        shares = self._shares()
        if self.rng.random() < 0.4:  # change only some of them, as the bulk dialog allows
            keep = self.rng.sample(sorted(shares), k=self.rng.randint(1, 3))
            shares = {key: shares[key] for key in keep}
        self.double.set_permissions(ids, **shares)
        return f"set_permissions({ids}, {shares})"

    def bulk_edit(self) -> str:
        ids = [d.id for d in self.rng.sample(self._live(), k=self.rng.randint(1, 6))]
        add = self._tags()
        # Not one tag both removed and added: the double would move it to the end of the list,
        # an order change real Paperless-ngx never shows (it lists a document's tags by name).
        changes: dict[str, Any] = {
            "add_tags": add,
            "remove_tags": [t for t in self._tags() if t not in add],
        }
        if self.rng.random() < 0.5:
            changes["correspondent"] = self._maybe("correspondents")
        self.double.bulk_edit(ids, **changes)
        return f"bulk_edit({ids}, {changes})"

    def rename(self) -> str:
        kind = self.rng.choice(
            ["tags", "correspondents", "document_types", "storage_paths", "custom_fields"]
        )
        obj_id = self.rng.choice(self._ids(kind))
        name = self._name()
        renamers = {
            "tags": self.double.rename_tag,
            "correspondents": self.double.rename_correspondent,
            "document_types": self.double.rename_document_type,
            "storage_paths": self.double.rename_storage_path,
            "custom_fields": self.double.rename_custom_field,
        }
        renamers[kind](obj_id, name)
        return f"rename {kind} {obj_id} to {name!r}"

    def relabel_select_option(self) -> str:
        fields = self.double.corpus.lookups["custom_fields"].values()
        selects = sorted(f.id for f in fields if f.attrs["data_type"] == "select")
        field_id = self.rng.choice(selects)
        options = self.double.corpus.lookups["custom_fields"][field_id].attrs["extra_data"]
        option = self.rng.choice(options["select_options"])["id"]
        label = f"Stufe {self._name()}"
        self.double.relabel_select_option(field_id, option, label)
        return f"relabel_select_option({field_id}, {option!r}, {label!r})"

    def add_version(self) -> str:
        doc = self.rng.choice(self._live())
        content = f"Version {self._name()} mit neuem Text"
        version = self.double.add_version(doc.id, content, label=self.rng.choice([None, "v2"]))
        return f"add_version({doc.id}) -> {version}"

    def share_lookup(self) -> str:
        """A tag, correspondent, type or path gets another owner: names appear or vanish."""
        kind = self.rng.choice(["tags", "correspondents", "document_types", "storage_paths"])
        obj_id = self.rng.choice(self._ids(kind))
        owner = self.rng.choice([None, None, 1, 2, 3])
        viewers = sorted(self.rng.sample(OTHER_USERS, k=self.rng.choice([0, 0, 1])))
        self.double.set_lookup_permissions(kind, obj_id, owner=owner, view_users=viewers)
        return f"set_lookup_permissions({kind}, {obj_id}, owner={owner}, view_users={viewers})"


# -- comparing ---------------------------------------------------------------------------------


def rendered_documents(double: PaperlessDouble, source_id: str, user: str) -> dict[int, dict]:
    """What the sink should hold, as JSON-able dicts to compare with the export."""
    documents = server_documents(double, source_id, user)
    return {doc_id: doc.model_dump(mode="json") for doc_id, doc in documents.items()}


def rendered_mismatches(exported: dict[int, dict], rendered: dict[int, dict]) -> list[str]:
    """Per document, which fields differ, with the most telling one's values.

    `text` and the fingerprints follow from the other fields: a differing plain field is
    shown before them.
    """
    problems = []
    for doc_id in sorted(set(exported) | set(rendered)):
        row, expected = exported.get(doc_id), rendered.get(doc_id)
        if row is None or expected is None:
            problems.append(f"doc {doc_id}: {'missing from' if row is None else 'extra in'} sink")
            continue
        differing = [name for name, value in expected.items() if row.get(name) != value]
        if not differing:
            continue
        derived = ("text", "fingerprint", "light_fingerprint")
        first = next((n for n in differing if n not in derived), differing[0])
        problems.append(
            f"doc {doc_id} fields {differing} differ; {first}: "
            f"sink {_short(row.get(first))} != server {_short(expected[first])}"
        )
    return problems


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:300] + "…"


def model_mismatches(
    double: PaperlessDouble, exported: dict[int, dict], source_id: str, username: str
) -> list[str]:
    """Checks of the export against the double's own records, not through our renderer."""
    from tasks.document import group_key

    problems: list[str] = []
    with double.lock:
        corpus = double.corpus
        user = corpus.user(username)
        for doc_id, row in sorted(exported.items()):
            doc = corpus.documents.get(doc_id)
            if doc is None or doc.deleted_at is not None or not doc.shares.visible_to(user):
                problems.append(f"doc {doc_id}: in the sink but not visible to {username}")
                continue

            def differ(what: str, held: Any, truth: Any, doc_id: int = doc_id) -> None:
                if held != truth:
                    problems.append(
                        f"doc {doc_id} {what}: sink {_short(held)} != server {_short(truth)}"
                    )

            differ("title", row["title"], doc.title)
            differ("tags", sorted(row["tags"]), sorted(_names(corpus, "tags", doc.tags, user)))
            differ(
                "correspondent",
                row["correspondent"],
                next(iter(_names(corpus, "correspondents", [doc.correspondent], user)), None),
            )
            differ("owner", row["owner"], _owner(corpus.users, doc.shares.owner, user))
            differ(
                "notes", sorted(n["text"] for n in row["notes"]), sorted(n.text for n in doc.notes)
            )
            content = document_content(doc, corpus.seed).strip()
            differ("content in text", content in row["text"], True)
            differ("custom fields", _field_names(row), _expected_fields(double, doc))
            _access_mismatches(
                differ, corpus.users, doc.shares, row["access"], user, source_id, group_key
            )
    return problems


def _names(corpus: Any, kind: str, ids: Any, user: User) -> list[str]:
    objects = corpus.lookups[kind]
    return [
        objects[i].name
        for i in ids
        if i is not None and i in objects and objects[i].shares.visible_to(user)
    ]


def _owner(users: dict[int, User], owner: int | None, viewer: User) -> str | None:
    if owner is None:
        return None
    email = users[owner].email if viewer.may_list("users") and owner in users else ""
    return email or f"user:{owner}"


def _field_names(row: dict) -> list[tuple[str, str]]:
    """The exported fields' names, with the shown value of select fields."""
    return sorted(
        (f["name"], f["value"] if f["data_type"] == "select" else "") for f in row["custom_fields"]
    )


def _expected_fields(double: PaperlessDouble, doc: Document) -> list[tuple[str, str]]:
    """The current names of the fields with a value, and the current labels of select values."""
    fields = double.corpus.lookups["custom_fields"]
    expected = []
    for field_id, value in doc.custom_fields:
        if value is None or value == "" or value == []:
            continue
        field = fields[field_id]
        if field.attrs["data_type"] != "select":
            expected.append((field.name, ""))
            continue
        options = field.attrs["extra_data"]["select_options"]
        expected += [(field.name, o["label"]) for o in options if o["id"] == value]
    return sorted(expected)


def _access_mismatches(
    differ: Callable[[str, Any, Any], None],
    users: dict[int, User],
    shares: Shares,
    access: dict,
    viewer: User,
    source_id: str,
    group_key: Callable[[str, int], str],
) -> None:
    differ("access.public", access["public"], shares.owner is None)
    if shares.owner is None:
        return
    shared_groups = {*shares.view_groups, *shares.change_groups}
    differ(
        "access.groups",
        sorted(access["groups"]),
        sorted(group_key(source_id, g) for g in shared_groups),
    )
    if not viewer.may_list("users"):
        return  # addresses cannot be known; the document stays private (checked above)
    principals = {shares.owner, *shares.view_users, *shares.change_users}
    principals |= {u.id for u in users.values() if u.is_superuser}
    emails = {users[uid].email for uid in principals if uid in users and users[uid].email}
    missing = sorted(emails - set(access["users"]))
    differ("access.users lacks addresses (listed as sink)", missing, [])


def pool_children(pid: int) -> list[int]:
    """Pids of the processes whose parent is `pid` (a prefork worker's pool)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children
