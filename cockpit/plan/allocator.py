"""A model of PyTorch's CUDA caching allocator, in plain Python (no torch, no GPU).

Replaying a step's allocations and frees through it gives what
`torch.cuda.max_memory_reserved()` and `max_memory_allocated()` would report. The rules
follow c10/cuda/CUDACachingAllocator.cpp (DeviceCachingAllocator::malloc, get_free_block,
should_split, get_allocation_size, alloc_found_block, free_block, try_merge_blocks and, for
`expandable_segments:True`, find_expandable_block, map_block and
try_allocate_expandable_block):

- every request is rounded up to 512 bytes (kMinBlockSize); requests of at most 1 MiB
  (kSmallSize) come from the small pool, the rest from the large pool;
- a request is served by the smallest cached free block of its pool that holds it, ties
  broken by the lower address (the pool is a set ordered by size, then address);
- with no cached block, a new segment is taken from the driver: 2 MiB (kSmallBuffer) for a
  small request, 20 MiB (kLargeBuffer) for one of 1-10 MiB, and the request rounded up
  to 2 MiB (kRoundLarge) above that;
- the block handed out is split when the rest is worth keeping: in the small pool when at
  least 512 bytes are left, in the large pool when more than 1 MiB is left (and the request is
  under max_split_size); otherwise the whole block is handed out (and counted allocated);
- `max_split_size_mb` (off by default): a request under it never takes a cached block of that
  size or more, and one of that size or more takes a cached block at most 20 MiB larger;
- a freed block merges with free neighbours of its segment and goes back to its pool;
  segments are not returned to the driver (no empty_cache in a training step);
- expandable segments: one segment per pool whose physical memory is mapped in pages of
  2 MiB (small pool) or 20 MiB (large pool) as it grows; a request no cached block holds
  maps just enough pages past the free block at the segment's end, and any block is split
  when 512 bytes or more are left.

Not modelled: several streams (a training step allocates on one), CUDA graph pools,
`roundup_power2_divisions`, and the retries that free cached segments when the driver runs out
(`limit_bytes` raises OutOfMemory where a real GPU would first release whole free segments).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB
MIN_BLOCK = 512  # kMinBlockSize: every request is rounded up to this
SMALL_SIZE = 1 * MIB  # kSmallSize: the largest request served by the small pool
SMALL_BUFFER = 2 * MIB  # kSmallBuffer: a small pool segment (and an expandable small page)
LARGE_BUFFER = 20 * MIB  # kLargeBuffer: the segment for 1-10 MiB requests (expandable page)
MIN_LARGE_ALLOC = 10 * MIB  # kMinLargeAlloc: from here a segment is the request itself
ROUND_LARGE = 2 * MIB  # kRoundLarge: large segments are multiples of this
NO_SPLIT_LIMIT = 1 << 62  # max_split_size when not configured (SIZE_MAX in C++)

# an expandable segment reserves address space for 1 1/8 of the GPU; any size larger than
# every plan works the same, since its unmapped tail only has to outsize every free block
_EXPANDABLE_SPACE = 1 << 50


class OutOfMemory(RuntimeError):
    """The model's reserved bytes would pass `limit_bytes`."""


