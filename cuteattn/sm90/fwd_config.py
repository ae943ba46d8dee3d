"""The sm90 forward's fixed layout (warps, named barriers, registers) and `FwdConfig`, its tunable choices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

ROWS_PER_WARPGROUP = 64  # the M of one wgmma
THREADS_PER_WARPGROUP = 128
REGISTERS_PER_SM = 65536
PRODUCER_REGISTERS = 24
MAX_REGISTERS = 240
MAX_CONSUMERS = 3
EPILOGUE_BARRIER = 1  # named barriers: + consumer index; 0 is __syncthreads
SCHEDULER_BARRIER = EPILOGUE_BARRIER + MAX_CONSUMERS
Q_PINNED_HEAD_DIM = 128


@dataclass(frozen=True)
class FwdConfig:
    """The kernel's tunable choices."""

    tile_n: int = 128
    num_stages: int = 2
    num_consumers: int = 2  # consumer warpgroups; tile_m = 64 * num_consumers
    pingpong: bool = True  # consumers take turns on the tensor cores, one's softmax under the others' GEMMs
    rescale_threshold: Optional[float] = 8.0  # log2 units the row max may grow before O is rescaled; None: always
    # A grid of at most one CTA per SM, each walking many tiles. O then has shared memory of its own, so a tile
    # frees Q's buffer after its last S GEMM and the producer loads the next tile's Q under its last P V and
    # epilogue.
    persistent: bool = False
    # Persistent: each CTA claims its next tile when it needs one, from a counter shared by the launch, rather
    # than round robin (`tile_scheduler.claim`); for tiles of unequal work.
    dynamic: bool = False
    l2_share_mb: int = 16  # under causal, the longest-first order goes over heads whose K and V fit this in L2
    # The key blocks that may need the mask in a loop of their own, before the others'. False: one loop, the
    # mask's branch around whole steps (ptxas once kept the second loop's stages in vector registers, and every
    # wgmma descriptor went through R2UR; hdim 128 causal now: 735 and 492 instructions a step, no R2UR).
    masked_loop: bool = True

    def __post_init__(self):
        if self.dynamic and not self.persistent:
            raise ValueError("FwdConfig(dynamic=True) claims tiles for a persistent grid: set persistent=True too")

    @property
    def tile_m(self) -> int:
        return ROWS_PER_WARPGROUP * self.num_consumers
