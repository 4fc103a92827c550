"""The local streaming worker's in-memory store answers Session's few Redis calls as Redis
would: ordered entries, inclusive XRANGE, exclusive XREAD, trims, events and progress out."""

from __future__ import annotations

import threading

from core.realtime import KIND_AUDIO, KIND_DONE
from worker.realtime.local_store import LocalStore


def _store() -> tuple[LocalStore, list[str], list[float]]:
    events: list[str] = []
    progress: list[float] = []
    return LocalStore(events.append, progress.append), events, progress


def test_entries_are_read_in_order_from_a_cursor() -> None:
    store, _, _ = _store()
    store.push_audio(b"one")
    store.push_audio(b"two")
    store.push_command(KIND_DONE)
    first = store.xrange("in", min="-", count=2)
    assert [(i, f[b"d"]) for i, f in first] == [("1-0", b"one"), ("2-0", b"two")]
    assert first[0][1][b"k"] == KIND_AUDIO.encode()
    ((_, rows),) = store.xread({"in": "2-0"}, count=50)
    assert rows == [("3-0", {b"k": KIND_DONE.encode()})]
    assert store.xread({"in": "3-0"}, count=50) == []
    assert [i for i, _ in store.xrange("in", min="2-0")] == ["2-0", "3-0"]  # inclusive


def test_trim_drops_entries_before_the_checkpoint() -> None:
    store, _, _ = _store()
    for n in range(5):
        store.push_audio(bytes([n]))
    assert store.xtrim("in", minid="4-0") == 3
    assert [i for i, _ in store.xrange("in")] == ["4-0", "5-0"]


def test_a_blocking_read_wakes_on_input_and_on_close() -> None:
    store, _, _ = _store()
    reader_saw: list[object] = []
    reader = threading.Thread(
        target=lambda: reader_saw.append(store.xread({"in": "0"}, block=60_000))
    )
    reader.start()
    store.push_audio(b"x")
    reader.join(timeout=30)
    assert not reader.is_alive() and reader_saw[0] != []
    assert not store.exists("closed")
    closer = threading.Thread(
        target=lambda: reader_saw.append(store.xread({"in": "1-0"}, block=60_000))
    )
    closer.start()
    store.close_input()
    closer.join(timeout=30)
    assert not closer.is_alive() and reader_saw[1] == [] and store.exists("closed") == 1


def test_events_and_progress_go_back_and_no_checkpoint_is_kept() -> None:
    store, events, progress = _store()
    pipe = store.pipeline(transaction=True)
    pipe.xadd("out", {"e": '{"type": "transcript"}'}, maxlen=10)
    pipe.hset("state", "checkpoint", "{}")
    assert events == []  # nothing until the pipeline runs
    pipe.execute()
    store.xadd("out", {"e": b'{"type": "done"}'})
    store.hset("state", "decoded_s", "2.500")
    assert events == ['{"type": "transcript"}', '{"type": "done"}']
    assert progress == [2.5]
    assert store.hget("state", "checkpoint") is None
