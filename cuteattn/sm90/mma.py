"""Issuing warpgroup MMAs (wgmma): one asynchronous commit group per GEMM."""

import cutlass
import cutlass.cute as cute
from cutlass.cute.nvgpu import warpgroup


@cute.jit
def gemm(tiled_mma: cute.TiledMma, acc: cute.Tensor, a: cute.Tensor, b: cute.Tensor,
         zero_init: cutlass.Constexpr[bool]):
    """acc = a b (zero_init) or acc += a b, over the K blocks of the fragments a (M, K) and b (N, K).

    Asynchronous: the caller waits with `warpgroup.wait_group`, and leaves a register operand and acc alone
    until then. An accumulating call expects the tiled MMA's accumulate field set to True; zero_init sets the
    field on a copy, so that the caller's tiled MMA stays as it was (the DSL cannot carry a field changed in a
    loop or branch out of it).
    """
    if cutlass.const_expr(zero_init):
        tiled_mma = tiled_mma.with_()
        tiled_mma.set(warpgroup.Field.ACCUMULATE, False)
    warpgroup.fence()
    for k in cutlass.range_constexpr(cute.size(a, mode=[2])):
        cute.gemm(tiled_mma, acc, a[None, None, k], b[None, None, k], acc)
        if cutlass.const_expr(zero_init):
            tiled_mma.set(warpgroup.Field.ACCUMULATE, True)
    warpgroup.commit_group()
