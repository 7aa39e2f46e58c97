"""Rendering runs with the cyclic garbage collector off and frees its garbage in one collection after."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from services.rendering import SAMPLE_ORDER, collector_paused, order_documents, render_order


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_during_a_render_and_on_again_after_it() -> None:
    seen: list[bool] = []
    original = gc.collect

    def watching(generation: int = 2) -> int:
        seen.append(gc.isenabled())
        return original(generation)

    gc.collect = watching  # type: ignore[assignment]
    try:
        with collector_paused():
            assert not gc.isenabled()
    finally:
        gc.collect = original  # type: ignore[assignment]
    assert gc.isenabled()
    assert seen == [True], "one collection, after the collector is back on"


def test_a_render_leaves_no_garbage_for_a_full_collection() -> None:
    order_documents(render_order(SAMPLE_ORDER, [1]))  # first use: caches, fonts
    gc.collect()
    documents = order_documents(render_order(SAMPLE_ORDER, [1]))
    assert gc.isenabled()
    assert len(documents) == 2  # the tickets and the attendee's; the invoice is its own layout
    assert gc.collect() == 0, "the layout's cycles were freed by the collection after it"


def test_a_failing_render_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("layout failed")
    assert gc.isenabled()


def test_a_collector_the_caller_turned_off_stays_off() -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_overlapping_renders_keep_it_off_until_the_last_one_ends() -> None:
    first_in, first_may_leave = threading.Event(), threading.Event()
    states: dict[str, bool] = {}

    def first() -> None:
        with collector_paused():
            first_in.set()
            first_may_leave.wait(10)
        states["after first"] = gc.isenabled()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with collector_paused():
        pass
    states["after second, first still in"] = gc.isenabled()
    first_may_leave.set()
    thread.join(10)
    assert states == {"after second, first still in": False, "after first": True}
