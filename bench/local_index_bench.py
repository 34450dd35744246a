"""How fast the local index writes and searches: N synthetic documents in a temp dir.

    .venv/bin/python -m bench.local_index_bench --n 100000

Writes the documents in pages of 100 (as page tasks do), then runs a fixed set of queries
(words of every frequency, phrases, prefixes, operators, CJK, `as_email`) several times each
and prints the median and 95th percentile latency per query, before and after `optimize()`.
The corpus is seeded, so two runs on one machine search the same documents.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tasks.document import Access, IndexedDocument, Principal, Principals
from tasks.sinks.base import RunInfo
from tasks.sinks.local import LocalIndex

SOURCE = "bench"
RUN = RunInfo(run_id="bench", source_id=SOURCE, mode="full")
USERS = 200
GROUPS = 20
TAGS = ["Invoice", "Receipt", "Auto 🚗", "Köln", "Tax", "Insurance", "Bank", "Health"] + [
    f"Tag {i}" for i in range(32)
]
TYPES = ["Invoice", "Letter", "Contract", "Statement", "Receipt", "Payslip"] + [
    f"Type {i}" for i in range(6)
]
REAL_WORDS = ["rechnung", "köln", "insurance", "contract", "überweisung", "mahnung"]
CJK_LINE = "東京都港区の請求書です。合計金額は一万二千円、お支払い期限は月末です。"


def group_key(group: int) -> str:
    return f"paperless-group-{group}@{SOURCE}.paperless.invalid"


class Corpus:
    """Seeded synthetic documents: Zipf-distributed pseudo-words, ~3 KB of text each."""

    def __init__(self, seed: int = 7, vocabulary: int = 30000) -> None:
        self.rng = random.Random(seed)
        syllables = [a + b for a in "bdfgklmnprstvz" for b in "aeiou"]
        words: set[str] = set()
        while len(words) < vocabulary:
            words.add("".join(self.rng.choices(syllables, k=self.rng.randint(2, 4))))
        self.vocabulary = sorted(words, key=lambda w: (len(w), w))
        weights = [1.0 / (rank + 1) for rank in range(vocabulary)]
        self.cum_weights = _cumulative(weights)
        self.correspondents = [f"Company {i} GmbH" for i in range(300)]

    def words(self, k: int) -> list[str]:
        return self.rng.choices(self.vocabulary, cum_weights=self.cum_weights, k=k)

    def document(self, doc_id: int) -> IndexedDocument:
        rng = self.rng
        title = " ".join(self.words(rng.randint(2, 5))).capitalize()
        lines = [" ".join(self.words(14)) for _ in range(30)]
        if doc_id % 20 == 0:
            lines.insert(3, f"Die {rng.choice(REAL_WORDS)} aus Köln ist fällig.")
        if doc_id % 100 == 0:
            lines.insert(5, CJK_LINE)
        year = rng.randint(2015, 2025)
        created = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if rng.random() < 0.4:
            access = Access(public=True)
        else:
            groups = [group_key(rng.randrange(GROUPS))] if rng.random() < 0.3 else []
            access = Access(
                public=False, users=[f"user{rng.randrange(USERS)}@example.org"], groups=groups
            )
        return IndexedDocument(
            source_id=SOURCE,
            doc_id=doc_id,
            title=title,
            text=f"# {title}\n\n" + "\n".join(lines),
            has_text=True,
            correspondent=rng.choice(self.correspondents),
            document_type=rng.choice(TYPES),
            tags=rng.sample(TAGS, rng.randint(0, 3)),
            created=created,
            added=f"{created}T10:00:00+00:00",
            modified=f"{created}T10:00:00+00:00",
            access=access,
            url=f"http://paperless.bench/documents/{doc_id}/details/",
            fingerprint=f"f{doc_id}",
            light_fingerprint=f"l{doc_id}",
        )

    def pages(self, n: int, size: int) -> Iterator[list[IndexedDocument]]:
        for start in range(1, n + 1, size):
            yield [self.document(i) for i in range(start, min(start + size, n + 1))]


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for weight in weights:
        total += weight
        out.append(total)
    return out


def principals() -> Principals:
    users = [
        Principal(
            email=f"user{i}@example.org",
            username=f"user{i}",
            is_superuser=i < 2,
            groups=[group_key(i % GROUPS), group_key((i * 7) % GROUPS)],
        )
        for i in range(USERS)
    ]
    return Principals(users=users)


def queries(corpus: Corpus, index: LocalIndex) -> list[tuple[str, str, str | None]]:
    vocab = corpus.vocabulary
    sample_title = next(index.export())["title"]
    user = "user17@example.org"
    return [
        ("very common word", vocab[1], None),
        ("common word", vocab[20], None),
        ("mid word", vocab[500], None),
        ("rare word", vocab[25000], None),
        ("two words", f"{vocab[30]} {vocab[700]}", None),
        ("phrase", f'"{vocab[40]} {vocab[41]}"', None),
        ("phrase, top-2 words", f'"{vocab[0]} {vocab[1]}"', None),
        ("three common words", f"{vocab[2]} {vocab[5]} {vocab[9]}", None),
        ("real word 1%", "mahnung", None),
        ("diacritics", "koln fallig", None),
        ("prefix", "rechn*", None),
        ("exact title", sample_title, None),
        ("CJK substring", "請求書", None),
        ("tag only", "tag:invoice", None),
        ("tag + type + year", "tag:invoice type:letter created:2024", None),
        ("correspondent", 'correspondent:"company 17 gmbh"', None),
        ("created range", "created:>=2024-06-01 created:<2024-07", None),
        ("word + tag", f"{vocab[500]} tag:tax", None),
        ("word as user", vocab[500], user),
        ("common word as user", vocab[1], user),
        ("tag only as user", "tag:invoice", user),
        ("rare word as user", vocab[25000], user),
        ("word as superuser", vocab[500], "user1@example.org"),
        ("word as stranger", vocab[20], "nobody@example.org"),
    ]


def measure(index: LocalIndex, cases, repeat: int) -> tuple[list[tuple], list[float]]:
    """Per query (label, hits, median ms, p95 ms), and every sample of every query."""
    rows, samples = [], []
    for label, query, email in cases:
        hits = index.search(query, as_email=email)  # warm the page cache once
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            index.search(query, as_email=email)
            times.append((time.perf_counter() - start) * 1000)
        samples += times
        rows.append((label, len(hits), statistics.median(times), percentile(times, 0.95)))
    return rows, samples


def timed(label: str, work) -> None:
    start = time.perf_counter()
    count = work()
    print(f"{label}: {(time.perf_counter() - start) * 1000:.0f} ms for {count} documents")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100000, help="documents to write")
    parser.add_argument("--page", type=int, default=100, help="documents per write")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each query")
    parser.add_argument(
        "--synchronous", choices=["full", "normal"], default="full", help="PRAGMA synchronous"
    )
    parser.add_argument("--dir", type=Path, default=None, help="keep the index here")
    parser.add_argument(
        "--reuse", action="store_true", help="search the index already in --dir, write nothing"
    )
    args = parser.parse_args()

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="local-index-bench-"))
    try:
        run(args, workdir)
    finally:
        if not args.dir:  # also when interrupted, or its output pipe closed
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> None:
    index = LocalIndex(workdir / "index.sqlite3")
    index.count()
    if args.synchronous == "normal":
        index._db().execute("PRAGMA synchronous = NORMAL")
    corpus = Corpus()

    generating = writing = 0.0
    pages = corpus.pages(0 if args.reuse else args.n, args.page)
    while True:
        start = time.perf_counter()
        page = next(pages, None)
        generating += time.perf_counter() - start
        if page is None:
            break
        start = time.perf_counter()
        index.write(RUN, page)
        writing += time.perf_counter() - start
    if not args.reuse:
        index.record_principals(RUN, principals())
        print(
            f"write: {writing:.1f} s, {args.n / writing:.0f} docs/s ({generating:.1f} s generating)"
        )
    size_mb = sum(p.stat().st_size for p in workdir.glob("index.sqlite3*")) / 1e6
    print(f"documents: {index.count()}   pages of {args.page}   synchronous={args.synchronous}")
    print(f"file: {size_mb:.0f} MB (index + WAL)")

    timed("stored_states(all)", lambda: len(index.stored_states(SOURCE)))
    timed(
        "stored_states(100 ids)", lambda: len(index.stored_states(SOURCE, list(range(1, 201, 2))))
    )
    timed("export()", lambda: sum(1 for _ in index.export()))
    cases = queries(corpus, index)
    before, before_all = measure(index, cases, args.repeat)
    start = time.perf_counter()
    index.optimize()
    print(f"optimize(): {time.perf_counter() - start:.1f} s")
    after, after_all = measure(index, cases, args.repeat)

    print(f"\n{'query':<22} {'hits':>4}  {'median ms':>9} {'p95 ms':>7}  | after optimize()")
    for (label, hits, median, p95), (_, _, median2, p95_2) in zip(before, after, strict=True):
        print(f"{label:<22} {hits:>4}  {median:>9.1f} {p95:>7.1f}  | {median2:>7.1f} {p95_2:>7.1f}")
    for name, samples in (("before", before_all), ("after", after_all)):
        print(
            f"all {len(samples)} searches {name} optimize(): "
            f"median {statistics.median(samples):.1f} ms, p95 {percentile(samples, 0.95):.1f} ms, "
            f"max {max(samples):.1f} ms"
        )
    index.close()
    if args.dir:
        print(f"index kept in {workdir}")


if __name__ == "__main__":
    main()
