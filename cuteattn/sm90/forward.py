"""Host side of the sm90 forward: which requests the kernel covers, its configuration, the launch."""

from __future__ import annotations

import functools
import math
from dataclasses import replace
from typing import Optional

import torch

import cutlass

from cuteattn import mods, reference
from cuteattn.mods import block_sparsity
from cuteattn.compile_cache import get_or_compile
from cuteattn.kernel_args import TORCH_TO_CUTE, aligned_view, compile_kernel, fake_tensor
from cuteattn.masking import window_args
from cuteattn.registry import compile_target
from cuteattn.sm90 import fwd_combine
from cuteattn.sm90.fwd_config import ROWS_PER_WARPGROUP, FwdConfig
from cuteattn.sm90.fwd_kernel import FlashFwdSm90
from cuteattn.tile_scheduler import sm_count, tail_parts, tile_counter

HEAD_DIMS = (64, 96, 128, 192, 256)
HEAD_DIM_PAIRS = ((192, 128),)  # head_dim_v != head_dim
LOG2_E = math.log2(math.e)

# Per head dim, the configs measured fastest on the GPU: (plain, causal, other). Other: a left window edge,
# softcap, a sink or mods, which keep the two-consumer 128-key tile (their registers spill wider ones).
# Causal in two loops (masked_loop=True) since the mask compares key - query against one threshold a tile: hdim 128
# 16k 664 TFLOP/s against 572 in one loop, hdim 256 747 against 715-722; hdim 192 level at 16k, one loop 2% ahead
# at 1k (H100, notes-12). hdim 128 plain: 128-key blocks since the pinned descriptors, 698-712 TFLOP/s at 16k
# against 176-key blocks' 597-695 in the same four runs, level at 4k and 8k (H100, notes-14).
# hdim 64 to 128 on a persistent grid that claims its tiles (dynamic): hdim 128 at 1k 596 TFLOP/s against one CTA
# a tile's 545, causal 457 against 386; hdim 64 at 1k 458 against 427, causal 337 against 289; hdim 96 causal
# 396 against 348; level or ahead at 4k to 16k but for unmasked attention over long keys (LONG_UNMASKED). hdim 192
# and 256 cannot give O shared memory of its own, which the persistent grid takes (H100, notes-19). With features
# too: hdim 128 causal, a document mask_mod at 1k 399 against 331, at 16k 569 against 538; a relative-position
# score_mod 388 against 328 and 562 against 543; a 1024-key window 446 against 455 and 496 against 473 (notes-20).
_N128 = FwdConfig(tile_n=128)
_THREE = FwdConfig(tile_n=128, num_consumers=3)
_CLAIMED = dict(persistent=True, dynamic=True)
CONFIGS = {64: (replace(_THREE, **_CLAIMED),) * 2 + (replace(_N128, **_CLAIMED),),
           96: (FwdConfig(tile_n=112, num_consumers=3, **_CLAIMED),) * 2 + (replace(_N128, **_CLAIMED),),
           128: (replace(_N128, **_CLAIMED),) * 3,
           192: (FwdConfig(tile_n=96), FwdConfig(tile_n=96, masked_loop=False), FwdConfig(tile_n=96)),
           256: (FwdConfig(tile_n=80),) * 3}
# Attention without causal, window or mask over more than LONG_KEYS keys, where one CTA a tile is faster: (plain,
# other). Plain hdim 128 at 16k 693.6 TFLOP/s against the claimed grid's 671.5 (level at 8k: 678.8 and 675.4),
# hdim 64 551.6 against 546.8 (H100, notes-19).
LONG_KEYS = 8192
LONG_UNMASKED = {64: (_THREE, _N128), 128: (_N128, _N128)}