def round_size(nbytes: int) -> int:
    """A request as the allocator books it: at least 512 bytes, a multiple of 512."""
    if nbytes < MIN_BLOCK:
        return MIN_BLOCK
    return -(-nbytes // MIN_BLOCK) * MIN_BLOCK


def allocation_size(size: int) -> int:
    """The segment cudaMalloc'd for a request no cached block holds (get_allocation_size)."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return -(-size // ROUND_LARGE) * ROUND_LARGE


class _Block:
    """A piece of a segment: [address, address + size), free or handed out."""

    __slots__ = ("address", "size", "allocated", "prev", "next", "small", "mapped")

    def __init__(self, address: int, size: int, small: bool, mapped: bool = True) -> None:
        self.address = address
        self.size = size
        self.allocated = False
        self.prev: _Block | None = None
        self.next: _Block | None = None
        self.small = small
        self.mapped = mapped

    def key(self) -> tuple[int, int]:
        return (self.size, self.address)

    def carve(self, size: int) -> _Block:
        """A new mapped block of `size` bytes at this block's start, linked in before it; this
        block keeps the rest (a split, and the new pages taken from an expandable segment)."""
        front = _Block(self.address, size, self.small)
        front.prev, front.next = self.prev, self
        if self.prev is not None:
            self.prev.next = front
        self.prev = front
        self.address += size
        self.size -= size
        return front


class _Pool:
    """Free mapped blocks ordered by (size, address), as the C++ BlockPool's std::set."""

    def __init__(self, small: bool) -> None:
        self.small = small
        self.keys: list[tuple[int, int]] = []
        self.blocks: dict[tuple[int, int], _Block] = {}
        self.expandable: _Block | None = None  # the unmapped tail of this pool's expandable segment

    def insert(self, block: _Block) -> None:
        key = block.key()
        bisect.insort(self.keys, key)
        self.blocks[key] = block

    def remove(self, block: _Block) -> None:
        key = block.key()
        del self.keys[bisect.bisect_left(self.keys, key)]
        del self.blocks[key]

    def lower_bound(self, size: int) -> int:
        return bisect.bisect_left(self.keys, (size, -1))


@dataclass
class AllocatorStats:
    """What torch.cuda.memory_stats() would say of the replay, in bytes."""

    reserved: int = 0  # segments (or mapped pages) held from the driver
    reserved_peak: int = 0  # max_memory_reserved()
    allocated: int = 0  # blocks handed out (whole blocks, as the C++ counts them)
    allocated_peak: int = 0  # max_memory_allocated()
    requested: int = 0  # bytes asked for, unrounded
    requested_peak: int = 0
    segments: int = 0  # cudaMalloc calls (expandable: page mappings)
    reserved_small: int = 0  # of `reserved`, the small pool's (requests of 1 MiB or less)

    @property
    def slack_bytes(self) -> int:
        """Reserved beyond allocated at their peaks: fragmentation and cached free blocks."""
        return self.reserved_peak - self.allocated_peak


class CachingAllocator:
    """One device's caching allocator on one stream; malloc(nbytes) -> handle, free(handle)."""

    def __init__(
        self,
        *,
        expandable_segments: bool = False,
        max_split_size: int | None = None,
        limit_bytes: int | None = None,
    ) -> None:
        self.expandable = expandable_segments
        self.max_split = max_split_size if max_split_size else NO_SPLIT_LIMIT
        self.limit = limit_bytes
        self.small = _Pool(small=True)
        self.large = _Pool(small=False)
        self.stats = AllocatorStats()
        self._live: dict[int, tuple[_Block, int]] = {}
        self._handles = itertools.count(1)
        self._next_address = 1 << 40  # cudaMalloc'd segments never overlap; the order is arbitrary

    # ------------------------------------------------------------------ public

    def malloc(self, nbytes: int) -> int:
        """Allocate `nbytes`; returns a handle for free()."""
        size = round_size(nbytes)
        pool = self.small if size <= SMALL_SIZE else self.large
        block = self._free_block(pool, size)
        if block is None:
            block = self._new_block(pool, size)
        if self._should_split(block, size):
            block = self._split(pool, block, size)
        block.allocated = True
        handle = next(self._handles)
        self._live[handle] = (block, nbytes)
        s = self.stats
        s.allocated += block.size
        s.allocated_peak = max(s.allocated_peak, s.allocated)
        s.requested += nbytes
        s.requested_peak = max(s.requested_peak, s.requested)
        return handle

    def free(self, handle: int) -> None:
        """Give a block back: it merges with free neighbours and is cached in its pool."""
        block, nbytes = self._live.pop(handle)
        self.stats.allocated -= block.size
        self.stats.requested -= nbytes
        block.allocated = False
        pool = self.small if block.small else self.large
        for neighbour in (block.prev, block.next):
            self._merge(pool, block, neighbour)
        pool.insert(block)

    def empty_cache(self) -> None:
        """torch.cuda.empty_cache(): whole free segments go back to the driver."""
        for pool in (self.small, self.large):
            for block in [pool.blocks[k] for k in pool.keys]:
                if block.prev is None and block.next is None and not self.expandable:
                    pool.remove(block)
                    self.stats.reserved -= block.size
                    self.stats.reserved_small -= block.size if pool.small else 0

    # ------------------------------------------------------------------ the C++ rules

    def _free_block(self, pool: _Pool, size: int) -> _Block | None:
        """get_free_block: the smallest cached block that holds `size`, lowest address first."""
        i = pool.lower_bound(size)
        if i == len(pool.keys):
            return None
        if self.expandable:
            # best fit counts a block before unmapped pages at the size it could grow to: the
            # free end of the segment is taken only when no other cached block holds the request
            def grows_to(b: _Block) -> int:
                return b.size + (b.next.size if b.next is not None and not b.next.mapped else 0)

            while i + 1 < len(pool.keys) and grows_to(pool.blocks[pool.keys[i + 1]]) < grows_to(
                pool.blocks[pool.keys[i]]
            ):
                i += 1
        block = pool.blocks[pool.keys[i]]
        if size < self.max_split and block.size >= self.max_split:
            return None  # an oversize block is not split for a smaller request
        if size >= self.max_split and block.size >= size + LARGE_BUFFER:
            return None  # an oversize request takes a block at most 20 MiB larger
        pool.remove(block)
        return block

    def _should_split(self, block: _Block, size: int) -> bool:
        remaining = block.size - size
        if block.small or self.expandable:
            return remaining >= MIN_BLOCK
        return size < self.max_split and remaining > SMALL_SIZE

    def _split(self, pool: _Pool, block: _Block, size: int) -> _Block:
        """alloc_found_block: the request at the block's start, the rest cached."""
        front = block.carve(size)
        pool.insert(block)
        return front

    def _merge(self, pool: _Pool, block: _Block, other: _Block | None) -> None:
        """try_merge_blocks: absorb a free, mapped neighbour."""
        if other is None or other.allocated or not other.mapped:
            return
        pool.remove(other)
        if other is block.prev:
            block.address = other.address
            block.prev = other.prev
            if other.prev is not None:
                other.prev.next = block
        else:
            block.next = other.next
            if other.next is not None:
                other.next.prev = block
        block.size += other.size

    def _reserve(self, nbytes: int, small: bool) -> None:
        s = self.stats
        if self.limit is not None and s.reserved + nbytes > self.limit:
            raise OutOfMemory(
                f"reserving {nbytes} more bytes passes the limit of {self.limit} "
                f"({s.reserved} reserved, {s.allocated} allocated)"
            )
        s.reserved += nbytes
        s.reserved_small += nbytes if small else 0
        s.reserved_peak = max(s.reserved_peak, s.reserved)
        s.segments += 1

    def _new_block(self, pool: _Pool, size: int) -> _Block:
        if self.expandable:
            return self._expand(pool, size)
        nbytes = allocation_size(size)  # alloc_block: one cudaMalloc
        self._reserve(nbytes, pool.small)
        block = _Block(self._next_address, nbytes, pool.small)
        self._next_address += nbytes + ROUND_LARGE
        return block

    def _expand(self, pool: _Pool, size: int) -> _Block:
        """try_allocate_expandable_block: map pages past the segment's free end until it holds `size`."""
        page = SMALL_BUFFER if pool.small else LARGE_BUFFER
        tail = pool.expandable
        if tail is None:  # find_expandable_block makes the segment, all of it unmapped
            tail = _Block(self._next_address, _EXPANDABLE_SPACE, pool.small, mapped=False)
            self._next_address += _EXPANDABLE_SPACE
            pool.expandable = tail
        candidate = tail.prev if tail.prev is not None and not tail.prev.allocated else None
        have = candidate.size if candidate is not None else 0
        if candidate is not None:
            pool.remove(candidate)
        mapped = -(-(size - have) // page) * page  # map_block rounds up to whole pages
        self._reserve(mapped, pool.small)
        fresh = tail.carve(mapped)
        if candidate is not None:  # the free end and the new pages are one block
            fresh.address, fresh.prev = candidate.address, candidate.prev
            if candidate.prev is not None:
                candidate.prev.next = fresh
            fresh.size += candidate.size
        return fresh


def replay(
    events: Iterable[tuple[int, int]],
    *,
    expandable_segments: bool = False,
    max_split_size: int | None = None,
) -> AllocatorStats:
    """Run (key, nbytes) events through a fresh allocator: nbytes > 0 allocates the storage `key`,
    nbytes <= 0 frees it. Frees of keys never allocated are ignored; zero-byte storages take no
    block (as in torch)."""
    alloc = CachingAllocator(expandable_segments=expandable_segments, max_split_size=max_split_size)
    handles: dict[int, int] = {}
    for key, nbytes in events:
        if nbytes > 0:
            handles[key] = alloc.malloc(nbytes)
        else:
            handle = handles.pop(key, None)
            if handle is not None:
                alloc.free(handle)
    return alloc.stats


# --------------------------------------------------------------------------- the training child's mode

ALLOC_CONF_ENV = "PYTORCH_CUDA_ALLOC_CONF"
# What the training child sets when the user has not: see docs/estimator.md ("Expandable
# segments") for the figures behind the choice.
CHILD_ALLOC_CONF = "expandable_segments:True"


@dataclass(frozen=True)
class AllocatorMode:
    """The caching allocator's settings a process runs with, from PYTORCH_CUDA_ALLOC_CONF."""

    expandable: bool
    max_split_size: int | None = None  # bytes; None: not set (blocks of any size split)
    conf: str = ""  # the setting as it reads
    ours: bool = True  # set by the cockpit (the user set none)


def parse_alloc_conf(conf: str) -> AllocatorMode:
    """expandable_segments and max_split_size_mb from a PYTORCH_CUDA_ALLOC_CONF value
    ("key:value,key:value"); other keys do not change the model."""
    expandable, max_split = False, None
    for item in conf.split(","):
        key, _, value = item.partition(":")
        key, value = key.strip(), value.strip()
        if key == "expandable_segments":
            expandable = value.lower() == "true"
        elif key == "max_split_size_mb":
            try:
                max_split = int(float(value) * MIB)
            except ValueError:
                max_split = None
    return AllocatorMode(expandable, max_split, conf, ours=False)


def _child_alloc_conf(env: Mapping[str, str]) -> tuple[str, bool]:
    """The allocator setting a training child started from `env` runs with, and whether it is
    ours (CHILD_ALLOC_CONF, the user set none) rather than the user's own."""
    own = env.get(ALLOC_CONF_ENV, "")
    return (CHILD_ALLOC_CONF, True) if not own.strip() else (own, False)


def child_alloc_env(env: dict[str, str]) -> dict[str, str]:
    """The training child's environment: CHILD_ALLOC_CONF unless the user set their own."""
    conf, ours = _child_alloc_conf(env)
    return {**env, ALLOC_CONF_ENV: conf} if ours else env


def child_allocator_mode(env: Mapping[str, str] | None = None) -> AllocatorMode:
    """The allocator mode a training child started from this environment runs with (read
    without copying the environment: every estimate asks)."""
    import os

    conf, ours = _child_alloc_conf(os.environ if env is None else env)
    mode = parse_alloc_conf(conf)
    return AllocatorMode(mode.expandable, mode.max_split_size, conf, ours=ours)


# --------------------------------------------------------------------------- the analytic slack

# Fitted to this model's replay of the traced step, every built-in preset at half, its own and
# double micro-batch (bench/trace_vs_analytic.py; docs/estimator.md "Allocator slack"): with
# expandable segments the reserved peak is the live peak plus
FRAGMENTATION = 0.006  # of the live bytes: slivers left between blocks of a grown segment
PAGE_ALLOWANCE = 16 * MIB  # the last 20 MiB large page and 2 MiB small pages, partly used...
PAGE_ALLOWANCE_SHARE = 0.10  # ...but never more than this share of a small model's live bytes
# Without expandable segments the same centre holds, but the slack swings with how block sizes
# happen to fit (-8.7%..+7.2% around the expandable figure over the same cases): this much more
# keeps a plan for that mode no more than 3% under.
PLAIN_MARGIN = 0.06
COMM_SLACK = FRAGMENTATION  # buffers of a steady size (DDP buckets) pack like the weights


def planned_slack(
    live_bytes: int, freed_logits_bytes: int, mode: AllocatorMode | None = None
) -> int:
    """Reserved beyond the live peak, as the allocator model finds it for a training step.

    `freed_logits_bytes` is the 16-bit logits' block (2 bytes a logit; 4 in fp32), freed in the
    forward: the fp32 tensors of the loss are larger and never fit in it, so it stays reserved
    beside them at the log-softmax peak."""
    mode = mode or child_allocator_mode()
    slack = (
        freed_logits_bytes
        + FRAGMENTATION * live_bytes
        + min(PAGE_ALLOWANCE, PAGE_ALLOWANCE_SHARE * live_bytes)
    )
    if not mode.expandable:
        slack += PLAIN_MARGIN * live_bytes
    return int(slack)
