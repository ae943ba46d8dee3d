"""Block sparsity from a mask_mod: which (query block, key block) tiles a kernel computes, and which of them
need the mask.

A small kernel evaluates the mask_mod, with the sliding window and the sequence ends, on every element of
every tile and classifies the tile: empty (nothing visible: never loaded), full (everything visible: no
mask), or partial; a partial tile is cut where the mask_mod itself hides a key that the window and the
sequence ends show. Only cut tiles evaluate the mask_mod in the kernels: the window's edges and the sequence
ends the kernels mask on their own, with a compare a score (a causal document mask cuts only the tiles that
straddle two documents, not the diagonal ones). The lists are built from the classes on the GPU and cached per
mask_mod code, captured tensors (identity and version), shapes, window and tile size, so later calls reuse them.

The forward's list, per (batch, head, query block): the key blocks to visit, the partial ones first, last first,
each entry `4 * n_block + 2 * cut + partial`, and their counts. The backward's, per (batch, KV head, key block):
the (query head of the group, query block) pairs to visit, head by head and blocks in order, each entry
`2 * (g * m_blocks + m_block) + cut` (its own window masking needs no flag), their count, and for the
deterministic backward each entry's turn: how many earlier key blocks add into the same query block's dQ. With
each list, the order of the kernel's tiles (CTAs) by their counts, longest first (`tile_scheduler.by_work`).
"""

from __future__ import annotations

import collections
import operator
from dataclasses import dataclass
from typing import Optional

import cuda.bindings.driver as cuda
import torch

import cutlass
import cutlass.cute as cute
from cutlass import Int32

from cuteattn.compile_cache import get_or_compile
from cuteattn.kernel_args import compile_kernel, fake_tensor, launch
from cuteattn.masking import Window, window_args
from cuteattn.registry import compile_target
from cuteattn.mods import fake_captured, lower, tensor_args
from cuteattn.mods.trace import TracedMod, trace_mask_mod
from cuteattn.tile_scheduler import by_work

THREADS = 128
SOME_VISIBLE, SOME_HIDDEN, SOME_CUT = 1, 2, 4  # the bits of a tile's class (SOME_CUT: hidden by the mask_mod)
CACHE_ENTRIES = 32


