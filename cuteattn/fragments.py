"""Register views of warpgroup-MMA accumulators, shared by the kernels.

A wgmma accumulator fragment of an (M, N) tile holds, per thread, values indexed
((col_pair, row_half, col_block), mma_m, mma_n): two neighbouring columns, two rows eight apart, and one
such group per 8-column block.
"""

import cutlass.cute as cute


def rowcol(t: cute.Tensor) -> cute.Tensor:
    """The same registers indexed (row, col): rows (row_half, mma_m), cols (col_pair, col_block, mma_n)."""
    (pair, half, blocks), mma_m, mma_n = t.layout.shape
    (d_pair, d_half, d_blocks), d_m, d_n = t.layout.stride
    layout = cute.make_layout(((half, mma_m), (pair, blocks, mma_n)),
                              stride=((d_half, d_m), (d_pair, d_blocks, d_n)))
    return cute.make_tensor(t.iterator, layout)


def as_a_operand(t: cute.Tensor) -> cute.Tensor:
    """An (M, N) accumulator read as the register A operand of a wgmma with K = N.

    Two neighbouring 8-column blocks of the accumulator are exactly one 16-wide K block of the A fragment,
    so this only regroups the column blocks in pairs: ((pair, half, 2), mma_m, blocks / 2).
    """
    (pair, half, blocks), mma_m, mma_n = t.layout.shape
    (d_pair, d_half, d_blocks), d_m, d_n = t.layout.stride
    assert mma_n == 1 and blocks % 2 == 0
    layout = cute.make_layout(((pair, half, 2), mma_m, blocks // 2),
                              stride=((d_pair, d_half, d_blocks), d_m, 2 * d_blocks))
    return cute.make_tensor(t.iterator, layout)
