"""Nobody finds a document Paperless-ngx would not show them: local index and Omni events.

For every user of the Paperless-ngx double, what `search --as` returns (and what Omni's
permissions would let them see) is compared with what the server itself shows that user,
after a full sync and after share and owner changes that leave `modified` alone. With a
non-superuser's token (no access to users and groups) nothing may become wider than it is.
"""

from __future__ import annotations

from typing import Any

from tasks.trigger import trigger_sync
from tests.omni_double import FakeManager
from tests.paperless_double import PaperlessDouble
from tests.support.omni import ServeProcess, omni_manager  # noqa: F401  (fixture)
from tests.support.redis_server import free_port
from tests.support.worker import SyncEnv

EVERYTHING = "created:>1900-01-01"  # a filter every document passes


def server_view(double: PaperlessDouble, username: str) -> set[int]:
    return {int(doc["id"]) for doc in double.visible_documents(username)}


def index_view(env: SyncEnv, source: str, email: str) -> set[int]:
    hits = env.index().search(EVERYTHING, source_id=source, as_email=email, limit=100_000)
    return {hit.doc_id for hit in hits}


def users_with_email(double: PaperlessDouble) -> dict[str, str]:
    return {u.username: u.email for u in double.corpus.users.values() if u.email}


def public_ids(double: PaperlessDouble) -> set[int]:
    return {
        doc_id
        for doc_id, doc in double.corpus.documents.items()
        if doc.shares.owner is None and doc.deleted_at is None
    }


def test_search_as_each_user_shows_exactly_what_paperless_shows_them(
    shared_sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    env = shared_sync_env
    env.add_source("perms", paperless)
    assert env.wait(trigger_sync("perms", "full").run_id).state == "completed"
    users = users_with_email(paperless)
    assert {"admin", "alice", "bob"} <= set(users)

    for username, email in users.items():
        assert index_view(env, "perms", email) == server_view(paperless, username), username
    assert index_view(env, "perms", "stranger@example.com") == public_ids(paperless)

    # Shares and owners change without touching `modified`; one incremental run later the
    # index shows the new truth, in both directions (granted and revoked).
    alice, bob = paperless.corpus.user("alice").id, paperless.corpus.user("bob").id
    bobs = sorted(i for i, d in paperless.corpus.documents.items() if d.shares.owner == bob)
    publics = sorted(public_ids(paperless))
    paperless.set_permissions(bobs[:3], view_users=[alice])  # granted to alice
    paperless.set_permissions(publics[:2], owner=bob)  # no longer public
    paperless.set_permissions(bobs[3:4], owner=None)  # made public
    assert env.wait(trigger_sync("perms", "incremental").run_id).state == "completed"

    for username, email in users.items():
        assert index_view(env, "perms", email) == server_view(paperless, username), username
    assert index_view(env, "perms", "stranger@example.com") == public_ids(paperless)


def test_a_token_that_cannot_read_users_never_widens_access(
    shared_sync_env: SyncEnv, paperless: PaperlessDouble
) -> None:
    env = shared_sync_env
    env.add_source("alice-view", paperless, user="alice")
    done = env.wait(trigger_sync("alice-view", "full").run_id)
    assert done.state == "completed", done.error
    assert any("user" in note for note in done.degraded)  # reported, not silent

    exported = {row["doc_id"]: row for row in env.index().export("alice-view")}
    assert set(exported) == server_view(paperless, "alice")
    for doc_id, row in exported.items():
        owner = paperless.corpus.documents[doc_id].shares.owner
        assert row["access"]["public"] == (owner is None), doc_id

    for username, email in users_with_email(paperless).items():
        assert index_view(env, "alice-view", email) <= server_view(paperless, username), username
    assert index_view(env, "alice-view", "stranger@example.com") == public_ids(
        paperless
    ) & server_view(paperless, "alice")


def omni_view(held: dict[str, dict[str, Any]], groups: dict[str, Any], email: str) -> set[int]:
    member_of = {key for key, event in groups.items() if email in event["member_emails"]}
    seen = set()
    for document_id, event in held.items():
        permissions = event["permissions"]
        if (
            permissions["public"]
            or email in permissions["users"]
            or member_of & set(permissions["groups"])
        ):
            seen.add(int(document_id.rsplit(":", 1)[1]))
    return seen


def test_omni_events_let_each_user_see_exactly_what_paperless_shows_them(
    sync_env: SyncEnv,
    paperless: PaperlessDouble,
    omni_manager: FakeManager,  # noqa: F811
) -> None:
    omni_manager.add_source("omni-perms", paperless.url, paperless.token("admin"))
    sync_env.start_worker(connector_manager_url=omni_manager.url)
    env = {**sync_env.env, "CONNECTOR_MANAGER_URL": omni_manager.url}
    serve = ServeProcess(env, free_port(), sync_env.data_dir / "serve.log").start()
    try:
        run_id, response = omni_manager.start_sync(serve.url, "omni-perms", "full")
        assert response.status_code == 200
        assert sync_env.wait(run_id).state == "completed"
    finally:
        serve.stop()

    held = omni_manager.documents("omni-perms")
    groups = omni_manager.groups("omni-perms")
    assert groups  # Paperless-ngx groups reached Omni as group_membership_sync events
    for username, email in users_with_email(paperless).items():
        assert omni_view(held, groups, email) == server_view(paperless, username), username
    assert omni_view(held, groups, "stranger@example.com") == public_ids(paperless)