# Up to this many queries pack the query heads of a KV head into a tile's rows by default (`gqa_pack`). Batch 8,
# 32 query heads over 8 KV heads, hdim 128, unsplit: 1 to 16 queries over 4k keys 60-61 us packed against 78-79
# unpacked, over 16k 189 against 273-275; 64 queries 63.5 against 80.1 and 211.3 against 312.2; 128 queries
# 108.9 against 110.3 and 391.4 against 385.3, causal 116.2 against 113.8 and 459.8 against 446.2 (H100, notes-22).
PACK_GQA_MAX_QUERIES = 64
# Split-KV (num_splits=0): at most MAX_SPLITS parts a tile's keys, each of at least MIN_SPLIT_BLOCKS key blocks, and
# at least MIN_SPLITS parts or none: a launch of over a quarter as many tiles as SMs nears the memory bandwidth
# unsplit. Batch 8, 8 KV heads (64 packed tiles), hdim 128: two parts took 4-13 us longer than one at 1-16
# queries and at 64 over 16k keys, 0.3 us at 64 over 4k; batch 1 (8 tiles), one query: 16 parts 21.5 us against
# 40.4 over 4k keys, 45.7 against 137.3 over 16k (H100, notes-22).
MAX_SPLITS = 64
MIN_SPLIT_BLOCKS = 4
MIN_SPLITS = 4
# A split tail (num_splits=0, where split-KV is not chosen): with one CTA an SM, tiles % SMs tiles make the last
# wave, and the SMs without one idle through it. Those tiles' keys are split into the parts (at most
# MAX_TAIL_SPLITS) that end the launch soonest by `tail_split`'s count, each part costing TAIL_PART_BLOCKS key
# blocks more than its blocks: the launch's cost per tile apart from its keys (tile_cost.py, notes-18: about 60 us
# over 15.5 tiles an SM at hdim 128, a block 1.65 us), and its share of the merge.
MAX_TAIL_SPLITS = 8
TAIL_PART_BLOCKS = 3


def config_entry(head_dim: int) -> tuple:
    """What `default_config` reads for a head dim: its CONFIGS and LONG_UNMASKED entries."""
    return CONFIGS.get(head_dim), LONG_UNMASKED.get(head_dim)


def default_config(head_dim: int, opts: reference.Options, seqlen_k: int) -> FwdConfig:
    """The measured config of a request over `seqlen_k` keys."""
    plain, causal, other = CONFIGS[head_dim]
    masked = (opts.window_left, opts.mask_mod, opts.block_mask) != (None,) * 3
    features = masked or (opts.learnable_sink, opts.score_mod) != (None, None) or opts.softcap > 0
    if not masked and opts.window_right is None and seqlen_k > LONG_KEYS and head_dim in LONG_UNMASKED:
        return LONG_UNMASKED[head_dim][features]
    return other if features else causal if opts.window_right is not None else plain


def unsupported(head_dim: int, head_dim_v: int, opts) -> Optional[str]:
    """The first feature of the request that the sm90 forward does not cover yet, or None."""
    if head_dim not in HEAD_DIMS or (head_dim_v != head_dim and (head_dim, head_dim_v) not in HEAD_DIM_PAIRS):
        return (f"head_dim {head_dim} with head_dim_v {head_dim_v} (covered: equal head dims in {HEAD_DIMS}, "
                f"and (head_dim, head_dim_v) in {HEAD_DIM_PAIRS})")
    return None


def kernel_for(dtype: torch.dtype, head_dim: int, head_dim_v: int, qhead_per_kvhead: int, opts: reference.Options,
               config: Optional[FwdConfig] = None, traced: Optional[tuple] = None,
               seqlen_k: int = LONG_KEYS, pack_gqa: int = 1, split_kv: bool = False,
               tail_splits: int = 1) -> FlashFwdSm90:
    """The kernel object of a request (over `seqlen_k` keys, where no config is given); `traced`: the call's
    `mods.traced(opts)`, when the caller has it; pack_gqa: the query heads packed a KV head (`gqa_pack`);
    split_kv: its keys split among CTAs (`kv_splits`); tail_splits: the parts of the last tiles (`tail_split`)."""
    score_mod, mask_mod = traced if traced is not None else mods.traced(opts)
    return _kernel(dtype, head_dim, head_dim_v, qhead_per_kvhead if pack_gqa == 1 else 1,
                   opts.window_left is not None, opts.window_right is not None, opts.softcap > 0,
                   opts.learnable_sink is not None, score_mod, mask_mod,
                   config or default_config(head_dim, opts, seqlen_k), pack_gqa, split_kv, tail_splits)


