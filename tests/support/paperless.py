"""The `paperless` fixture: a started Paperless-ngx double with a 200-document corpus.

Function-scoped (each test mutates and faults its own double) and cheap: generating 200
documents and binding a port take a few milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.paperless_double import PaperlessDouble, generate_corpus

CORPUS_SIZE = 200
CORPUS_SEED = 7


@pytest.fixture
def paperless() -> Iterator[PaperlessDouble]:
    double = PaperlessDouble(generate_corpus(CORPUS_SIZE, seed=CORPUS_SEED)).start()
    try:
        yield double
    finally:
        double.stop()