@dataclass(frozen=True)
class TileClasses:
    """For every tile: SOME_VISIBLE | SOME_HIDDEN | SOME_CUT over its rows inside seqlen_q (keys past seqlen_k
    hidden, not cut)."""

    mask_mod: TracedMod
    tile_q: int
    tile_k: int
    has_window_left: bool
    has_window_right: bool

    @cute.jit
    def __call__(self, mClasses: cute.Tensor, seqlen_q: Int32, seqlen_k: Int32, window_left: Int32,
                 window_right: Int32, mod_tensors: Optional[list], stream: cuda.CUstream):
        # mClasses: (batch or 1, heads or 1, query blocks, key blocks) int32, zeroed
        batch, heads, m_blocks, n_blocks = mClasses.shape
        launch(self.cta_body(mClasses, seqlen_q, seqlen_k, window_left, window_right, mod_tensors),
               (n_blocks, m_blocks, batch * heads), THREADS, stream)

    @cute.kernel
    def cta_body(self, mClasses: cute.Tensor, seqlen_q: Int32, seqlen_k: Int32, window_left: Int32,
                 window_right: Int32, mod_tensors: Optional[list]):
        tidx, _, _ = cute.arch.thread_idx()
        n_block, m_block, bh = cute.arch.block_idx()
        heads = mClasses.shape[1]
        batch, head = bh // heads, bh % heads
        window = Window.of(seqlen_q, seqlen_k, window_left, window_right, self.has_window_left,
                           self.has_window_right)
        tensors = mod_tensors if cutlass.const_expr(mod_tensors is not None) else []
        some_visible, some_hidden, some_cut = Int32(0), Int32(0), Int32(0)
        for i in cutlass.range(self.tile_q * self.tile_k // THREADS, unroll=4):
            flat = i * THREADS + tidx
            q_idx = m_block * self.tile_q + flat // self.tile_k
            kv_idx = n_block * self.tile_k + flat % self.tile_k
            # A key past seqlen_k counts as hidden: a full block then needs no mask at all, not even the tail's.
            if (q_idx < seqlen_q) & (kv_idx >= seqlen_k):
                some_hidden = Int32(SOME_HIDDEN)
            if (q_idx < seqlen_q) & (kv_idx < seqlen_k):
                shown = kv_idx < window.end_key(q_idx)
                if cutlass.const_expr(self.has_window_left):
                    shown = shown & (kv_idx >= window.first_key(q_idx))
                if shown:
                    if lower.apply_mask_mod(self.mask_mod, tensors, batch, head, q_idx, kv_idx):
                        some_visible = Int32(SOME_VISIBLE)
                    else:
                        some_hidden, some_cut = Int32(SOME_HIDDEN), Int32(SOME_CUT)
                else:
                    some_hidden = Int32(SOME_HIDDEN)
        bits = cute.arch.warp_reduction(some_visible | some_hidden | some_cut, operator.or_)
        if cute.arch.lane_idx() == 0:
            cute.arch.atomic_or(mClasses[batch, head, m_block, None].iterator + n_block, bits)


def _compile(op: TileClasses):
    return compile_kernel(op, fake_tensor(cutlass.Int32, 4, aligned=False), Int32(0), Int32(0), Int32(0), Int32(0),
                          fake_captured([op.mask_mod]))


def _reads(traced: TracedMod, name: str) -> bool:
    """Whether the mask_mod reads its argument `name` ("b" or "h")."""
    position = ("b", "h").index(name)
    placeholders = [n for n in traced.graph.graph.nodes if n.op == "placeholder"]
    return len(placeholders[position].users) > 0


_lists: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()


def _tile_classes(opts, batch: int, heads: int, seqlen_q: int, seqlen_k: int, tile_q: int, tile_k: int,
                  device: torch.device) -> torch.Tensor:
    """(batch or 1, heads or 1, query blocks, key blocks) int32 classes: 1 where the mask_mod reads b or h."""
    traced = trace_mask_mod(opts.mask_mod)
    left, right = window_args(opts)
    m_blocks, n_blocks = -(-seqlen_q // tile_q), -(-seqlen_k // tile_k)
    shape = (batch if _reads(traced, "b") else 1, heads if _reads(traced, "h") else 1, m_blocks, n_blocks)
    classes = torch.zeros(shape, dtype=torch.int32, device=device)
    op = TileClasses(traced, tile_q, tile_k, opts.window_left is not None, opts.window_right is not None)
    get_or_compile(("mods.tile_classes", op), lambda: _compile(op))(
        classes, seqlen_q, seqlen_k, left, right, tensor_args([traced], device))
    return classes


def _cached(kind: str, opts, sizes: tuple, build):
    """The lists of `kind` for a call, from the cache or built: keyed by the mask_mod's code, its captured
    tensors (identity, storage and version), the window and `sizes`."""
    traced = trace_mask_mod(opts.mask_mod)
    captured = tuple((id(t), t.data_ptr(), t._version) for t in traced.captured)
    key = (kind, traced.key, captured, opts.window_left, opts.window_right, *sizes)
    hit = _lists.get(key)
    if hit is not None:
        _lists.move_to_end(key)
        return hit
    result = build()
    _lists[key] = result
    if len(_lists) > CACHE_ENTRIES:
        _lists.popitem(last=False)
    return result


def forward_lists(opts, batch: int, heads: int, seqlen_q: int, seqlen_k: int, tile_q: int, tile_k: int,
                  group: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(counts, blocks, tile order) for the forward: counts (batch, heads, query blocks, 2) int32, the listed key
    blocks and how many of them are partial, and blocks (batch, heads, query blocks, key blocks) int32, entries
    `4 * n_block + 2 * cut + partial`, the partial ones first, each class from the last key block down; views that
    broadcast over batch or heads where the mask_mod reads neither. The (query block, head, batch) tiles in
    groups of `group` (head, batch) pairs, each group's longest first."""
    def build():
        classes = _tile_classes(opts, batch, heads, seqlen_q, seqlen_k, tile_q, tile_k, device)
        m_blocks, n_blocks = classes.shape[2:]
        nonempty = (classes & SOME_VISIBLE) != 0
        partial = ((classes & (SOME_VISIBLE | SOME_HIDDEN)) == SOME_VISIBLE | SOME_HIDDEN).int()
        cut = ((classes & SOME_CUT) != 0).int()
        n_block = torch.arange(n_blocks, device=device, dtype=torch.int32)
        entries = torch.where(nonempty, 4 * n_block + 2 * cut + partial, -1)
        order = torch.where(nonempty, n_block + n_blocks * partial, -1).argsort(dim=-1, descending=True)
        blocks = entries.gather(-1, order).int()
        counts = torch.stack((nonempty.sum(dim=-1, dtype=torch.int32), partial.sum(dim=-1, dtype=torch.int32)), -1)
        counts = counts.expand(batch, heads, m_blocks, 2)
        return counts, blocks.expand(batch, heads, m_blocks, n_blocks), by_work(counts[..., 0], group)

    return _cached("forward", opts, (batch, heads, seqlen_q, seqlen_k, tile_q, tile_k, group), build)


def backward_lists(opts, batch: int, heads: int, heads_kv: int, seqlen_q: int, seqlen_k: int, tile_q: int,
                   tile_k: int, l2_group: int, device: torch.device) -> tuple:
    """(count, blocks, turns, tile order) for the backward: count (batch, heads_kv, key blocks) int32, blocks and
    turns (batch, heads_kv, key blocks, group * query blocks) int32; the (key block, KV head, batch) tiles in
    groups of `l2_group` (KV head, batch) pairs, each group's longest first."""
    def build():
        classes = _tile_classes(opts, batch, heads, seqlen_q, seqlen_k, tile_q, tile_k, device)
        m_blocks, n_blocks = classes.shape[2:]
        group = heads // heads_kv
        classes = classes.expand(-1, heads, -1, -1)
        nonempty = (classes & SOME_VISIBLE) != 0
        # Turn of (n_block, m_block): the listed key blocks before it in the same query block.
        turns = (nonempty.int().cumsum(dim=-1) - nonempty.int()).int()
        # (b, kv head, g, m, n) -> (b, kv head, n, g * m)
        def per_key_block(t):
            return t.unflatten(1, (heads_kv, group)).permute(0, 1, 4, 2, 3).flatten(3)

        nonempty_t, cut_t = per_key_block(nonempty), per_key_block((classes & SOME_CUT) != 0)
        g_m = torch.arange(group * m_blocks, device=device, dtype=torch.int32)
        unlisted = 2 * group * m_blocks  # sorts after every listed entry
        entries = torch.where(nonempty_t, 2 * g_m + cut_t.int(), unlisted)
        blocks, order = entries.sort(dim=-1)
        turns = per_key_block(turns).gather(-1, order)
        count = nonempty_t.sum(dim=-1, dtype=torch.int32)
        lists = tuple(t.contiguous().expand(batch, *t.shape[1:]) for t in (count, blocks.int(), turns))
        return (*lists, by_work(lists[0], l2_group))

    return _cached("backward", opts, (batch, heads, heads_kv, seqlen_q, seqlen_k, tile_q, tile_k, l2_group), build)


def sample_mods() -> tuple:
    """A score_mod and a mask_mod that read captured tensors (one of them requires grad): the compile checks'
    stand-ins for a user's mods."""
    bias = torch.zeros(4, 511, requires_grad=True)
    documents = torch.zeros(2, 1024, dtype=torch.int32)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]

    def document_causal(b, h, q_idx, kv_idx):
        return (documents[b, q_idx] == documents[b, kv_idx]) & (q_idx >= kv_idx)

    return rel_bias, document_causal


@compile_target("mods.tile_classes", "sm_90a")
def build() -> None:
    _, mask_mod = sample_mods()
    for has_window_left, has_window_right in ((False, False), (True, True)):
        _compile(TileClasses(trace_mask_mod(mask_mod), 128, 128, has_window_left, has_window_right))
