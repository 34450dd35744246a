"""Fixtures for the Omni part: a running strict fake connector-manager."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tasks.document import Access, CustomFieldValue, IndexedDocument, Note
from tests.omni_double import FakeManager

REPO = Path(__file__).resolve().parents[2]


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


def expected_documents(double: Any, source_id: str, user: str = "admin") -> dict[str, Any]:
    """What Omni should hold after a sync: every visible document rendered from a fresh read."""
    from tasks.paperless.client import PaperlessClient
    from tasks.render import render_document
    from tasks.snapshot import LookupSnapshot

    with PaperlessClient(double.url, double.token(user)) as client:
        snapshot = LookupSnapshot.load(client)
        ids = [int(doc["id"]) for doc in double.visible_documents(user)]
        raws = client.get_documents(ids)
    titles = {int(raw["id"]): str(raw.get("title") or "") for raw in raws}
    docs = (
        render_document(raw, snapshot, source_id=source_id, base_url=double.url, link_titles=titles)
        for raw in raws
    )
    return {doc.key: doc for doc in docs}


class ServeProcess:
    """`paperless-connector serve` as its own process, as Omni's manager would reach it."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = {**env, "PORT": str(port), "CONNECTOR_HOST_NAME": "127.0.0.1"}
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> ServeProcess:
        script = Path(sys.executable).with_name("paperless-connector")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(script), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited at start:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"serve did not answer in {timeout} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """Gone at once, as a crashed or redeployed container would be."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for_run(fake: FakeManager, run_id: str, timeout: float = 60.0) -> str:
    """Poll the fake until the run left `running`; returns its final status."""
    deadline = time.monotonic() + timeout
    while fake.runs[run_id].status == "running":
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still running in the manager after {timeout} s")
        time.sleep(0.1)
    return fake.runs[run_id].status
