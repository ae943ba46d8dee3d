"""Split-KV forward, second kernel: the partial outputs of a row's key splits merged into its out and lse.

Split s of a row attended to its own share of the keys: its output O_s, normalized over those keys, and their
log-sum-exp lse_s (-inf where the row sees none of them). The row's lse is the log-sum-exp of the lse_s, and
its output sum_s exp(lse_s - lse) O_s. One thread takes four consecutive elements of one row's head_dim_v: it
reads the row's lse_s itself (few, and shared in L1 with its neighbours) and needs no exchange.

The rows may be packed query heads (the forward's `pack_gqa`): partial row r of KV head g is query r // pack of
head g * pack + r % pack (`fwd_kernel.packed_rows`), written in place: nothing is copied back.

A split tail (`TailCombine`) has parts for the launch's last tiles only: their rows, in the order of the tiles
(m_block fastest, then head, then batch), each tile_m rows, the last tile's past seqlen_q unwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Type

import cuda.bindings.driver as cuda
import torch

import cutlass
import cutlass.cute as cute
from cutlass import Float32

from cuteattn.compile_cache import get_or_compile
from cuteattn.kernel_args import TORCH_TO_CUTE, compile_kernel, fake_tensor, launch
from cuteattn.registry import compile_target
from cuteattn.softmax import LN_2, LOG2_E
from cuteattn.sm90.fwd_kernel import packed_rows
from cuteattn.tile_scheduler import tail_row

VECTOR = 4  # fp32 elements a thread takes of a row
THREADS = 128


@dataclass(frozen=True)
class SplitCombine:
    dtype: Type[cutlass.Numeric]
    head_dim_v: int
    pack: int = 1  # query heads a partial row packs (`pack_gqa`)

    def __post_init__(self):
        assert self.head_dim_v % VECTOR == 0, f"head_dim_v must be a multiple of {VECTOR}"

    @cute.jit
    def __call__(
        self,
        mOpart: cute.Tensor,  # (splits, batch, rows, heads_kv or heads, head_dim_v) fp32, rows = seqlen_q * pack
        mLSEpart: cute.Tensor,  # (splits, batch, heads_kv or heads, rows) fp32
        mO: cute.Tensor,  # (batch, seqlen_q, heads, head_dim_v)
        mLSE: cute.Tensor,  # (batch, heads, seqlen_q) fp32
        stream: cuda.CUstream,
    ):
        if cutlass.const_expr(self.pack > 1):
            mO = cute.make_tensor(mO.iterator, packed_rows(mO.layout, self.pack, 1, 2))
            mLSE = cute.make_tensor(mLSE.iterator, packed_rows(mLSE.layout, self.pack, 2, 1))
        _, batch, rows, heads, _ = mOpart.shape
        threads = batch * rows * heads * (self.head_dim_v // VECTOR)
        launch(self.cta_body(mOpart, mLSEpart, mO, mLSE), (cute.ceil_div(threads, THREADS), 1, 1), THREADS, stream)

    @cute.kernel
    def cta_body(self, mOpart: cute.Tensor, mLSEpart: cute.Tensor, mO: cute.Tensor, mLSE: cute.Tensor):
        tidx, _, _ = cute.arch.thread_idx()
        _, batch, rows, heads, _ = mOpart.shape
        vectors = self.head_dim_v // VECTOR
        t = cute.arch.block_idx()[0] * THREADS + tidx
        if t < batch * rows * heads * vectors:
            # Threads go along head_dim_v, then heads, rows and batch: the partial outputs' memory order.
            col = t % vectors * VECTOR
            head = t // vectors % heads
            row = t // vectors // heads % rows
            b = t // vectors // heads // rows
            merge(mOpart[None, b, row, head, None], mLSEpart[None, b, head, row], col, mO[b, row, head, None],
                  mLSE, (b, head, row))


@cute.jit
def merge(parts: cute.Tensor, lse_parts: cute.Tensor, col, out: cute.Tensor, mLSE: cute.Tensor, lse_at):
    """One thread's share of a row: out[col:col + VECTOR] from the splits' parts (splits, head_dim_v) and their
    lse_parts (splits,); mLSE[lse_at], where col is 0."""
    splits = cute.size(lse_parts)
    max_lse = -Float32.inf
    for s in cutlass.range(splits, unroll=1):
        max_lse = cute.arch.fmax(max_lse, lse_parts[s])
    # A row that sees no key in any split: every lse_s is -inf; shifted by 0, every weight is 0, not NaN, and so
    # is out, while its lse is -inf.
    shift = max_lse * LOG2_E if max_lse != -Float32.inf else Float32(0.0)
    total = Float32(0.0)
    for s in cutlass.range(splits, unroll=1):
        total += cute.math.exp2(lse_parts[s] * LOG2_E - shift, fastmath=True)
    lse_log2 = shift + cute.math.log2(total, fastmath=True) if total > Float32(0.0) else Float32(0.0)
    acc = cute.make_rmem_tensor((VECTOR,), Float32)
    acc.fill(0.0)
    for s in cutlass.range(splits, unroll=1):
        weight = cute.math.exp2(lse_parts[s] * LOG2_E - lse_log2, fastmath=True)
        for i in cutlass.range_constexpr(VECTOR):
            acc[i] += weight * parts[s, col + i]
    for i in cutlass.range_constexpr(VECTOR):
        out[col + i] = acc[i].to(out.element_type)
    if col == 0:
        mLSE[lse_at] = lse_log2 * LN_2 if total > Float32(0.0) else -Float32.inf


@dataclass(frozen=True)
class TailCombine:
    """The merge of a split tail's parts (`fwd_kernel.FlashFwdSm90.split_tail`)."""

    dtype: Type[cutlass.Numeric]
    head_dim_v: int
    tile_m: int

    def __post_init__(self):
        assert self.head_dim_v % VECTOR == 0, f"head_dim_v must be a multiple of {VECTOR}"

    @cute.jit
    def __call__(
        self,
        mOpart: cute.Tensor,  # (splits, rows, head_dim_v) fp32, rows a multiple of tile_m
        mLSEpart: cute.Tensor,  # (splits, rows) fp32
        mO: cute.Tensor,  # (batch, seqlen_q, heads, head_dim_v)
        mLSE: cute.Tensor,  # (batch, heads, seqlen_q) fp32
        stream: cuda.CUstream,
    ):
        threads = mOpart.shape[1] * (self.head_dim_v // VECTOR)
        launch(self.cta_body(mOpart, mLSEpart, mO, mLSE), (cute.ceil_div(threads, THREADS), 1, 1), THREADS, stream)

    @cute.kernel
    def cta_body(self, mOpart: cute.Tensor, mLSEpart: cute.Tensor, mO: cute.Tensor, mLSE: cute.Tensor):
        tidx, _, _ = cute.arch.thread_idx()
        batch, seqlen_q, heads, _ = mO.shape
        rows = mOpart.shape[1]
        vectors = self.head_dim_v // VECTOR
        t = cute.arch.block_idx()[0] * THREADS + tidx
        b, head, row = tail_row(t // vectors, rows, self.tile_m, seqlen_q, heads, batch)
        if t < rows * vectors:
            if row < seqlen_q:
                col = t % vectors * VECTOR
                merge(mOpart[None, t // vectors, None], mLSEpart[None, t // vectors], col, mO[b, row, head, None],
                      mLSE, (b, head, row))


def _compile(op: SplitCombine):
    return compile_kernel(op, fake_tensor(Float32, 5), fake_tensor(Float32, 4, aligned=False),
                          fake_tensor(op.dtype, 4), fake_tensor(Float32, 3, aligned=False))


def _compile_tail(op: TailCombine):
    return compile_kernel(op, fake_tensor(Float32, 3), fake_tensor(Float32, 2, aligned=False),
                          fake_tensor(op.dtype, 4), fake_tensor(Float32, 3, aligned=False))


def tail_combiner(dtype: torch.dtype, head_dim_v: int, tile_m: int):
    """The compiled merge of (out_partial, lse_partial, out, lse) for a split tail: out_partial (splits, rows,
    head_dim_v) and lse_partial (splits, rows) fp32, the rows of the launch's last rows // tile_m tiles."""
    op = TailCombine(TORCH_TO_CUTE[dtype], head_dim_v, tile_m)
    return get_or_compile(("sm90.fwd_combine", op), lambda: _compile_tail(op))


def combiner(dtype: torch.dtype, head_dim_v: int, pack: int = 1):
    """The compiled merge of (out_partial, lse_partial, out, lse): out (batch, seqlen_q, heads, head_dim_v) and lse
    (batch, heads, seqlen_q) from the splits' partial ones, out_partial (splits, batch, seqlen_q * pack,
    heads // pack, head_dim_v) fp32 and lse_partial (splits, batch, heads // pack, seqlen_q * pack) fp32, their
    rows packed query heads where pack > 1."""
    op = SplitCombine(TORCH_TO_CUTE[dtype], head_dim_v, pack)
    return get_or_compile(("sm90.fwd_combine", op), lambda: _compile(op))


@compile_target("sm90.fwd_combine", "sm_90a")
def build() -> None:
    for dtype, head_dim_v, pack in ((cutlass.BFloat16, 128, 1), (cutlass.Float16, 64, 4), (cutlass.BFloat16, 96, 8)):
        _compile(SplitCombine(dtype, head_dim_v, pack))
    _compile_tail(TailCombine(cutlass.BFloat16, 128, 128))
