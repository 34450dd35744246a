"""The embedded local search index: one SQLite file with FTS5, the default sink.

One machine only. The Celery prefork children of one machine may write at once: the file is
in WAL mode, every `write`/`delete` is one `BEGIN IMMEDIATE` transaction and a writer waits
up to `BUSY_TIMEOUT_S` for another. Workers on several machines sharing the file over a
network file system are NOT supported (SQLite's locks do not hold there); use Omni then.

Durability: `synchronous=FULL`, so a commit fsyncs the WAL and a written page survives even
a power loss. The finalizer advances the checkpoint once every page is "durably in the
sink"; with NORMAL a power loss could drop the last pages after the checkpoint moved past
them, and an incremental run would never fetch them again. The price is one fsync per page
of documents (measured in bench/local_index_bench.py).

The text is stored once: `documents_fts` is an external-content FTS5 table over `documents`
(snippets read the text from there). Its `cjk` column holds the words with CJK characters,
every such character spaced apart (only for documents that have any), so CJK words are
found by exact substring (see `cjk_stretches` in `tasks/search_query.py`). Access rows,
tags and the folded classification names are plain tables and columns that the `search`
filters use.

Ranking: documents titled exactly as the query first, then bm25 with the title weighted
10x. bm25 costs microseconds per matching document, so a query matching more than
`BROAD_QUERY` documents lists title matches, then the rest, newest first (`_broad_ids`).
`optimize()` merges the FTS5 segments after a bulk load (5-13 s at 100,000 documents):
bench/local_index_bench.py stays within its targets without it and is up to twice as fast
with it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from tasks.document import IndexedDocument, Principals, document_key
from tasks.search_query import (
    ParsedQuery,
    cjk_stretches,
    fold,
    fts_match,
    parse_query,
    title_key,
    unspread_cjk,
)
from tasks.sinks.base import FileSource, RunInfo, StoredState

BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = 1
CHUNK = 500  # ids per IN list, well under SQLite's bound on variables
EXPORT_BATCH = 200
HIGHLIGHT = ("«", "»")  # around matched words in `SearchHit.snippet`
EXACT_TITLE_BOOST = 1000.0
# bm25 weights of the FTS columns title, text, keywords, cjk: a title word weighs most.
RANKING = "bm25(10.0, 1.0, 4.0, 1.0)"
TEXT_COLUMNS = "{title text keywords}"
BROAD_QUERY = 10_000  # matches beyond which bm25 ranking is too slow: see `_broad_ids`

# Every IndexedDocument field has a column of the same name; these hold JSON.
JSON_FIELDS = ("tags", "custom_fields", "notes", "access")
FIELDS = tuple(IndexedDocument.model_fields)

SCHEMA = [
    # Large columns last: reading a row's early columns then never walks overflow pages.
    """CREATE TABLE documents (
        id INTEGER PRIMARY KEY,
        source_id TEXT NOT NULL, doc_id INTEGER NOT NULL,
        fingerprint TEXT NOT NULL, light_fingerprint TEXT NOT NULL,
        title TEXT NOT NULL, title_key TEXT NOT NULL, is_public INTEGER NOT NULL,
        has_text INTEGER NOT NULL, created TEXT, added TEXT, modified TEXT,
        correspondent TEXT, correspondent_key TEXT, document_type TEXT, type_key TEXT,
        storage_path TEXT, tags TEXT NOT NULL, archive_serial_number INTEGER,
        original_file_name TEXT, archived_file_name TEXT, mime_type TEXT, page_count INTEGER,
        owner TEXT, url TEXT NOT NULL, access TEXT NOT NULL, custom_fields TEXT NOT NULL,
        notes TEXT NOT NULL, keywords TEXT NOT NULL, text TEXT NOT NULL, cjk TEXT NOT NULL,
        UNIQUE (source_id, doc_id))""",
    # Covers stored_states: a scan of it never reads the (large) document rows.
    """CREATE INDEX documents_states
        ON documents (source_id, doc_id, light_fingerprint, fingerprint)""",
    "CREATE INDEX documents_created ON documents (created)",
    "CREATE INDEX documents_title_key ON documents (title_key)",
    "CREATE INDEX documents_correspondent ON documents (correspondent_key)",
    "CREATE INDEX documents_type ON documents (type_key)",
    """CREATE VIRTUAL TABLE documents_fts USING fts5(
        title, text, keywords, cjk, content='documents', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    f"INSERT INTO documents_fts (documents_fts, rank) VALUES ('rank', '{RANKING}')",
    """CREATE TABLE doc_tags (source_id TEXT NOT NULL, doc_id INTEGER NOT NULL,
        tag_key TEXT NOT NULL, PRIMARY KEY (source_id, doc_id, tag_key)) WITHOUT ROWID""",
    "CREATE INDEX doc_tags_key ON doc_tags (tag_key)",
    """CREATE TABLE doc_users (source_id TEXT NOT NULL, doc_id INTEGER NOT NULL,
        email TEXT NOT NULL, PRIMARY KEY (source_id, doc_id, email)) WITHOUT ROWID""",
    """CREATE TABLE doc_groups (source_id TEXT NOT NULL, doc_id INTEGER NOT NULL,
        group_key TEXT NOT NULL, PRIMARY KEY (source_id, doc_id, group_key)) WITHOUT ROWID""",
    """CREATE TABLE principals (source_id TEXT NOT NULL, email TEXT NOT NULL,
        is_superuser INTEGER NOT NULL, groups TEXT NOT NULL,
        PRIMARY KEY (source_id, email)) WITHOUT ROWID""",
    "CREATE INDEX principals_email ON principals (email)",
]


