"""The micro-batcher without HTTP: batching of concurrent requests, caps, keys, error isolation, shutdown."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from divrec.serving.batching import BatcherClosed, MicroBatcher


class Recorder:
    """A handler that doubles its payloads, records each call, and can hold its first call until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.calls: list[tuple[object, list[object]]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, key: object, payloads: list[object]) -> list[object]:
        self.calls.append((key, list(payloads)))
        self.started.set()
        self.release.wait(10)
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [p * 2 for p in payloads]


def held_batcher(max_size: int = 64) -> tuple[MicroBatcher, Recorder, Future]:
    """A batcher whose worker is busy with a first request until ``recorder.release`` is set."""
    recorder = Recorder(hold_first=True)
    batcher = MicroBatcher(recorder, max_size=max_size, max_wait_ms=0)
    first = batcher.submit("k", 0)
    assert recorder.started.wait(10)
    return batcher, recorder, first


def test_requests_queued_while_the_worker_is_busy_are_scored_in_one_call() -> None:
    batcher, recorder, first = held_batcher()
    futures = [batcher.submit("k", i) for i in range(1, 11)]
    recorder.release.set()
    assert [f.result(10) for f in futures] == [2 * i for i in range(1, 11)]  # each gets its own result
    assert first.result(10) == 0
    assert [len(payloads) for _, payloads in recorder.calls] == [1, 10]
    batcher.close()


def test_a_batch_holds_at_most_max_size_requests() -> None:
    batcher, recorder, _ = held_batcher(max_size=4)
    futures = [batcher.submit("k", i) for i in range(10)]
    recorder.release.set()
    assert [f.result(10) for f in futures] == [2 * i for i in range(10)]
    assert [len(payloads) for _, payloads in recorder.calls] == [1, 4, 4, 2]
    batcher.close()


def test_only_requests_with_the_same_key_share_a_call() -> None:
    batcher, recorder, _ = held_batcher()
    futures = [batcher.submit(("k", i % 2), i) for i in range(6)]
    recorder.release.set()
    assert [f.result(10) for f in futures] == [0, 2, 4, 6, 8, 10]
    assert sorted(recorder.calls[1:]) == [(("k", 0), [0, 2, 4]), (("k", 1), [1, 3, 5])]
    batcher.close()


def test_one_bad_request_fails_alone() -> None:
    batcher, recorder, _ = held_batcher()
    good, bad, other = batcher.submit("k", 1), batcher.submit("k", "bad"), batcher.submit("k", 3)
    recorder.release.set()
    assert (good.result(10), other.result(10)) == (2, 6)
    with pytest.raises(ValueError, match="bad payload"):
        bad.result(10)
    batcher.close()


def test_a_handler_returning_the_wrong_number_of_results_fails_each_request() -> None:
    batcher = MicroBatcher(lambda key, payloads: [], max_wait_ms=0)
    with pytest.raises(RuntimeError, match="0 results for 1 requests"):
        batcher.submit("k", 1).result(10)
    batcher.close()


def test_a_request_waits_up_to_max_wait_for_company() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_size=2, max_wait_ms=5_000)  # the second arrives well within the wait
    first, second = batcher.submit("k", 1), batcher.submit("k", 2)
    assert (first.result(10), second.result(10)) == (2, 4)
    assert [payloads for _, payloads in recorder.calls] == [[1, 2]]  # max_size reached: no need to wait longer
    batcher.close()


def test_close_scores_what_is_queued_then_refuses_new_requests() -> None:
    batcher, recorder, _ = held_batcher()
    queued = [batcher.submit("k", i) for i in range(3)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    recorder.release.set()
    closer.join(10)
    assert [f.result(0) for f in queued] == [0, 2, 4]
    with pytest.raises(BatcherClosed):
        batcher.submit("k", 1)


def test_asyncio_callers_await_their_own_results() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_wait_ms=1)

    async def many() -> list[object]:
        return await asyncio.gather(*(batcher.run("k", i) for i in range(20)))

    assert asyncio.run(many()) == [2 * i for i in range(20)]
    assert sum(len(payloads) for _, payloads in recorder.calls) == 20
    batcher.close()


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size=0"):
        MicroBatcher(lambda key, payloads: payloads, max_size=0)
