"""Fixtures for the Omni part: a running strict fake connector-manager."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tasks.document import Access, CustomFieldValue, IndexedDocument, Note
from tests.omni_double import FakeManager


@pytest.fixture
def omni_manager() -> Iterator[FakeManager]:
    """A fresh fake manager on a loopback port; fails the test if any request broke protocol."""
    with FakeManager() as fake:
        yield fake
        assert fake.violations == [], f"requests the manager would refuse: {fake.violations}"


def make_document(source_id: str, doc_id: int, **overrides: Any) -> IndexedDocument:
    """A rendered document as the pipeline would hand it to a sink."""
    values: dict[str, Any] = {
        "source_id": source_id,
        "doc_id": doc_id,
        "title": f"Invoice {doc_id}",
        "text": f"# Invoice {doc_id}\n\nTotal due: {doc_id * 10} EUR",
        "has_text": True,
        "correspondent": "ACME Corp",
        "document_type": "Invoice",
        "storage_path": "finance/invoices",
        "tags": ["Inbox", "Paid"],
        "archive_serial_number": 1000 + doc_id,
        "original_file_name": f"scan-{doc_id}.pdf",
        "mime_type": "application/pdf",
        "page_count": 2,
        "created": "2024-06-01",
        "added": "2024-06-02T09:15:00+02:00",
        "modified": "2024-06-03T10:20:30.123456+02:00",
        "custom_fields": [CustomFieldValue(name="Amount", data_type="monetary", value="EUR 12.50")],
        "notes": [Note(author="Ada Lovelace", created="2024-06-04T08:00:00Z", text="checked")],
        "owner": "ada@example.org",
        "access": Access(public=False, users=["ada@example.org"], groups=["g1@x.invalid"]),
        "url": f"http://paperless.test/documents/{doc_id}/details/",
        "fingerprint": f"full-{doc_id}",
        "light_fingerprint": f"light-{doc_id}",
    }
    values.update(overrides)
    return IndexedDocument(**values)
