"""dQ written by the sm90 backward itself, each part of the workspace once its last key block's add has landed,
in place of a postprocess pass over the whole workspace after the kernel.

Every half-chunk of the workspace (one consumer's half of dQ for one (batch, head, m_block), see `dq_accum`)
counts the key blocks whose adds have landed in it. The writer warp whose add completes the count posts the
half-chunk on a queue in global memory, and the converter warp (the producer warpgroup's spare one) of whichever
CTA looks first takes it: reads the sums back from L2, where they were just added, scales them and stores dQ in
the input dtype. A CTA launched late can be the last adder of every query block of its head, more than one warp
converts in step with it; the queue spreads that work over every CTA. A converter drains the queue once its own
writers have posted their last, so every posted half-chunk is taken before the last CTA exits.
"""

from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
from cutlass import Float32, Int32
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import dsl_user_op

from cuteattn.sm90 import dq_accum

TAKEN, POSTED, JOBS = 0, 1, 2  # the queue: [taken, posted, jobs...]; a job slot holds its half-chunk + 1, 0 until set
POLL_NS = 2000  # a converter with nothing to take sleeps about a step before it looks again (few polls on L2)


def queue_size(chunks: int) -> int:
    """Int32 words of the queue of `chunks` (batch * heads * m_blocks) chunks' halves."""
    return JOBS + chunks * dq_accum.WARPGROUPS


@dsl_user_op
def nanosleep(ns: int, *, loc=None, ip=None):
    llvm.inline_asm(None, [Int32(ns).ir_value(loc=loc, ip=ip)], "nanosleep.u32 $0;", "r", has_side_effects=True,
                    is_align_stack=False, asm_dialect=llvm.AsmDialect.AD_ATT, loc=loc, ip=ip)


@dataclass(frozen=True)
class Queue:
    """Half-chunks of the workspace whose sums are complete, in a zeroed (queue_size,) int32 tensor."""

    mQueue: cute.Tensor

    def word(self, i):
        return self.mQueue.iterator + i

    @cute.jit
    def post(self, job):
        """One thread: job (a half-chunk, (chunk * 2 + half)) is complete. The release orders every add the
        caller has acquired before it."""
        slot = cute.arch.atomic_add(self.word(POSTED), Int32(1), sem="relaxed", scope="gpu")
        cute.arch.store(self.word(JOBS + slot), job + 1, sem="release", scope="gpu")

    @cute.jit
    def take(self) -> Int32:
        """One warp: the slot of a posted job this warp now owns, or -1 if none was free to take."""
        slot = Int32(-1)
        if cute.arch.lane_idx() == 0:
            taken = cute.arch.load(self.word(TAKEN), Int32, sem="relaxed", scope="gpu")
            posted = cute.arch.load(self.word(POSTED), Int32, sem="relaxed", scope="gpu")
            if taken < posted:
                if cute.arch.atomic_cas(self.word(TAKEN), cmp=taken, val=taken + 1, sem="relaxed",
                                        scope="gpu") == taken:
                    slot = taken
        return cute.arch.shuffle_sync(slot, 0)

    @cute.jit
    def job(self, slot) -> Int32:
        """Each lane: the job of a taken slot, once its poster has set it, acquiring the adds before it."""
        entry = Int32(0)
        while entry == 0:
            entry = cute.arch.load(self.word(JOBS + slot), Int32, sem="acquire", scope="gpu")
        return entry - 1


@dataclass(frozen=True)
class Converter:
    """Writes one half-chunk of the workspace into dQ (batch, seqlen_q, heads, head_dim), scaled, by one warp:
    each lane reads back the registers of four of the consumer's threads (`dq_accum.chunk`)."""

    dtype: type
    tile_m: int
    head_dim: int
    by_rows: bool

    @cute.jit
    def __call__(self, job, mdQaccum: cute.Tensor, mdQ: cute.Tensor, scale: Float32, tiled_mma: cute.TiledMma):
        _, heads, m_blocks, _ = mdQaccum.shape
        wg, chunk = job % dq_accum.WARPGROUPS, job // dq_accum.WARPGROUPS
        m_block, head, batch = chunk % m_blocks, chunk // m_blocks % heads, chunk // (m_blocks * heads)
        seqlen_q = mdQ.shape[1]
        tile = (self.tile_m, self.head_dim)
        gdq = dq_accum.view(cute.local_tile(mdQ[batch, None, head, None], tile, (m_block, 0)), *tile, self.by_rows,
                            wg)
        cdq = dq_accum.view(cute.make_identity_tensor(tile), *tile, self.by_rows, wg)
        lanes = cute.arch.WARP_SIZE
        for v in cutlass.range(dq_accum.THREADS_PER_WARPGROUP // lanes, unroll=1):  # unrolled, 24 registers spill
            t = v * lanes + cute.arch.lane_idx()
            thr = tiled_mma.get_slice(t)
            acc = cute.make_rmem_tensor(thr.partition_shape_C(dq_accum.tile(*tile, self.by_rows)), Float32)
            sums = dq_accum.chunk(mdQaccum[batch, head, m_block, None], acc, wg, t)
            out, rows = thr.partition_C(gdq), thr.partition_C(cdq)
            four = cute.make_rmem_tensor((dq_accum.VECTOR,), Float32)
            for g in cutlass.range_constexpr(cute.size(sums, mode=[1])):
                four.store(sums[None, g].load())
                for i in cutlass.range_constexpr(dq_accum.VECTOR):
                    r = g * dq_accum.VECTOR + i
                    if m_block * self.tile_m + rows[r][0] < seqlen_q:
                        out[r] = (four[i] * scale).to(self.dtype)