@functools.lru_cache(maxsize=None)
def _kernel(dtype, head_dim, head_dim_v, qhead_per_kvhead, has_window_left, has_window_right, has_softcap, has_sink,
            score_mod, mask_mod, config, pack_gqa, split_kv, tail_splits) -> FlashFwdSm90:
    """One kernel object per configuration, so a call finds its compiled kernel without building one."""
    return FlashFwdSm90(TORCH_TO_CUTE[dtype], head_dim, head_dim_v, qhead_per_kvhead, has_window_left=has_window_left,
                        has_window_right=has_window_right, has_softcap=has_softcap, has_sink=has_sink,
                        score_mod=score_mod, mask_mod=mask_mod, config=config, pack_gqa=pack_gqa, split_kv=split_kv,
                        tail_splits=tail_splits)


def scales(opts: reference.Options, has_score_mod: bool) -> tuple:
    """(scale_log2, tanh_scale, score_scale): scale_log2 of the scores the softmax sees (a score_mod's results
    are in natural units; raw scores fold the scale into exp2), softmax_scale / softcap with softcap, and
    what turns held scores into the mod's units."""
    capped = opts.softcap > 0
    score_scale = opts.softcap if capped else opts.softmax_scale
    scale_log2 = LOG2_E if has_score_mod else score_scale * LOG2_E
    return scale_log2, opts.softmax_scale / opts.softcap if capped else 0.0, score_scale


def launch_args(op: FlashFwdSm90, opts: reference.Options, mod_tensors: Optional[list]) -> tuple:
    """The kernel's arguments after lse: the sink or None, scale_log2, tanh_scale, window_left, window_right,
    score_scale and the mods' captured tensors."""
    sink = None if opts.learnable_sink is None else opts.learnable_sink.detach().float().contiguous()
    scale_log2, tanh_scale, score_scale = scales(opts, op.score_mod is not None)
    return (sink, scale_log2, tanh_scale, *window_args(opts), score_scale, mod_tensors)


def _fake_launch_args(op: FlashFwdSm90) -> tuple:
    sink = fake_tensor(cutlass.Float32, 1, aligned=False) if op.has_sink else None
    lists = (fake_tensor(cutlass.Int32, 4, aligned=False), fake_tensor(cutlass.Int32, 4, aligned=False),
             fake_tensor(cutlass.Int32, 1, aligned=False)) if op.mask_mod is not None else (None,) * 3
    return (sink, cutlass.Float32(1.0), cutlass.Float32(1.0), cutlass.Int32(0), cutlass.Int32(0),
            cutlass.Float32(1.0), mods.fake_captured([op.score_mod, op.mask_mod]), *lists, cutlass.Int32(1),
            fake_tensor(cutlass.Int32, 1, aligned=False) if op.config.dynamic else None,
            *((fake_tensor(cutlass.Float32, 3), fake_tensor(cutlass.Float32, 2, aligned=False)) if op.split_tail
              else (None, None)))


