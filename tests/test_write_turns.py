"""Writers of one local index take turns: a waiting writer goes on once the turn is free,
gives up with a clear error after the timeout, and a forked worker never shares its
parent's turn."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from tasks.sinks.local import LocalIndex, LocalIndexError
from tasks.sinks.write_turns import TurnTimeout, WriteTurns
from tests.support.documents import SOURCE, make_doc, run_of

RUN = run_of()


@pytest.fixture
def index(tmp_path: Path):
    opened = LocalIndex(tmp_path / "index.sqlite3")
    yield opened
    opened.close()


def other_writer(index: LocalIndex, timeout_s: float = 5.0) -> WriteTurns:
    """What another worker process holds: its own descriptor of the same turn file."""
    return WriteTurns(index._turns.path, timeout_s)


def test_a_waiting_writer_goes_on_once_the_turn_is_free(index: LocalIndex):
    index.count()  # the file and its schema exist before the other writer takes its turn
    holder = other_writer(index)
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.turn():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)
    finished: list[str] = []
    writer = threading.Thread(
        target=lambda: (index.write(RUN, [make_doc(1, "Waited", "text")]), finished.append("w"))
    )
    writer.start()
    writer.join(0.3)
    reader = LocalIndex(index.path)  # another process's view: this one's connection is busy
    assert finished == [] and reader.count() == 0  # still waiting for its turn
    reader.close()
    release.set()
    writer.join(10)
    thread.join(10)
    assert finished == ["w"]
    assert [hit.doc_id for hit in index.search("waited")] == [1]
    holder.close()


def test_a_writer_kept_waiting_past_the_timeout_gets_a_clear_error_and_loses_nothing(
    index: LocalIndex,
):
    index.write(RUN, [make_doc(1, "Kept", "text")])
    index._turns.timeout_s = 0.2
    holder = other_writer(index)
    with holder.turn(), pytest.raises(LocalIndexError) as caught:
        index.write(RUN, [make_doc(2, "Late", "text")])
    message = str(caught.value)
    assert str(index.path) in message and "retry later" in message
    assert index.count() == 1  # the earlier write stands, the refused one left no trace
    index.write(RUN, [make_doc(2, "Late", "text")])  # the turn is free again
    assert index.count() == 2
    assert index.stored_states(SOURCE).keys() == {1, 2}
    holder.close()


def _child_tries_its_turn(turns: WriteTurns, answers: multiprocessing.Queue) -> None:
    turns.timeout_s = 0.2
    try:
        with turns.turn():
            answers.put("got the turn")
    except TurnTimeout:
        answers.put("waited")


def test_a_forked_child_does_not_share_its_parents_turn(tmp_path: Path):
    turns = WriteTurns(tmp_path / "index.sqlite3.write-turn", 5.0)
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue = context.Queue()
    with turns.turn():
        # The child inherits the parent's WriteTurns and its open descriptor: using that
        # descriptor, it would "hold" the parent's lock too and write at the same time.
        child = context.Process(target=_child_tries_its_turn, args=(turns, answers))
        child.start()
        assert answers.get(timeout=10) == "waited"
        child.join(10)
    child = context.Process(target=_child_tries_its_turn, args=(turns, answers))
    child.start()
    assert answers.get(timeout=10) == "got the turn"
    child.join(10)
    turns.close()
