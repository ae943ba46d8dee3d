"""Which work tile each CTA takes, shared by the kernels.

The tiles of a launch, (m_block, head, batch), are numbered 0 .. count - 1; a CTA takes tiles block_idx.x,
block_idx.x + grid, ... until they run out. With a grid of one CTA per tile each takes one; a persistent grid
(at most one CTA per SM) walks many, so that a CTA's epilogue overlaps the loads of its next tile.

Where the work per tile is known only at run time (a mask_mod's block counts), `by_work` orders the tiles on
the GPU, longest first, and the kernel reads its tile from that order: the short tiles fill the end of the launch.

Round robin deals a persistent CTA its tiles before any has run, which suits tiles of equal work. Where they
differ (causal: longest first, then shorter and shorter), a CTA's next tile is instead `claim`ed when it needs
one, from a counter the whole launch shares, so a CTA that drew short tiles takes more, as the hardware does
with a grid of one CTA per tile.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import torch

import cutlass
import cutlass.cute as cute
import cutlass.pipeline as pipeline
from cutlass import Int32


@dataclass(frozen=True)
class TileOrder:
    """Tile t -> (m_block, head, batch).

    Plain: the m_blocks of one (head, batch) are neighbours, so the CTAs running side by side share that
    head's K and V in L2. longest_first (where later rows see more keys: causal, a window's right edge): the
    (head, batch) pairs go in groups whose K and V fit `group` in L2; within a group, by m_block from the last,
    every pair of the group at one m_block before the next, so the longest tiles start first and the short
    ones fill the end, while the CTAs in flight still read the same few heads' K and V.
    """

    m_blocks: Int32
    heads: Int32
    batch: Int32
    longest_first: bool = False
    group: Int32 = 1  # (head, batch) pairs per group under longest_first
    by_work: Optional[cute.Tensor] = None  # tile t is by_work[t] of the plain order (`by_work`)
    splits: Optional[Int32] = None  # each tile is this many, its key splits neighbours (`at_split`)
    whole: Optional[Int32] = None  # with splits: the tiles before the split ones (a split tail), else none

    def count(self):
        tiles = self.m_blocks * self.heads * self.batch
        if self.splits is None:
            return tiles
        if self.whole is None:
            return tiles * self.splits
        return self.whole + (tiles - self.whole) * self.splits

    @cute.jit
    def at_split(self, t):
        """(m_block, head, batch, split, parts) of ticket t: part `split` of its tile's `parts`, both None
        without splits; a whole tile of a split tail is part 0 of 1."""
        if cutlass.const_expr(self.splits is None):
            return *self.at(t), None, None
        if cutlass.const_expr(self.whole is None):
            return *self.at(t // self.splits), t % self.splits, self.splits
        tile, split, parts = t, Int32(0), Int32(1)
        if t >= self.whole:
            tile = self.whole + (t - self.whole) // self.splits
            split = (t - self.whole) % self.splits
            parts = self.splits
        return *self.at(tile), split, parts

    def index(self, m_block, head, batch):
        """The plain order's tile of (m_block, head, batch)."""
        return m_block + self.m_blocks * (head + self.heads * batch)

    def at(self, t):
        if self.by_work is not None:
            return unflatten(self.by_work[t], (self.m_blocks, self.heads))
        if self.longest_first:
            group_tiles = self.group * self.m_blocks
            first = t // group_tiles * self.group
            size = cutlass.min(self.group, self.heads * self.batch - first)
            within = t % group_tiles
            head_batch = first + within % size
            m_block = self.m_blocks - 1 - within // size
            return m_block, head_batch % self.heads, head_batch // self.heads
        return unflatten(t, (self.m_blocks, self.heads))


def split_blocks(n_block_min, n_block_max, split, splits):
    """[n_block_min, n_block_max) of split `split` of `splits` over a tile's key blocks: the split-th run of
    ceil(blocks / splits) from the lowest, empty where they run out."""
    per_split = cute.ceil_div(n_block_max - n_block_min, splits)
    first = n_block_min + split * per_split
    return first, cutlass.max(cutlass.min(first + per_split, n_block_max), first)