def _compile(op: FlashFwdSm90):
    q, k, v = (fake_tensor(op.dtype, 4) for _ in range(3))
    if op.split_kv:
        o, lse = fake_tensor(cutlass.Float32, 5), fake_tensor(cutlass.Float32, 4, aligned=False)
    else:
        o, lse = fake_tensor(op.dtype, 4), fake_tensor(cutlass.Float32, 3, aligned=False)
    return compile_kernel(op, q, k, v, o, lse, *_fake_launch_args(op))


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, opts: reference.Options,
            config: Optional[FwdConfig] = None, out: Optional[torch.Tensor] = None,
            lse: Optional[torch.Tensor] = None, pack_gqa: Optional[bool] = None, num_splits: int = 1,
            tail: Optional[tuple] = None):
    """out (batch, seqlen_q, heads, head_dim_v) in q's dtype and lse (batch, heads, seqlen_q) fp32, written
    into `out` and `lse` when given (contiguous); pack_gqa and num_splits: the caller's hints (`gqa_pack`,
    `kv_splits`, `tail_split`); tail: a split tail's (tiles, parts) to take in place of `tail_split`'s."""
    batch, seqlen_q, heads, head_dim = q.shape
    traced = mods.traced(opts)
    pack = gqa_pack(q, k, opts, pack_gqa)
    config = config or default_config(head_dim, opts, k.shape[1])
    splits = kv_splits(q, k, opts, config, pack, num_splits)
    tail = (0, 1) if splits > 1 else tail or tail_split(q, k, opts, config, pack, num_splits)
    op = kernel_for(q.dtype, head_dim, v.shape[-1], heads // k.shape[2], opts, config, traced, pack_gqa=pack,
                    split_kv=splits > 1, tail_splits=tail[1])
    if out is None:
        out = torch.empty(batch, seqlen_q, heads, v.shape[-1], dtype=q.dtype, device=q.device)
    if lse is None:
        lse = torch.empty(batch, heads, seqlen_q, dtype=torch.float32, device=q.device)
    if out.numel() == 0 or k.shape[1] == 0:  # nothing to compute; TMA cannot describe an empty tensor
        sink = opts.learnable_sink
        return out.zero_(), lse.fill_(-math.inf) if sink is None else lse.copy_(sink.detach().view(1, -1, 1))
    compiled, args = _compiled_and_args(op, q, k, opts, traced)
    if splits > 1:
        parts = split_parts(q, v.shape[-1], splits, pack)
        compiled(aligned_view(q), aligned_view(k), aligned_view(v), *parts, *args, *_per_call_args(op, q, tail))
        fwd_combine.combiner(q.dtype, v.shape[-1], pack)(*parts, out, lse)
        return out, lse
    per_call = _per_call_args(op, q, tail)
    compiled(aligned_view(q), aligned_view(k), aligned_view(v), out, lse, *args, *per_call)
    if op.split_tail:
        fwd_combine.tail_combiner(q.dtype, v.shape[-1], config.tile_m)(*per_call[1:], out, lse)
    return out, lse


def gqa_pack(q: torch.Tensor, k: torch.Tensor, opts: reference.Options, hint: Optional[bool]) -> int:
    """How many query heads of a KV head share a tile's rows, each row a (query, head) pair: the group's
    heads_q // heads_kv where they are packed, else 1. Packed, a tile of few queries fills its rows, and the
    group reads K and V once. `hint` (the call's pack_gqa): True packs, False does not, None packs up to
    PACK_GQA_MAX_QUERIES queries. A TMA box of 64 rows takes whole groups: a group that does not divide 64 is not
    packed; nor is a call with a sink or mods, which read a row's head or query that packed rows do not carry (the
    hint never changes a result)."""
    group = q.shape[2] // k.shape[2]
    if group == 1 or ROWS_PER_WARPGROUP % group != 0 or hint is False or (
            opts.learnable_sink, opts.score_mod, opts.mask_mod, opts.block_mask) != (None,) * 4:
        return 1
    return group if hint or q.shape[1] <= PACK_GQA_MAX_QUERIES else 1