class LocalIndexError(Exception):
    """The index file cannot be used; the message says what happened and what to do."""


class SearchHit(BaseModel):
    key: str
    source_id: str
    doc_id: int
    title: str
    snippet: str  # matched words between « and »
    correspondent: str | None = None
    document_type: str | None = None
    tags: list[str]
    created: str | None = None
    url: str
    score: float  # higher is better; an exact title match adds EXACT_TITLE_BOOST


class LocalIndex:
    name = "local"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inherited: list[sqlite3.Connection] = []

    # -- Sink -------------------------------------------------------------------------

    def stored_states(
        self, source_id: str, doc_ids: list[int] | None = None
    ) -> dict[int, StoredState]:
        sql = "SELECT doc_id, light_fingerprint, fingerprint FROM documents WHERE source_id = ?"
        states: dict[int, StoredState] = {}

        def take(cursor: sqlite3.Cursor) -> None:
            # Row by row from the cursor: a plan reads 100,000, never all rows at once.
            for row in cursor:
                states[row[0]] = StoredState(light_fingerprint=row[1], fingerprint=row[2])

        with self._read() as db:
            if doc_ids is None:
                take(db.execute(sql, (source_id,)))
            else:
                for chunk in _chunks(sorted(set(doc_ids))):
                    marks = ",".join("?" * len(chunk))
                    take(db.execute(f"{sql} AND doc_id IN ({marks})", (source_id, *chunk)))
        return states

    def write(
        self, run: RunInfo, docs: list[IndexedDocument], files: FileSource | None = None
    ) -> None:
        latest = {(doc.source_id, doc.doc_id): doc for doc in docs}  # a repeated id: last wins
        rows = {key: _document_row(doc) for key, doc in latest.items()}
        by_source: dict[str, list[int]] = {}
        for source_id, doc_id in latest:
            by_source.setdefault(source_id, []).append(doc_id)
        with self._transaction() as db:
            for source_id, doc_ids in by_source.items():
                # Keep a rewritten document's row id: results of broad queries list the
                # documents in row id order, the order they first reached the index.
                for chunk in _chunks(doc_ids):
                    marks = ",".join("?" * len(chunk))
                    for doc_id, rowid in db.execute(
                        "SELECT doc_id, id FROM documents "
                        f"WHERE source_id = ? AND doc_id IN ({marks})",
                        (source_id, *chunk),
                    ):
                        rows[(source_id, doc_id)]["id"] = rowid
                _remove(db, source_id, doc_ids)
            # Kept row ids go back first: a new row takes the highest row id + 1, which
            # may be the id of a kept row removed above (found by tests/test_model_check.py).
            order = sorted(latest, key=lambda key: rows[key]["id"] is None)
            _insert(db, [latest[key] for key in order], [rows[key] for key in order])

    def delete(self, run: RunInfo, doc_ids: list[int]) -> None:
        with self._transaction() as db:
            _remove(db, run.source_id, doc_ids)

    def record_principals(self, run: RunInfo, principals: Principals) -> None:
        users: dict[str, tuple[bool, set[str]]] = {}
        for user in principals.users:
            email = _email(user.email)
            was_super, groups = users.get(email, (False, set()))
            users[email] = (was_super or user.is_superuser, groups | set(user.groups))
        for group in principals.groups:
            for member in group.member_emails:
                users.setdefault(_email(member), (False, set()))[1].add(group.key)
        with self._transaction() as db:
            db.execute("DELETE FROM principals WHERE source_id = ?", (run.source_id,))
            db.executemany(
                "INSERT INTO principals VALUES (?, ?, ?, ?)",
                [
                    (run.source_id, email, int(is_super), json.dumps(sorted(groups)))
                    for email, (is_super, groups) in users.items()
                ],
            )

    def progress(self, run: RunInfo, scanned: int) -> None:
        """Nothing to report: the index has no one watching."""

    def close(self) -> None:
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- Search, export, maintenance -------------------------------------------------

    def search(
        self,
        query: str,
        *,
        source_id: str | None = None,
        as_email: str | None = None,
        limit: int = 10,
    ) -> list[SearchHit]:
        """The best `limit` documents for the query, as `as_email` may see them.

        Raises `tasks.search_query.QueryError` for a bad operator value.
        """
        parsed = parse_query(query)
        match = fts_match(parsed.terms, TEXT_COLUMNS, "cjk")
        if limit < 1 or not (match or parsed.has_filters):
            return []
        with self._read() as db:
            where, params = _filters(parsed, source_id)
            if as_email is not None:
                access, access_params = _access_filter(db, as_email)
                where.append(access)
                params.update(access_params)
            params.update(
                limit=limit,
                match=match,
                title_match=fts_match(parsed.terms, "title", "cjk"),
                title_key=parsed.text_key,
            )
            if match:
                return _ranked_hits(db, where, params)
            return _listed_hits(db, where, params)

    def export(self, source_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Every document as a JSON-able dict (`IndexedDocument` fields plus `key`).

        Ordered by source and id, read in batches, so memory stays bounded however large
        the index and however slow the consumer.
        """
        columns = ", ".join(FIELDS)
        scope = "source_id = :source AND " if source_id is not None else ""
        after: tuple[str, int] | None = None
        while True:
            bound = "(source_id, doc_id) > (:last_source, :last_id)" if after else "1"
            sql = (
                f"SELECT {columns} FROM documents WHERE {scope}{bound} "
                f"ORDER BY source_id, doc_id LIMIT {EXPORT_BATCH}"
            )
            params: dict[str, Any] = {"source": source_id, "last_source": None, "last_id": None}
            if after:
                params.update(last_source=after[0], last_id=after[1])
            with self._read() as db:
                rows = db.execute(sql, params).fetchall()
            for row in rows:
                yield _export_row(row)
            if len(rows) < EXPORT_BATCH:
                return
            after = (rows[-1]["source_id"], rows[-1]["doc_id"])

    def count(self, source_id: str | None = None) -> int:
        with self._read() as db:
            if source_id is None:
                row = db.execute("SELECT count(*) FROM documents").fetchone()
            else:
                sql = "SELECT count(*) FROM documents WHERE source_id = ?"
                row = db.execute(sql, (source_id,)).fetchone()
        return int(row[0])

    def remove_source(self, source_id: str) -> int:
        """Forget a source: its documents, their search and access rows, its principals."""
        with self._transaction() as db:
            removed = _remove(db, source_id, None)
            db.execute("DELETE FROM principals WHERE source_id = ?", (source_id,))
        return removed

    def optimize(self) -> None:
        """Merge the FTS5 segments and refresh the planner's statistics after bulk writes."""
        with self._transaction() as db:
            db.execute("INSERT INTO documents_fts(documents_fts) VALUES ('optimize')")
            db.execute("ANALYZE")

    # -- Connection ------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _after_fork(self) -> None:
        # A forked child (Celery prefork) must neither use its parent's connection nor
        # close it (a close may checkpoint the WAL under the parent): keep it, unused.
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn, self._pid, self._lock = None, os.getpid(), threading.RLock()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._error("could not be opened", exc) from exc
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA cache_size = -65536")  # 64 MiB of pages per connection
            db.execute("PRAGMA temp_store = MEMORY")
            _create_schema(db, self.path)
        except BaseException as exc:
            db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._error("could not be opened", exc) from exc
            raise
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._locked() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("could not be written", exc) from exc
            try:
                yield db
                db.execute("COMMIT")
            except BaseException as exc:
                _rollback(db)
                if isinstance(exc, sqlite3.Error):
                    raise self._error("could not be written", exc) from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._locked() as db:
            try:
                yield db
            except sqlite3.Error as exc:
                raise self._error("could not be read", exc) from exc

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            yield self._db()

    def _error(self, what: str, exc: BaseException) -> LocalIndexError:
        if "locked" in str(exc) or "busy" in str(exc):
            hint = f"another process held it for over {BUSY_TIMEOUT_S:.0f} s; retry later"
        else:
            hint = "check the disk space and the file's permissions, or delete it and resync"
        return LocalIndexError(f"the local index {self.path} {what} ({exc}); {hint}.")


# -- Writing ---------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # a lone surrogate (the stdlib writes it escaped)
        return json.dumps(value, ensure_ascii=False)


def _document_row(doc: IndexedDocument) -> dict[str, Any]:
    row: dict[str, Any] = doc.model_dump(mode="json")
    for name in JSON_FIELDS:
        row[name] = _json_text(row[name])
    row["has_text"] = int(doc.has_text)
    extras = [doc.correspondent, doc.document_type, doc.storage_path, doc.original_file_name]
    row["keywords"] = "\n".join([*doc.tags, *(value for value in extras if value)])
    searchable = f"{doc.title}\n{doc.text}\n{row['keywords']}"
    row["cjk"] = cjk_stretches(searchable)
    row["title_key"] = title_key(doc.title)
    row["correspondent_key"] = fold(doc.correspondent) if doc.correspondent else None
    row["type_key"] = fold(doc.document_type) if doc.document_type else None
    row["is_public"] = int(doc.access.public)
    row["id"] = None  # a new row id, unless the document is already in the index
    return row


_COLUMNS = (
    "id",
    *FIELDS,
    "keywords",
    "cjk",
    "title_key",
    "correspondent_key",
    "type_key",
    "is_public",
)
_INSERT = (
    f"INSERT INTO documents ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + name for name in _COLUMNS)})"
)


def _insert(
    db: sqlite3.Connection, docs: list[IndexedDocument], rows: list[dict[str, Any]]
) -> None:
    """Insert the documents with their search and access rows, a statement per table."""
    new = [row for row in rows if row["id"] is None]
    db.executemany(_INSERT, [row for row in rows if row["id"] is not None])
    if new:
        # Row ids come in order: the new rows take the ids after the highest one there is.
        first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM documents").fetchone()[0]
        for offset, row in enumerate(new):
            row["id"] = first + offset
        db.executemany(_INSERT, new)
    db.executemany(
        "INSERT INTO documents_fts (rowid, title, text, keywords, cjk) VALUES (?, ?, ?, ?, ?)",
        [(row["id"], row["title"], row["text"], row["keywords"], row["cjk"]) for row in rows],
    )
    db.executemany(
        "INSERT OR IGNORE INTO doc_tags VALUES (?, ?, ?)",
        [(doc.source_id, doc.doc_id, fold(tag)) for doc in docs for tag in doc.tags],
    )
    db.executemany(
        "INSERT OR IGNORE INTO doc_users VALUES (?, ?, ?)",
        [(doc.source_id, doc.doc_id, _email(user)) for doc in docs for user in doc.access.users],
    )
    db.executemany(
        "INSERT OR IGNORE INTO doc_groups VALUES (?, ?, ?)",
        [(doc.source_id, doc.doc_id, group) for doc in docs for group in doc.access.groups],
    )


def _remove(db: sqlite3.Connection, source_id: str, doc_ids: Sequence[int] | None) -> int:
    """Delete documents (all of the source's when `doc_ids` is None) with their rows."""
    chunks: list[Sequence[int] | None] = [None] if doc_ids is None else list(_chunks(doc_ids))
    removed = 0
    for chunk in chunks:
        scope, params = "source_id = ?", [source_id, *(chunk or ())]
        if chunk is not None:
            scope += f" AND doc_id IN ({','.join('?' * len(chunk))})"
        # External content: FTS5 forgets a row only when told its indexed values.
        db.execute(
            "INSERT INTO documents_fts (documents_fts, rowid, title, text, keywords, cjk) "
            f"SELECT 'delete', id, title, text, keywords, cjk FROM documents WHERE {scope}",
            params,
        )
        for table in ("doc_tags", "doc_users", "doc_groups"):
            db.execute(f"DELETE FROM {table} WHERE {scope}", params)
        removed += db.execute(f"DELETE FROM documents WHERE {scope}", params).rowcount
    return removed


def _create_schema(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise LocalIndexError(
            f"the local index {path} was written by a newer version of the connector; "
            "upgrade the connector or delete the file and resync."
        )
    db.execute("BEGIN IMMEDIATE")
    try:
        # Another process may have created it while this one waited for the lock.
        if db.execute("PRAGMA user_version").fetchone()[0] == 0:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise


def _rollback(db: sqlite3.Connection) -> None:
    """Undo an open transaction; a failure here must not hide the error that caused it."""
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


# -- Searching ---------------------------------------------------------------------------


def _filters(parsed: ParsedQuery, source_id: str | None) -> tuple[list[str], dict[str, Any]]:
    where: list[str] = []
    params: dict[str, Any] = {}
    if source_id is not None:
        where.append("d.source_id = :source_id")
        params["source_id"] = source_id
    for i, tag in enumerate(parsed.tags):
        where.append(
            "EXISTS (SELECT 1 FROM doc_tags t WHERE t.source_id = d.source_id "
            f"AND t.doc_id = d.doc_id AND t.tag_key = :tag{i})"
        )
        params[f"tag{i}"] = tag
    for i, name in enumerate(parsed.correspondents):
        where.append(f"d.correspondent_key = :correspondent{i}")
        params[f"correspondent{i}"] = name
    for i, name in enumerate(parsed.document_types):
        where.append(f"d.type_key = :type{i}")
        params[f"type{i}"] = name
    for i, period in enumerate(parsed.created):
        if period.start is not None:
            where.append(f"d.created >= :created_from{i}")
            params[f"created_from{i}"] = period.start
        if period.end is not None:
            where.append(f"d.created < :created_before{i}")
            params[f"created_before{i}"] = period.end
    return where, params


def _access_filter(db: sqlite3.Connection, as_email: str) -> tuple[str, dict[str, Any]]:
    """Public documents, those shared with the user or their groups, all for a superuser."""
    email = _email(as_email)
    rows = db.execute(
        "SELECT source_id, is_superuser, groups FROM principals WHERE email = ?", (email,)
    ).fetchall()
    groups = sorted({key for row in rows for key in json.loads(row["groups"])})
    admin_of = [row["source_id"] for row in rows if row["is_superuser"]]
    allowed = [
        "d.is_public = 1",
        "EXISTS (SELECT 1 FROM doc_users u WHERE u.source_id = d.source_id "
        "AND u.doc_id = d.doc_id AND u.email = :as_email)",
    ]
    if groups:
        allowed.append(
            "EXISTS (SELECT 1 FROM doc_groups g WHERE g.source_id = d.source_id "
            "AND g.doc_id = d.doc_id AND g.group_key IN (SELECT value FROM json_each(:as_groups)))"
        )
    if admin_of:
        allowed.append("d.source_id IN (SELECT value FROM json_each(:as_admin_of))")
    params = {
        "as_email": email,
        "as_groups": json.dumps(groups),
        "as_admin_of": json.dumps(admin_of),
    }
    return "(" + " OR ".join(allowed) + ")", params


_HIT_COLUMNS = (
    "d.id, d.source_id, d.doc_id, d.title, d.correspondent, d.document_type, d.tags, "
    "d.created, d.url"
)


def _ranked_hits(
    db: sqlite3.Connection, where: list[str], params: dict[str, Any]
) -> list[SearchHit]:
    """Exact-title matches, then the best by bm25; for a broad query, see `_broad_ids`."""
    # A document titled exactly as the query holds every term in its title, so it matches;
    # the title_key index finds it without the full-text index.
    exact = _ids(
        db,
        "SELECT d.id, NULL FROM documents d WHERE "
        + " AND ".join(["d.title_key = :title_key", *where])
        + " ORDER BY d.created DESC LIMIT :limit",
        params,
    )
    params = {**params, "fetch": params["limit"] + len(exact)}
    if _is_broad(db, params["match"]):
        ranked = _broad_ids(db, where, params)
    else:
        # FTS5 hands rows over in rank order (CROSS JOIN keeps it the outer loop), so the
        # filters stop after `limit` passing rows instead of looking up every match.
        ranked = _ids(db, _fts_join(where, "documents_fts.rank", ":match"), params)
    scores = {rowid: EXACT_TITLE_BOOST for rowid in exact}
    for rowid, rank in ranked.items():
        scores[rowid] = scores.get(rowid, 0.0) + (-rank if rank is not None else 0.0)
    hits = []
    for rowid in [*exact, *(rowid for rowid in ranked if rowid not in exact)][: params["limit"]]:
        # snippet() only for the winners: it is the costly part.
        snippet = db.execute(
            f"SELECT snippet(documents_fts, -1, '{HIGHLIGHT[0]}', '{HIGHLIGHT[1]}', '…', 24) "
            "FROM documents_fts WHERE documents_fts MATCH :match AND rowid = :id",
            {"match": params["match"], "id": rowid},
        ).fetchone()[0]
        hits.append(_hit(db, rowid, " ".join(unspread_cjk(snippet).split()), scores[rowid]))
    return hits


def _is_broad(db: sqlite3.Connection, match: str) -> bool:
    """More than BROAD_QUERY matches? Counting stops there, so this stays cheap."""
    probe = db.execute(
        "SELECT rowid FROM documents_fts WHERE documents_fts MATCH ? "
        "ORDER BY rowid LIMIT 1 OFFSET ?",
        (match, BROAD_QUERY),
    )
    return probe.fetchone() is not None


def _broad_ids(
    db: sqlite3.Connection, where: list[str], params: dict[str, Any]
) -> dict[int, float | None]:
    """For a query most documents match: title matches, then the rest, newest first.

    bm25 costs a few microseconds per matching document, too slow for words found in tens
    of thousands of them; and such words say little about relevance anyway (their inverse
    document frequency is near zero). Walking the index in row id order stops early.
    """
    newest_first = "documents_fts.rowid DESC"
    found = _ids(db, _fts_join(where, newest_first, ":title_match", ranked=False), params)
    if len(found) < params["fetch"]:
        rest = _fts_join(where, newest_first, ":match", ranked=False)
        found.update(_ids(db, rest, {**params, "fetch": params["fetch"] * 2}))
    return found


def _fts_join(where: list[str], order: str, match: str, *, ranked: bool = True) -> str:
    rank = "documents_fts.rank" if ranked else "NULL"  # rank runs bm25: not when unused
    return (
        f"SELECT d.id, {rank} FROM documents_fts "
        "CROSS JOIN documents d ON d.id = documents_fts.rowid WHERE "
        + " AND ".join([f"documents_fts MATCH {match}", *where])
        + f" ORDER BY {order} LIMIT :fetch"
    )


def _ids(db: sqlite3.Connection, sql: str, params: dict[str, Any]) -> dict[int, float | None]:
    return {row[0]: row[1] for row in db.execute(sql, params)}


def _listed_hits(
    db: sqlite3.Connection, where: list[str], params: dict[str, Any]
) -> list[SearchHit]:
    ids = db.execute(
        f"SELECT d.id FROM documents d WHERE {' AND '.join(where)} "
        "ORDER BY d.created DESC, d.id DESC LIMIT :limit",
        params,
    ).fetchall()
    hits = []
    for (rowid,) in ids:
        start = db.execute("SELECT substr(text, 1, 600) FROM documents WHERE id = ?", (rowid,))
        words = start.fetchone()[0].split()
        snippet = " ".join(words[:30]) + (" …" if len(words) > 30 else "")
        hits.append(_hit(db, rowid, snippet, 0.0))
    return hits


def _hit(db: sqlite3.Connection, rowid: int, snippet: str, score: float) -> SearchHit:
    row = db.execute(f"SELECT {_HIT_COLUMNS} FROM documents d WHERE d.id = ?", (rowid,)).fetchone()
    return SearchHit(
        key=document_key(row["source_id"], row["doc_id"]),
        source_id=row["source_id"],
        doc_id=row["doc_id"],
        title=row["title"],
        snippet=snippet,
        correspondent=row["correspondent"],
        document_type=row["document_type"],
        tags=json.loads(row["tags"]),
        created=row["created"],
        url=row["url"],
        score=score,
    )


# -- Reading back ----------------------------------------------------------------------


def _export_row(row: sqlite3.Row) -> dict[str, Any]:
    record: dict[str, Any] = {"key": document_key(row["source_id"], row["doc_id"])}
    for name in FIELDS:
        value = row[name]
        record[name] = json.loads(value) if name in JSON_FIELDS else value
    record["has_text"] = bool(row["has_text"])
    return record


def _email(address: str) -> str:
    return address.strip().casefold()


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]
