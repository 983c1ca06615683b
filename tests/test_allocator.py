"""The caching allocator model against the rules of c10/cuda/CUDACachingAllocator.cpp, case by case."""

from __future__ import annotations

import pytest

from cockpit.plan.allocator import (
    MIB,
    CachingAllocator,
    OutOfMemory,
    allocation_size,
    replay,
    round_size,
)


@pytest.mark.parametrize(
    ("request_bytes", "rounded", "segment"),
    [
        (1, 512, 2 * MIB),
        (512, 512, 2 * MIB),
        (513, 1024, 2 * MIB),
        (MIB, MIB, 2 * MIB),  # 1 MiB is still small
        (MIB + 1, MIB + 512, 20 * MIB),  # 1-10 MiB: a 20 MiB segment
        (10 * MIB - 512, 10 * MIB - 512, 20 * MIB),
        (10 * MIB, 10 * MIB, 10 * MIB),  # from 10 MiB: the request rounded to 2 MiB
        (11 * MIB + 1, 11 * MIB + 512, 12 * MIB),
    ],
)
def test_rounding_and_segment_sizes(request_bytes: int, rounded: int, segment: int) -> None:
    assert round_size(request_bytes) == rounded
    assert allocation_size(rounded) == segment
    alloc = CachingAllocator()
    alloc.malloc(request_bytes)
    assert alloc.stats.reserved == segment


def test_small_requests_share_a_2_mib_segment_and_large_ones_a_20_mib_one() -> None:
    alloc = CachingAllocator()
    for _ in range(4):
        alloc.malloc(512 * 1024)
    assert alloc.stats.reserved == 2 * MIB and alloc.stats.segments == 1
    alloc.malloc(1)  # the small segment is full: a second one
    assert alloc.stats.reserved == 4 * MIB
    for _ in range(4):
        alloc.malloc(5 * MIB)  # 4 x 5 MiB fill one 20 MiB segment exactly
    assert alloc.stats.reserved == 24 * MIB and alloc.stats.segments == 3


def test_a_large_block_is_split_only_when_more_than_1_mib_is_left() -> None:
    alloc = CachingAllocator()
    a = alloc.malloc(12 * MIB)
    alloc.free(a)
    alloc.malloc(int(11.5 * MIB))  # 0.5 MiB left: the whole block is handed out
    assert alloc.stats.allocated == 12 * MIB and alloc.stats.reserved == 12 * MIB
    alloc2 = CachingAllocator()
    b = alloc2.malloc(12 * MIB)
    alloc2.free(b)
    alloc2.malloc(8 * MIB)  # 4 MiB left: split, the rest cached
    assert alloc2.stats.allocated == 8 * MIB
    alloc2.malloc(4 * MIB)  # served by the rest: no new segment
    assert alloc2.stats.reserved == 12 * MIB and alloc2.stats.segments == 1


def test_best_fit_by_size_then_address() -> None:
    alloc = CachingAllocator()
    big, small = alloc.malloc(30 * MIB), alloc.malloc(14 * MIB)
    alloc.free(big)
    alloc.free(small)
    alloc.malloc(13 * MIB)  # the 14 MiB block fits best: no split (1 MiB left), no new segment
    assert alloc.stats.allocated == 14 * MIB
    alloc.malloc(16 * MIB)  # the 30 MiB one is left, split in two
    assert alloc.stats.allocated == 30 * MIB and alloc.stats.reserved == 44 * MIB


def test_freed_neighbours_merge_back_into_one_block() -> None:
    alloc = CachingAllocator()
    parts = [alloc.malloc(4 * MIB) for _ in range(5)]  # one 20 MiB segment in five
    for handle in parts:
        alloc.free(handle)
    alloc.malloc(20 * MIB)  # only a merged block holds it
    assert alloc.stats.reserved == 20 * MIB


def test_fragmentation_a_freed_block_too_small_for_the_next_request() -> None:
    alloc = CachingAllocator()
    a = alloc.malloc(100 * MIB)
    alloc.malloc(100 * MIB)
    alloc.free(a)
    alloc.malloc(102 * MIB)  # 100 MiB cached does not hold it: a new segment
    assert alloc.stats.reserved == 302 * MIB
    assert alloc.stats.slack_bytes == 100 * MIB


