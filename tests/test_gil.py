"""The helpers that keep a worker thread's long pure-Python runs from stalling the event loop."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from sparktts_cache import SyncTTSCache
from sparktts_cache._core.gil import MANY, extend_in_pieces, make_old


def pieces(count: int, size: int) -> Iterator[list[int]]:
    for start in range(0, count, size):
        yield list(range(start, min(count, start + size)))


@pytest.mark.parametrize("hint", [0, 1, 999, 1000, 1001, 10_000])
def test_extend_in_pieces_gives_every_item_in_order_whatever_the_hint(hint: int) -> None:
    target = [-1]
    extend_in_pieces(target, pieces(1000, 64), hint)
    assert target == [-1, *range(1000)]


def test_an_error_in_a_piece_propagates() -> None:
    def failing() -> Iterator[list[int]]:
        yield [1, 2]
        raise ValueError("piece 2")

    target: list[int] = []
    with pytest.raises(ValueError, match="piece 2"):
        extend_in_pieces(target, failing(), 10)
    assert target == [1, 2]


def in_oldest_generation(thing: object) -> bool:
    return any(candidate is thing for candidate in gc.get_objects(generation=2))


def test_a_list_made_old_while_empty_stays_old_as_it_grows() -> None:
    old: list[int] = []
    make_old(MANY)
    extend_in_pieces(old, pieces(MANY, 4096), MANY)
    assert in_oldest_generation(old) and len(old) == MANY
    # The control: a list made after the collection is young (walked by the next collection).
    young: list[int] = []
    young += range(10)
    assert not in_oldest_generation(young)


def test_a_large_status_answer_is_never_walked_by_young_collections(tmp_path: object) -> None:
    # A young list of a million keys costs the collector 15 ms a walk, holding the GIL.
    cache = SyncTTSCache(str(tmp_path), sample_rate=16000)
    segments = [f"Sentence {index}." for index in range(MANY)]
    status = cache.get_cache_status(segments, {})
    assert len(status.cache_keys) == MANY and len(status.segments_to_generate) == MANY
    assert in_oldest_generation(status.cache_keys)
    assert in_oldest_generation(status.segments_to_generate)
