"""TMA loads through mbarrier pipelines: one producer thread fills stages, consumer warps drain them."""

import cutlass.cute as cute
import cutlass.pipeline as pipeline
from cutlass.cute.nvgpu import cpasync


def make_pipeline(barriers, stages: int, tx_bytes: int, consumer_warps: int) -> pipeline.PipelineTmaAsync:
    """A pipeline whose stages are full once `tx_bytes` have landed; each consumer warp frees a stage once.
    Its barriers are initialized by the caller's `pipeline_init_arrive` / `pipeline_init_wait`."""
    return pipeline.PipelineTmaAsync.create(
        barrier_storage=barriers.data_ptr(),
        num_stages=stages,
        producer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread),
        consumer_group=pipeline.CooperativeGroup(pipeline.Agent.Thread, consumer_warps),
        tx_count=tx_bytes,
        cta_layout_vmnk=cute.make_layout((1, 1, 1, 1)),
        defer_sync=True,
    )


def partition(atom: cute.CopyAtom, smem: cute.Tensor, gmem_tiles: cute.Tensor):
    """TMA views of smem (rows, cols, stage) as (tile, stage) and gmem (rows, cols, tiles...) as (tile, tiles...);
    a tile may also be one row: smem (rows, stage), gmem (rows, tiles...)."""
    tile_rank = cute.rank(smem) - 1
    return cpasync.tma_partition(atom, 0, cute.make_layout(1), cute.group_modes(smem, 0, tile_rank),
                                 cute.group_modes(gmem_tiles, 0, tile_rank))


def load(atom: cute.CopyAtom, pipe: pipeline.PipelineTmaAsync, state: pipeline.PipelineState, src, dst_stages):
    """Wait for the stage of `state` to be free, then copy the gmem tile `src` into it; the caller advances."""
    pipe.producer_acquire(state)
    load_more(atom, pipe, state, src, dst_stages)


def load_more(atom: cute.CopyAtom, pipe: pipeline.PipelineTmaAsync, state: pipeline.PipelineState, src, dst_stages):
    """Copy one more gmem tile into the stage of `state` that a `load` has just acquired, completing on the same
    barrier (its bytes counted in the pipeline's tx_bytes)."""
    cute.copy(atom, src, dst_stages[None, state.index], tma_bar_ptr=pipe.producer_get_barrier(state))