def test_expandable_segments_map_20_mib_pages_past_the_free_end() -> None:
    alloc = CachingAllocator(expandable_segments=True)
    alloc.malloc(12 * MIB)  # one 20 MiB page
    assert alloc.stats.reserved == 20 * MIB
    alloc.malloc(12 * MIB)  # 8 MiB free at the end + one more page
    assert alloc.stats.reserved == 40 * MIB
    alloc.malloc(16 * MIB)  # exactly the 16 MiB left: no new page
    assert alloc.stats.reserved == 40 * MIB
    small = CachingAllocator(expandable_segments=True)
    for _ in range(5):
        small.malloc(512 * 1024)  # small pool pages are 2 MiB
    assert small.stats.reserved == 4 * MIB


def test_expandable_segments_grow_the_free_end_instead_of_a_new_segment() -> None:
    plain, grown = CachingAllocator(), CachingAllocator(expandable_segments=True)
    for alloc in (plain, grown):
        a = alloc.malloc(100 * MIB)
        alloc.malloc(100 * MIB)
        alloc.free(a)
        b = alloc.malloc(60 * MIB)  # from the freed block: 40 MiB left
        alloc.free(b)
        alloc.malloc(140 * MIB)
    assert plain.stats.reserved == 340 * MIB  # 100 cached at the start, a new 140 MiB segment
    assert grown.stats.reserved == 340 * MIB  # the freed block is not at the end either
    tail = CachingAllocator(expandable_segments=True)
    tail.malloc(100 * MIB)
    c = tail.malloc(100 * MIB)
    tail.free(c)  # free at the end of the segment
    tail.malloc(140 * MIB)  # grows it by 40 MiB instead of a fresh 140 MiB
    assert tail.stats.reserved == 240 * MIB


def test_expandable_best_fit_prefers_a_cached_block_over_the_growing_end() -> None:
    alloc = CachingAllocator(expandable_segments=True)
    a = alloc.malloc(40 * MIB)
    alloc.malloc(MIB * 2)
    c = alloc.malloc(30 * MIB)
    alloc.free(a)
    alloc.free(c)  # cached: 40 MiB at the start, the free end (30 + 8 MiB) before unmapped pages
    alloc.malloc(20 * MIB)
    # the end block is smaller (38 MiB) but could grow: the 40 MiB block is taken instead
    assert alloc.stats.reserved == 80 * MIB
    alloc.malloc(38 * MIB)  # the free end holds it exactly
    assert alloc.stats.reserved == 80 * MIB


def test_max_split_size_keeps_oversize_blocks_whole() -> None:
    alloc = CachingAllocator(max_split_size=64 * MIB)
    a = alloc.malloc(100 * MIB)
    alloc.free(a)
    alloc.malloc(30 * MIB)  # under the limit: the oversize block is not used
    assert alloc.stats.reserved == 130 * MIB
    b = alloc.malloc(90 * MIB)  # oversize request: the 100 MiB block is within 20 MiB
    assert alloc.stats.reserved == 130 * MIB
    alloc.free(b)
    alloc.malloc(70 * MIB)  # 100 >= 70 + 20: not that block
    assert alloc.stats.reserved == 200 * MIB


def test_replay_counts_peaks_and_ignores_unknown_frees() -> None:
    events = [(1, 30 * MIB), (2, 4 * MIB), (1, 0), (3, 20 * MIB), (99, 0), (2, 0), (3, 0)]
    stats = replay(events)
    assert stats.allocated_peak == 34 * MIB  # 30 + 4 (20 reuses the freed 30 MiB block, split)
    assert stats.reserved_peak == 50 * MIB  # 30 MiB segment and a 20 MiB one
    assert stats.allocated == 0 and stats.requested == 0


def test_a_limit_raises_out_of_memory_with_the_figures() -> None:
    alloc = CachingAllocator(limit_bytes=50 * MIB)
    alloc.malloc(40 * MIB)
    with pytest.raises(OutOfMemory, match="40 more|41943040"):
        alloc.malloc(40 * MIB)
