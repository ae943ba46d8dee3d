"""The sm90 backward's fixed layout (warps, named barriers, registers) and `BwdConfig`, its tunable choices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

KEYS_PER_WARPGROUP = 64  # the M of one wgmma
CONSUMERS = 2
TILE_N = KEYS_PER_WARPGROUP * CONSUMERS
THREADS_PER_WARPGROUP = 128
# 240 * 256 + 24 * 128 = 168 * 384, what the CTA holds at entry: setmaxnreg.inc waits for the rest.
PRODUCER_REGISTERS = 24
CONSUMER_REGISTERS = 240
DS_BARRIER = 1  # named barrier: both consumers have written their dS^T; 0 is __syncthreads
DQ_FULL_BARRIER = 2  # + consumer index: the consumer's dQ is in shared memory
DQ_EMPTY_BARRIER = 4  # + consumer index: its writer has read that dQ, the buffer is free
DKV_BARRIER = 6  # + consumer index: the consumer's dK and dV are in shared memory
TABLE_BARRIER = 8  # + consumer index: the consumer's difference table (`mods.tile.DifferenceTable`)
DQ_WRITER_WARP = 1  # + consumer index: the producer warpgroup's warp that adds the consumer's dQ
DS_BUFFERS = 2  # one consumer may write step i + 1's dS while the other still reads step i's
L2_SHARE_MB = 16  # under a mask_mod's tile order, the L2 that one group of KV heads' Q and dO may take


@dataclass(frozen=True)
class BwdConfig:
    """The kernel's tunable choices."""

    tile_m: int = 64  # query rows per step: the N of S^T
    num_stages: int = 2  # depth of the Q pipeline, and of dO's unless do_stages
    do_stages: Optional[int] = None  # depth of the dO pipeline where it differs from Q's
    # The dQ GEMM is issued before dK's, and dQ goes to shared memory while dK runs (FA4's order); off: every
    # step waits for dK and dQ together, and its dQ handover runs with no GEMM in flight.
    overlap_dq: bool = False
    # The consumers split dK, dV and dQ by columns, P^T and dS^T through shared memory (`bwd_kernel_split_d`),
    # over tile_n keys per CTA (a multiple of 64); always so where one consumer cannot hold dK and dV of its
    # keys (head_dim > 128 or head_dim_v != head_dim) and head_dim_on_m is off.
    split_columns: bool = False
    # dK^T and dV^T accumulate with the head dim on the wgmma's M, each consumer over tile_n / 2 keys
    # (`bwd_kernel_wide`): hdim 192, where the column split's 64 keys a CTA read each Q and dO tile for few keys;
    # H100, 16k tokens: 358-488 TFLOP/s against the column split's 294-404 (notes-33).
    head_dim_on_m: bool = False
    tile_n: int = 64  # keys per CTA under split_columns or head_dim_on_m; the key split takes 64 per consumer
    # With tile_m 128 (the key split): each consumer's dQ is its 64 queries' rows over all columns, not all
    # rows over half the columns. Half the wgmmas, each twice as wide, so dS is read from shared memory half
    # as often per FLOP (hdim 64: 32 wgmmas a step against 40, like FA4's). hdim 64, H200: 387 TFLOP/s against
    # 374 at 1k, 483 against 463 at 16k (notes-8).
    dq_by_rows: bool = False
    # dK and dV leave through shared memory in 16-byte pieces of whole rows (the key split); off: stored from
    # the accumulators' registers, 4 bytes a lane. H200, 1k: hdim 128 462 TFLOP/s against 439, causal 347
    # against 320 (notes-8).
    stage_dkv: bool = True
    # The launch's last, part-full wave of key blocks split among CTAs where that ends it sooner
    # (`backward.tail_split`); a choice of the host, which compiles the kernel for the parts it takes.
    tail_split: bool = True
    # lse is loaded into registers once the S^T GEMM is issued, dpsum once P^T is computed, each under a GEMM in
    # flight (FA4's order); off, over 64 rows: both before the GEMM they follow; over more, or under a score_mod:
    # read from shared memory where used. With dv_under_fence at 80 rows: hdim 128's unmasked default
    # (`backward.CONFIGS`; faster than 64 rows from 2k up, slower causal: notes-36, -37).
    prefetch_stats: bool = False
    # Over more than 64 rows: the dV GEMM issued before the fence that orders dS^T's stores, which waits for them.
    dv_under_fence: bool = False