@functools.lru_cache(maxsize=256)  # asked on every backward call: its search costs 1-3 us of host time
def tail_parts(tiles: int, sms: int, blocks: int, part_cost: float, max_parts: int, min_blocks: int) -> tuple:
    """(tail, parts): a launch of `tiles` CTAs of `blocks` steps each, one CTA an SM, ends with tiles % sms of
    them, while the other SMs idle; split into `parts` each, they end soonest, counting each part `part_cost`
    steps more than its own (the cost of a CTA apart from its steps, and its share of merging the parts), at most
    `max_parts` parts of at least `min_blocks` steps. (0, 1): no split pays.

    The count takes the last wave to start at once; after earlier waves of one CTA a tile their ends spread
    out, and a last wave of 68 tiles on 132 SMs ran 0.8% (forward) and 2.5% (backward) slower split, one of 36
    1.5% and 3.0% faster (H100, notes-24): only a last wave of at most a third of the SMs is split."""
    tail = tiles % sms
    if 3 * tail > sms:
        return 0, 1

    def cost(parts):
        return -(-tail * parts // sms) * (-(-blocks // parts) + part_cost)

    allowed = [p for p in range(1, max_parts + 1) if p == 1 or blocks // p >= min_blocks]
    parts = min(allowed, key=lambda p: (cost(p), p))
    return (tail, parts) if parts > 1 else (0, 1)


def tail_row(row, rows, tile, seqlen, heads, batch):
    """(batch, head, position) of row `row` of a split tail's `rows`: the last rows of the (batch, head,
    position) order, each sequence padded to whole tiles of `tile` rows (positions past seqlen are padding)."""
    padded = cute.ceil_div(seqlen, tile) * tile
    flat = batch * heads * padded - rows + row
    return flat // padded // heads, flat // padded % heads, flat % padded


def unflatten(t, extents: tuple):
    """(x, y, z) of index t = x + extents[0] * (y + extents[1] * z)."""
    return t % extents[0], t // extents[0] % extents[1], t // extents[0] // extents[1]


def l2_group(seqlen_k, key_bytes: int, qhead_per_kvhead: int, l2_share_mb: int):
    """The (head, batch) pairs whose K and V, `key_bytes` per key, fit in `l2_share_mb` of L2 (at least one);
    the query heads that share a KV head count once."""
    keys = (l2_share_mb << 20) // key_bytes * qhead_per_kvhead
    return cutlass.max(keys // cutlass.max(seqlen_k, 1), 1)


def grid_size(count, max_ctas, persistent: bool):
    """The CTAs to launch for `count` tiles: one per tile, or, persistent, at most `max_ctas`."""
    return cutlass.min(count, max_ctas) if persistent else count


def by_work(work: torch.Tensor, group: int) -> torch.Tensor:
    """The tiles in launch order, as their indices in the plain order (the last mode of `work` fastest, then
    head, then batch): groups of `group` (head, batch) pairs one after another, as in `TileOrder`, each from its
    most work to its least. work: (batch, heads, blocks), the steps of each tile."""
    work = work.reshape(-1, work.shape[-1]).to(torch.int64)
    pair_group = torch.arange(work.shape[0], device=work.device) // group
    key = (pair_group[:, None] << 32) - work  # needs no bound on the work: reading one back would wait for the GPU
    return key.flatten().argsort(stable=True).to(torch.int32)


@cute.jit
def cta_tile(by_work: Optional[cute.Tensor], shape: tuple):
    """(x, y, z) of this CTA's tile in a grid of `shape`: its block index, or, with an order from `by_work`
    (the kernel launched as a 1-D grid), that order's tile at its place."""
    if cutlass.const_expr(by_work is None):
        return cute.arch.block_idx()
    return unflatten(by_work[cute.arch.block_idx()[0]], shape)


@cute.jit
def claim(counter: cute.Tensor, count, grid):
    """A persistent CTA's next tile, from `counter` (one int32 shared by the launch, 0 at its start): the first
    `grid` tiles are the CTAs' own, each later one goes to the CTA that asks first, and `count` or more means
    none is left. Every CTA asks once more than it is given a tile, so the launch asks `count` times in all; the
    last to ask sets the counter back to 0 for the next launch on the stream, which spares a memset per call.
    One thread of a warp calls this."""
    ticket = cute.arch.atomic_add(counter.iterator, Int32(1), sem="relaxed", scope="gpu")
    if ticket == count - 1:
        counter[0] = Int32(0)
    return grid + ticket


@functools.lru_cache(maxsize=None)
def sm_count(device_index: int) -> int:
    """The SMs of a device: as many CTAs as a persistent kernel launches at most."""
    return torch.cuda.get_device_properties(device_index).multi_processor_count


@functools.lru_cache(maxsize=64)  # a counter dropped from the cache is freed in stream order, after its launches
def _counter(stream: tuple) -> torch.Tensor:
    return torch.zeros(1, dtype=torch.int32, device=torch.device("cuda", stream[1]))


def tile_counter(device: torch.device) -> torch.Tensor:
    """The `claim` counter of launches on the current stream of `device` (a CUDA device with its index):
    launches on one stream run one after another, and each leaves the counter at 0. Kernels on other streams may
    run alongside, so each stream has its own; under CUDA graph capture the graph gets its own as well (the
    memset is captured with the launch)."""
    if torch._C._cuda_isCurrentStreamCapturing():
        return torch.zeros(1, dtype=torch.int32, device=device)
    # torch.cuda.current_stream builds a Stream object; its (stream id, device index, device type) costs less
    return _counter(torch._C._cuda_getCurrentStream(device.index))


FEED_STAGES = 2


@dataclass(frozen=True)
class TileFeed:
    """A persistent CTA's tiles, from its producer warp to its consumer threads: round robin, or, with a
    `counter`, claimed by the producer (`claim`) and passed on through shared memory, a slot per stage of `pipe`.
    Either way the producer `post`s each tile, and then the end (a tile past the last), and the consumers `take`
    them, each side stepping its own state of `pipe` on after every call."""

    count: Int32
    counter: Optional[cute.Tensor] = None
    slots: Optional[cute.Tensor] = None  # (FEED_STAGES,) int32 in shared memory
    pipe: Optional[pipeline.PipelineAsync] = None

    @staticmethod
    def create(count, counter: Optional[cute.Tensor], storage, consumer_threads: int) -> "TileFeed":
        """The feed of a launch of `count` tiles; with a counter, `storage` has `feed_barriers`
        (2 * FEED_STAGES Int64) and `feed_slots` (FEED_STAGES Int32)."""
        if counter is None:
            return TileFeed(count)
        pipe = pipeline.PipelineAsync.create(
            barrier_storage=storage.feed_barriers.data_ptr(), num_stages=FEED_STAGES,
            producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, cute.arch.WARP_SIZE),
            consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, consumer_threads), defer_sync=True)
        return TileFeed(count, counter, storage.feed_slots.get_tensor(cute.make_layout(FEED_STAGES)), pipe)

    @staticmethod
    def state(user: pipeline.PipelineUserType) -> pipeline.PipelineState:
        return pipeline.make_pipeline_state(user, FEED_STAGES)

    @cute.jit
    def after(self, tile):
        """The producer warp's next tile after `tile`."""
        if cutlass.const_expr(self.counter is None):
            return tile + cute.arch.grid_dim()[0]
        next_tile = Int32(0)
        if cute.arch.lane_idx() == 0:
            next_tile = claim(self.counter, self.count, cute.arch.grid_dim()[0])
        return cute.arch.shuffle_sync(next_tile, 0)

    @cute.jit
    def post(self, state: pipeline.PipelineState, tile):
        """The producer warp hands `tile` to the consumers."""
        if cutlass.const_expr(self.counter is not None):
            self.pipe.producer_acquire(state)
            self.slots[state.index] = tile
            self.pipe.producer_commit(state)

    @cute.jit
    def take(self, state: pipeline.PipelineState, round_robin):
        """A consumer thread's next tile: `round_robin` (its first, block_idx.x; then the last plus the grid), or
        the producer's."""
        tile = round_robin
        if cutlass.const_expr(self.counter is not None):
            self.pipe.consumer_wait(state)
            tile = self.slots[state.index]
            self.pipe.consumer_release(state)
        return tile

