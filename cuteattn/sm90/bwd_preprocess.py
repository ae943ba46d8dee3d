"""Attention backward preprocess for sm_90a: dpsum = rowsum(dO * O) and lse in log2 units.

The outputs may be longer than seqlen (rounded up to the backward's query tile): the rows past seqlen get
zeros. One CTA takes `tile_m` consecutive query rows of one (batch, head). Each row of head_dim_v elements
is read with 16-byte vector loads by `threads_per_row` neighbouring lanes, which sum their fp32
partial dot products with warp shuffles.

With `zero_dq` it also zeroes the backward's fp32 dQ workspace, `padded * head_dim` floats per (batch, head),
each CTA its own rows' share, so the backward needs no memset of its own. Once a CTA's loads are issued it lets
the next kernel in the stream, the backward launched with programmatic dependent launch, start its prologue.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Optional, Type

import cuda.bindings.driver as cuda
import torch

import cutlass
import cutlass.cute as cute
from cutlass import Float32

from cuteattn.checks import check_layout
from cuteattn.compile_cache import get_or_compile
from cuteattn.kernel_args import TORCH_TO_CUTE, aligned_view, compile_kernel, fake_tensor, launch
from cuteattn.registry import compile_target

LOG2_E = math.log2(math.e)
VECTOR_BITS = 128
DQ_VECTOR = VECTOR_BITS // Float32.width
MAX_GRID_Y = 65535



@dataclass(frozen=True)
class BwdPreprocess:
    dtype: Type[cutlass.Numeric]
    head_dim_v: int
    tile_m: int = 64
    num_threads: int = 128
    zero_dq: bool = False  # also zero the backward's dQ workspace

    @classmethod
    def for_head_dim(cls, dtype: Type[cutlass.Numeric], head_dim_v: int, zero_dq: bool = False) -> BwdPreprocess:
        """64 rows a CTA; 64 threads where a row has an odd number of vectors, so one thread each."""
        vectors = head_dim_v // (VECTOR_BITS // dtype.width)
        return cls(dtype, head_dim_v, num_threads=128 if vectors % 2 == 0 else 64, zero_dq=zero_dq)

    def __post_init__(self):
        assert self.head_dim_v % self.vector_size == 0, f"head_dim_v must be a multiple of {self.vector_size}"
        assert self.num_threads % cute.arch.WARP_SIZE == 0
        assert self.tile_m % self.rows_per_pass == 0 and self.tile_m <= self.num_threads

    @property
    def vector_size(self) -> int:
        return VECTOR_BITS // self.dtype.width

    @property
    def threads_per_row(self) -> int:
        """The largest power of two, at most a warp, that splits a row into whole vectors."""
        vectors = self.head_dim_v // self.vector_size
        return min(vectors & -vectors, cute.arch.WARP_SIZE)

    @property
    def rows_per_pass(self) -> int:
        return self.num_threads // self.threads_per_row

    @cute.jit
    def __call__(
        self,
        mO: cute.Tensor,  # (batch, seqlen, heads, head_dim_v)
        mdO: cute.Tensor,  # (batch, seqlen, heads, head_dim_v)
        mLSE: cute.Tensor,  # (batch, heads, seqlen)
        mdPsum: cute.Tensor,  # (batch, heads, seqlen or more)
        mLSElog2: cute.Tensor,  # (batch, heads, seqlen or more)
        mdQaccum: Optional[cute.Tensor],  # with zero_dq: (batch, heads, padded * head_dim) fp32
        stream: cuda.CUstream,
    ):
        batch, _, heads, _ = mO.shape
        tiled_copy = cute.make_tiled_copy_tv(
            cute.make_copy_atom(cute.nvgpu.CopyUniversalOp(), self.dtype, num_bits_per_copy=VECTOR_BITS),
            cute.make_ordered_layout((self.rows_per_pass, self.threads_per_row), order=(1, 0)),
            cute.make_layout((1, self.vector_size)),
        )
        # Heads vary fastest across the grid, so the CTAs in flight read neighbouring memory.
        launch(self.cta_body(mO, mdO, mLSE, mdPsum, mLSElog2, mdQaccum, tiled_copy),
               (heads, cute.ceil_div(mdPsum.shape[2], self.tile_m), batch), self.num_threads, stream)

    @cute.kernel
    def cta_body(
        self,
        mO: cute.Tensor,
        mdO: cute.Tensor,
        mLSE: cute.Tensor,
        mdPsum: cute.Tensor,
        mLSElog2: cute.Tensor,
        mdQaccum: Optional[cute.Tensor],
        tiled_copy: cute.TiledCopy,
    ):
        tidx, _, _ = cute.arch.thread_idx()
        head, m_block, batch = cute.arch.block_idx()
        seqlen, padded = mO.shape[1], mdPsum.shape[2]
        tile = (self.tile_m, self.head_dim_v)

        thr_copy = tiled_copy.get_slice(tidx)
        tOgO = thr_copy.partition_S(cute.local_tile(mO[batch, None, head, None], tile, (m_block, 0)))
        tOgdO = thr_copy.partition_S(cute.local_tile(mdO[batch, None, head, None], tile, (m_block, 0)))
        tOcO = thr_copy.partition_S(
            cute.local_tile(cute.make_identity_tensor((seqlen, self.head_dim_v)), tile, (m_block, 0))
        )
        tOrO = cute.make_fragment_like(tOgO)
        tOrdO = cute.make_fragment_like(tOgdO)
        tOrO.fill(0.0)
        tOrdO.fill(0.0)
        num_row_iters = cute.size(tOgO, mode=[1])
        for m in cutlass.range_constexpr(num_row_iters):
            if tOcO[0, m, 0][0] < seqlen:
                cute.copy(tiled_copy, tOgO[None, m, None], tOrO[None, m, None])
                cute.copy(tiled_copy, tOgdO[None, m, None], tOrdO[None, m, None])
        # The backward may start its prologue now; it waits for this grid before reading what it writes.
        cute.arch.griddepcontrol_launch_dependents()
        if cutlass.const_expr(self.zero_dq):
            self.zero_rows(mdQaccum[batch, head, None], m_block, padded, tidx)

        prod = cute.make_fragment_like(tOrO, Float32)
        prod.store(tOrO.load().to(Float32) * tOrdO.load().to(Float32))
        for m in cutlass.range_constexpr(num_row_iters):
            dot = prod[None, m, None].load().reduce(cute.ReductionOp.ADD, Float32(0.0), 0)
            # Every lane joins the shuffles, also those whose row is past seqlen.
            dot = cute.arch.warp_reduction(dot, operator.add, threads_in_group=self.threads_per_row)
            row = tOcO[0, m, 0][0]
            if tidx % self.threads_per_row == 0 and row < padded:
                mdPsum[batch, head, row] = dot  # 0 past seqlen: the loads left zeros

        row = m_block * self.tile_m + tidx
        if tidx < self.tile_m and row < padded:
            lse = -Float32.inf
            if row < seqlen:
                lse = mLSE[batch, head, row]
            mLSElog2[batch, head, row] = Float32(0.0) if lse == -Float32.inf else lse * LOG2_E

    @cute.jit
    def zero_rows(self, workspace: cute.Tensor, m_block, padded, tidx):
        """Zero this CTA's rows' share of one (batch, head)'s workspace: rows [m_block * tile_m, up to padded)
        times head_dim floats, in 16-byte stores."""
        row_vectors = workspace.shape[0] // padded // DQ_VECTOR
        # A static vector mode keeps the stores' 16-byte alignment visible to the compiler.
        vectors = cute.make_tensor(workspace.iterator,
                                   cute.make_layout((DQ_VECTOR, workspace.shape[0] // DQ_VECTOR)))
        zeros = cute.make_rmem_tensor((DQ_VECTOR,), Float32)
        zeros.fill(0.0)
        first = m_block * self.tile_m
        end = cutlass.min(first + self.tile_m, padded) * row_vectors
        for v in cutlass.range(first * row_vectors + tidx, end, self.num_threads, unroll=4):
            vectors[None, v].store(zeros.load())


def _compile(op: BwdPreprocess):
    o, do = (fake_tensor(op.dtype, 4) for _ in range(2))
    lse, dpsum, lse_log2 = (fake_tensor(Float32, 3, aligned=False) for _ in range(3))
    dq_accum = fake_tensor(Float32, 3) if op.zero_dq else None
    return compile_kernel(op, o, do, lse, dpsum, lse_log2, dq_accum)


def bwd_preprocess(
    out: torch.Tensor,
    dout: torch.Tensor,
    lse: torch.Tensor,
    dpsum: torch.Tensor | None = None,
    lse_log2: torch.Tensor | None = None,
    dq_accum: torch.Tensor | None = None,
):
    """`cuteattn.reference.bwd_preprocess` on the GPU: returns (dpsum, lse_log2), (batch, heads, seqlen) fp32.

    `out` and `dout` are (batch, seqlen, heads, head_dim_v) bf16 or fp16; `dpsum` and `lse_log2` may be
    given preallocated (fp32, unit stride along seqlen), also longer than seqlen: their extra rows get 0.
    `dq_accum`, the backward's dQ workspace, is zeroed when given: (batch, heads, ...) fp32, contiguous, of
    padded * head_dim floats a (batch, head), where padded = dpsum.shape[2] and head_dim is a multiple of 4.
    """
    batch, seqlen, heads, head_dim_v = out.shape
    assert out.is_cuda and dout.shape == out.shape and dout.dtype == out.dtype, "out and dout must match, on the GPU"
    assert lse.shape == (batch, heads, seqlen) and lse.dtype == torch.float32, "lse must be (batch, heads, seqlen) fp32"
    op = BwdPreprocess.for_head_dim(TORCH_TO_CUTE[out.dtype], head_dim_v, zero_dq=dq_accum is not None)
    for name, t in (("out", out), ("dout", dout)):
        check_layout("bwd_preprocess", name, t)
    if lse.stride(-1) != 1:
        lse = lse.contiguous()
    if dpsum is None:
        dpsum = torch.empty(batch, heads, seqlen, dtype=torch.float32, device=out.device)
    if lse_log2 is None:
        lse_log2 = torch.empty(batch, heads, seqlen, dtype=torch.float32, device=out.device)
    for t in (dpsum, lse_log2):
        assert t.shape[:2] == lse.shape[:2] and t.shape[2] >= seqlen and t.dtype == torch.float32 \
            and t.stride(-1) == 1 and t.shape == dpsum.shape
    padded = dpsum.shape[2]
    assert (padded + op.tile_m - 1) // op.tile_m <= MAX_GRID_Y, f"seqlen must be at most {MAX_GRID_Y * op.tile_m}"
    if dpsum.numel() == 0:
        return dpsum, lse_log2
    if dq_accum is not None:
        assert dq_accum.shape[:2] == lse.shape[:2] and dq_accum.dtype == torch.float32 and dq_accum.is_contiguous() \
            and dq_accum.data_ptr() % 16 == 0, "dq_accum must be (batch, heads, ...) fp32, contiguous, 16-byte aligned"
        dq_accum = dq_accum.view(batch, heads, -1)
        assert dq_accum.shape[2] % (padded * DQ_VECTOR) == 0, \
            "dq_accum must hold padded * head_dim floats a (batch, head), head_dim a multiple of 4"

    compiled = get_or_compile(("sm90.bwd_preprocess", op), lambda: _compile(op))
    compiled(aligned_view(out), aligned_view(dout), lse, dpsum, lse_log2,
             None if dq_accum is None else aligned_view(dq_accum))
    return dpsum, lse_log2


@compile_target("sm90.bwd_preprocess", "sm_90a")
def build() -> None:
    for dtype in (cutlass.BFloat16, cutlass.Float16):
        for head_dim_v in (64, 128):
            for zero_dq in (False, True):
                _compile(BwdPreprocess.for_head_dim(dtype, head_dim_v, zero_dq))
