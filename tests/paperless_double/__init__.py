"""A Paperless-ngx 3.0.5 test double over real HTTP, and the seeded corpus generator.

    from tests.paperless_double import PaperlessDouble, generate_corpus

    corpus = generate_corpus(n_documents=300, seed=7)
    double = PaperlessDouble(corpus, api_versions={9, 10}, prefix="").start()
    double.url                 # "http://127.0.0.1:PORT" (+ prefix, e.g. "/paperless")
    double.token("alice")      # per-user API token; Basic auth: "<user>:<user>-password"
    double.faults.add(r"^/api/documents/$", status=503, times=2)
    double.faults.add(rate=0.3, statuses=[500, 502, 503, 429], retry_after=1, seed=3)
    double.faults.latency = 0.02
    double.faults.clear()
    double.log                 # [RequestRecord(method, path, query, user, status)], any method
    double.stop()

Users (ids): admin 1 (superuser), alice 2, bob 3, carol 4 (no e-mail), dave 5 (403 on
/api/custom_fields/); groups Buchhaltung 1 (alice, carol), Familie 2 (bob, carol).
Non-superusers get 403 on /api/users/ and /api/groups/.

What it serves (GET only; every other method is answered 405 and logged):
`/api/` (302 to the schema viewer), `/api/documents/` (filters `id__in`, `id`,
`modified__gt|gte|lt`, `added__gt|lt`, `tags__id__in`, `correspondent__id__in`,
`document_type__id__in`, `storage_path__id__in`, `owner__id__in`, `custom_fields__id__in`;
`ordering`, `fields`, `full_perms`), `/api/documents/{id}/`, `.../notes/`,
`.../download/` (`?original=true`), `/api/trash/`, and the lookups `/api/tags/`,
`/api/correspondents/`, `/api/document_types/`, `/api/storage_paths/`,
`/api/custom_fields/`, `/api/users/`, `/api/groups/` (lists and details).

Like the real server, `fields=` drops every field it does not name: with
`full_perms=true`, list `permissions` in `fields` to get it.

Mutations are Python calls on the double (see `double.py`), with the real rules for
`modified`; `double.clock` (`set`, `advance`, `unfreeze`) drives `modified` and the `Date`
header. Faults: `double.faults` (`add`, `set_latency`, `vanish`, `bad_document`, `clear`).
Command line: `python -m tests.paperless_double --documents N --seed S --port P`.
"""

from tests.paperless_double.corpus import Corpus, generate_corpus
from tests.paperless_double.double import PaperlessDouble
from tests.paperless_double.faults import BAD_DATA_KINDS, Faults
from tests.paperless_double.server import RequestRecord

__all__ = [
    "BAD_DATA_KINDS",
    "Corpus",
    "Faults",
    "PaperlessDouble",
    "RequestRecord",
    "generate_corpus",
]
