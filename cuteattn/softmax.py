"""Online softmax over the rows a thread owns in a wgmma accumulator (four lanes share a row).

The state is two register vectors, `row_max` (in the units of the scores held) and `row_sum`; exp2 folds
the scale of those units in through `scale_log2`: softmax_scale * log2(e) for raw scores q.k, or
softcap * log2(e) for softcapped scores held as tanh(q.k * softmax_scale / softcap).
"""

import math
import operator

import cutlass
import cutlass.cute as cute
from cutlass import Float32

LN_2 = math.log(2.0)
LOG2_E = math.log2(math.e)
LANES_PER_ROW = 4


def _quad_max(x):
    return cute.arch.warp_reduction(x, cute.arch.fmax, threads_in_group=LANES_PER_ROW)


def _quad_sum(x):
    return cute.arch.warp_reduction(x, operator.add, threads_in_group=LANES_PER_ROW)


def init_state(num_rows: int):
    """(row_max, row_sum) for `num_rows` rows: -inf and 0."""
    row_max = cute.make_rmem_tensor((num_rows,), Float32)
    row_sum = cute.make_rmem_tensor((num_rows,), Float32)
    row_max.fill(-Float32.inf)
    row_sum.fill(0.0)
    return row_max, row_sum


@cute.jit
def softcap(s: cute.Tensor, tanh_scale: Float32):
    """Raw scores to softcapped ones in units of softcap, in place: tanh_scale = softmax_scale / softcap."""
    for i in cutlass.range_constexpr(cute.size(s)):
        s[i] = cute.math.tanh(s[i] * tanh_scale, approx=True)


@cute.jit
def step(s: cute.Tensor, row_max: cute.Tensor, row_sum: cute.Tensor, scale_log2: Float32, rescale: cute.Tensor,
         threshold: cutlass.Constexpr = None):
    """Turn scores `s` (rows, cols) into probabilities in place; `rescale` receives, per row, the factor
    that brings what was accumulated under the old row max to the new one.

    With a `threshold` (log2 units), the running max is kept unless the tile's exceeds it by more than that:
    the probabilities stay under 2^threshold, and most blocks leave O alone (rescale 1)."""
    for r in cutlass.range_constexpr(cute.size(row_max)):
        tile_max = _quad_max(s[r, None].load().reduce(cute.ReductionOp.MAX, -Float32.inf, 0))
        moved = True
        new_max = cute.arch.fmax(row_max[r], tile_max)
        if cutlass.const_expr(threshold is not None):
            # False for a row with nothing visible yet (-inf - -inf is NaN): it keeps max -inf.
            moved = (tile_max - row_max[r]) * scale_log2 > threshold
            new_max = tile_max if moved else row_max[r]
        # A row with nothing visible yet keeps max -inf; shift it by 0 so exp2 gives 0, not NaN.
        shift = new_max * scale_log2 if new_max != -Float32.inf else Float32(0.0)
        rescale[r] = cute.math.exp2(row_max[r] * scale_log2 - shift, fastmath=True) if moved else Float32(1.0)
        p = cute.math.exp2(s[r, None].load() * scale_log2 - shift, fastmath=True)
        s[r, None].store(p)
        row_max[r] = new_max
        row_sum[r] = row_sum[r] * rescale[r] + p.reduce(cute.ReductionOp.ADD, Float32(0.0), 0)


@cute.jit
def rescale_rows(acc_o: cute.Tensor, rescale: cute.Tensor):
    """acc_o's rows times `rescale`, skipped where no row of the warp moved its max."""
    moved = False
    for r in cutlass.range_constexpr(cute.size(rescale)):
        moved = moved | (rescale[r] != Float32(1.0))
    if cute.arch.vote_any_sync(moved):
        for r in cutlass.range_constexpr(cute.size(rescale)):
            acc_o[r, None].store(acc_o[r, None].load() * rescale[r])


@cute.jit
def _join_sink(max_log2, total, sink_log2):
    """Add the sink to a row's sum under the larger of the two maxima (log2 units).

    Returns the new max, the new sum and the factor that brings the row's accumulator to the new max.
    """
    new_max = cute.arch.fmax(max_log2, sink_log2)
    shift = new_max if new_max != -Float32.inf else Float32(0.0)
    rescale = cute.math.exp2(max_log2 - shift, fastmath=True)
    return shift, total * rescale + cute.math.exp2(sink_log2 - shift, fastmath=True), rescale


@cute.jit
def finish(acc_o: cute.Tensor, row_max: cute.Tensor, row_sum: cute.Tensor, scale_log2: Float32, lse: cute.Tensor,
           sink_log2=None):
    """Normalize the output rows; write each row's log-sum-exp (natural log, -inf if empty) to `lse`.
    `sink_log2`, if given: the learnable sink's logit times log2(e), which joins every row's sum."""
    for r in cutlass.range_constexpr(cute.size(row_max)):
        total = _quad_sum(row_sum[r])
        max_log2 = row_max[r] * scale_log2
        if cutlass.const_expr(sink_log2 is not None):
            max_log2, total, rescale = _join_sink(max_log2, total, sink_log2)
        empty = total == Float32(0.0)
        inv_sum = Float32(0.0) if empty else cute.arch.rcp_approx(total)
        if cutlass.const_expr(sink_log2 is not None):
            inv_sum = inv_sum * rescale
        acc_o[r, None].store(acc_o[r, None].load() * inv_sum)
        lse[r] = -Float32.inf if empty else (max_log2 + cute.math.log2(total, fastmath=True)) * LN_2