def kv_splits(q: torch.Tensor, k: torch.Tensor, opts: reference.Options, config: FwdConfig, pack: int,
              hint: int) -> int:
    """Into how many parts the kernel splits each tile's keys, each part a CTA of its own (`split_kv`): `hint`
    (the call's num_splits) where it is above 1, at most one part a key block; 0 chooses, for a launch of at most
    a quarter as many tiles as SMs (decoding), as many parts as fill the SMs, each of MIN_SPLIT_BLOCKS key blocks or
    more, where that makes MIN_SPLITS or more. A sink joins each row's sum once, and a mask_mod's block lists are
    not split: those calls are never split."""
    if hint == 1 or (opts.learnable_sink, opts.mask_mod, opts.block_mask) != (None,) * 3:
        return 1
    n_blocks = -(-k.shape[1] // config.tile_n)
    if hint > 1:
        return max(1, min(hint, n_blocks))
    batch, seqlen_q, heads, _ = q.shape
    tiles = -(-seqlen_q * pack // config.tile_m) * heads // pack * batch
    parts = min(sm_count(q.device.index) // tiles, n_blocks // MIN_SPLIT_BLOCKS, MAX_SPLITS)
    return parts if parts >= MIN_SPLITS else 1


def tail_split(q: torch.Tensor, k: torch.Tensor, opts: reference.Options, config: FwdConfig, pack: int,
               hint: int) -> tuple:
    """(tiles, parts): the launch's last `tiles` tiles are split into `parts` each, or none, (0, 1). Only where
    cuteattn chooses (hint 0) and every tile sees all keys (no window, causal or mask_mod, which order their
    tiles by work) in the plain order (no packing), without a sink, which joins a row once, on a grid of one CTA
    a tile (a persistent one claims its tiles, and its stages would leave the uniform registers)."""
    unmasked = (opts.window_left, opts.window_right, opts.learnable_sink, opts.mask_mod, opts.block_mask) == (None,) * 5
    if hint != 0 or pack > 1 or config.persistent or not unmasked:
        return 0, 1
    batch, seqlen_q, heads, _ = q.shape
    tiles = -(-seqlen_q // config.tile_m) * heads * batch
    return tail_parts(tiles, sm_count(q.device.index), -(-k.shape[1] // config.tile_n), TAIL_PART_BLOCKS,
                      MAX_TAIL_SPLITS, MIN_SPLIT_BLOCKS)


def split_parts(q: torch.Tensor, head_dim_v: int, splits: int, pack: int) -> tuple:
    """The split-KV kernel's outputs for q (batch, seqlen_q, heads, head_dim), its rows packed `pack` heads a
    KV head: each split's O, fp32 (splits, batch, rows, heads // pack, head_dim_v), and lse (splits, batch,
    heads // pack, rows), rows = seqlen_q * pack."""
    batch, seqlen, heads = q.shape[0], q.shape[1] * pack, q.shape[2] // pack
    return (torch.empty(splits, batch, seqlen, heads, head_dim_v, dtype=torch.float32, device=q.device),
            torch.empty(splits, batch, heads, seqlen, dtype=torch.float32, device=q.device))


def _compiled_and_args(op: FlashFwdSm90, q: torch.Tensor, k: torch.Tensor, opts: reference.Options,
                       traced: tuple) -> tuple:
    """The compiled kernel of `op` and its arguments after lse, for a call of non-empty q and k."""
    batch, seqlen_q, heads, _ = q.shape
    compiled = get_or_compile(("sm90.fwd", op), lambda: _compile(op))
    lists = (None,) * 3
    if op.mask_mod is not None:
        lists = block_sparsity.forward_lists(opts, batch, heads, seqlen_q, k.shape[1], op.config.tile_m,
                                             op.config.tile_n, op.l2_group(k.shape[1]), q.device)
    return compiled, (*launch_args(op, opts, mods.tensor_args(traced, q.device)), *lists, sm_count(q.device.index))


def _per_call_args(op: FlashFwdSm90, q: torch.Tensor, tail: tuple) -> tuple:
    """The kernel's last arguments, which change from call to call: the tile counter of the current stream, and
    a split tail's parts, fp32 (parts, rows, head_dim_v) and (parts, rows), rows those of its tail (tiles,
    parts)."""
    counter = tile_counter(q.device) if op.config.dynamic else None
    if not op.split_tail:
        return counter, None, None
    rows = tail[0] * op.config.tile_m
    return (counter, torch.empty(tail[1], rows, op.head_dim_v, dtype=torch.float32, device=q.device),
            torch.empty(tail[1], rows, dtype=torch.float32, device=q.device))


def _detached(t: torch.Tensor) -> torch.Tensor:
    return t.detach() if t.requires_grad else t  # detach makes a new tensor object: 0.4 us a call


def prepared(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, opts: reference.Options,
             pack_gqa: Optional[bool] = None, num_splits: int = 1):
    """`forward` of a call without mods, sink or block mask, for later calls with the same layouts and options:
    what those decide (the kernel, its arguments, the output shapes) is done once, and the returned function of
    (q, k, v) only allocates out and lse and launches."""
    batch, seqlen_q, heads, head_dim = q.shape
    traced = (None, None)
    pack = gqa_pack(q, k, opts, pack_gqa)
    config = default_config(head_dim, opts, k.shape[1])
    splits = kv_splits(q, k, opts, config, pack, num_splits)
    tail = (0, 1) if splits > 1 else tail_split(q, k, opts, config, pack, num_splits)
    op = kernel_for(q.dtype, head_dim, v.shape[-1], heads // k.shape[2], opts, config, traced, pack_gqa=pack,
                    split_kv=splits > 1, tail_splits=tail[1])
    compiled, args = _compiled_and_args(op, q, k, opts, traced)
    out_shape, lse_shape = (batch, seqlen_q, heads, v.shape[-1]), (batch, heads, seqlen_q)
    # Later calls have these strides too: aligned_view's work is needed for all of them or none.
    view_q, view_k, view_v = (_detached if aligned_view(t).stride() == t.stride() else aligned_view
                              for t in (q, k, v))

    def outputs(q):  # new_empty takes q's dtype and device without parsing them: 0.6 us less a call on the H100 host
        return q.new_empty(out_shape), q.new_empty(lse_shape, dtype=torch.float32)

    def run(q, k, v):
        out, lse = outputs(q)
        compiled(view_q(q), view_k(k), view_v(v), out, lse, *args, *_per_call_args(op, q, tail))
        return out, lse

    merge = fwd_combine.combiner(q.dtype, out_shape[-1], pack) if splits > 1 else None
    merge_tail = fwd_combine.tail_combiner(q.dtype, out_shape[-1], config.tile_m) if op.split_tail else None

    def run_tail(q, k, v):
        out, lse = outputs(q)
        per_call = _per_call_args(op, q, tail)
        compiled(view_q(q), view_k(k), view_v(v), out, lse, *args, *per_call)
        merge_tail(*per_call[1:], out, lse)
        return out, lse

    def run_split(q, k, v):
        out, lse = outputs(q)
        parts = split_parts(q, out_shape[-1], splits, pack)
        compiled(view_q(q), view_k(k), view_v(v), *parts, *args, *_per_call_args(op, q, tail))
        merge(*parts, out, lse)
        return out, lse

    return run_split if splits > 1 else run_tail if op.split_tail else run


@compile_target("sm90.fwd", "sm_90a")
def build() -> None:
    plain = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,
                              learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
    causal = replace(plain, window_right=0)
    for head_dim, head_dim_v in (*((d, d) for d in HEAD_DIMS), *HEAD_DIM_PAIRS):
        for opts in (plain, causal):
            _compile(kernel_for(torch.bfloat16, head_dim, head_dim_v, 1, opts))
        if head_dim_v == head_dim and head_dim in LONG_UNMASKED:
            _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, plain, seqlen_k=LONG_KEYS + 1))
    _compile(kernel_for(torch.float16, 128, 128, 4, causal, FwdConfig(tile_n=64, num_stages=3)))
    _compile(kernel_for(torch.bfloat16, 128, 128, 4, causal, pack_gqa=4))
    _compile(kernel_for(torch.bfloat16, 64, 64, 2, replace(plain, window_left=100, window_right=20), pack_gqa=2))
    _compile(kernel_for(torch.bfloat16, 128, 128, 4, causal, pack_gqa=4, split_kv=True))
    _compile(kernel_for(torch.bfloat16, 64, 64, 1, replace(plain, window_left=100, softcap=30.0), split_kv=True))
    for head_dim in (64, 128):
        _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, plain, seqlen_k=LONG_KEYS + 1, tail_splits=5))
        _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, replace(plain, softcap=30.0), seqlen_k=LONG_KEYS + 1,
                            tail_splits=3))
    for opts in (replace(plain, window_left=256, window_right=0), replace(plain, window_left=64),
                 replace(plain, softcap=30.0), replace(plain, learnable_sink=torch.zeros(4)),
                 replace(causal, window_left=100, softcap=30.0, learnable_sink=torch.zeros(4))):
        _compile(kernel_for(torch.bfloat16, 128, 128, 4, opts))
    score_mod, mask_mod = block_sparsity.sample_mods()
    # At hdim 256 the tiles leave little shared memory: a mod's difference table must still fit (launch checks).
    for head_dim in (128, 256):
        _compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, replace(plain, score_mod=score_mod,
                                                                          mask_mod=mask_mod)))
