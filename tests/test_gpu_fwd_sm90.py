"""The sm90 forward kernel against the PyTorch path, with FlashAttention's error rule."""

import math

import pytest
import torch

import cuteattn
from cuteattn import interface, reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
                       reason="needs an sm90 GPU"),
]


def options(head_dim, causal, softmax_scale=None, window=(None, None), softcap=0.0, sink=None):
    left, right = window
    return reference.Options(
        softmax_scale=softmax_scale or 1 / math.sqrt(head_dim), window_left=left,
        window_right=0 if causal else right, softcap=softcap, learnable_sink=sink, score_mod=None, mask_mod=None,
        block_mask=None)


def grid(batch, heads, seqlen_q, seqlen_k, device):
    """b, h, q_idx, kv_idx as broadcastable (batch, heads, seqlen_q, seqlen_k) index tensors."""
    return tuple(torch.arange(n, device=device).view([-1 if d == i else 1 for d in range(4)])
                 for i, n in enumerate((batch, heads, seqlen_q, seqlen_k)))


def low_precision(q, k, v, opts):
    """The same attention done by PyTorch in the input dtype: scores, mod results, probabilities rounded."""
    batch, seqlen_q, heads, _ = q.shape
    seqlen_k, group = k.shape[1], heads // k.shape[2]
    k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) * opts.softmax_scale
    if opts.softcap > 0:
        s = opts.softcap * torch.tanh(s / opts.softcap)
    b, h, i, j = grid(batch, heads, seqlen_q, seqlen_k, q.device)
    if opts.score_mod is not None:
        s = opts.score_mod(s, b, h, i, j).to(q.dtype)
    keep = torch.ones_like(s, dtype=torch.bool)
    diagonal = i + seqlen_k - seqlen_q
    if opts.window_left is not None:
        keep &= j >= diagonal - opts.window_left
    if opts.window_right is not None:
        keep &= j <= diagonal + opts.window_right
    if opts.mask_mod is not None:
        keep &= opts.mask_mod(b, h, i, j)
    if opts.block_mask is not None:
        blocks = reference.expand_block_mask(opts.block_mask, q.device)
        keep &= reference._block_mask_visible(blocks, s.shape, b, h, i, j)
    s = s.masked_fill(~keep, -math.inf)
    if opts.learnable_sink is not None:  # one more column, which takes probability and gives no value
        sink = opts.learnable_sink.to(s.dtype).view(1, -1, 1, 1).expand(*s.shape[:-1], 1)
        s = torch.cat([s, sink], dim=-1)
    p = torch.softmax(s.float(), dim=-1).nan_to_num(0.0).to(q.dtype)[..., :seqlen_k]
    return torch.einsum("bhqk,bkhd->bqhd", p, v)


def assert_matches(out, lse, q, k, v, opts):
    """FlashAttention's rule against the fp32 PyTorch path: out within twice PyTorch's own error in the
    input dtype, no NaN (the buffers were poisoned), lse finite exactly where the reference's is."""
    with torch.no_grad():
        ref_out, ref_lse = reference.attention(q.float(), k.float(), v.float(), opts)
        lowp_err = (low_precision(q, k, v, opts).float() - ref_out).abs().max().item()
    err = (out.float() - ref_out).abs().max().item()
    assert not out.isnan().any(), "unwritten or NaN output"
    assert err <= 2 * lowp_err + 1e-5, f"max error {err} vs PyTorch's {lowp_err} in {q.dtype}"
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite) and torch.isneginf(lse[~finite]).all()
    if finite.any():
        assert (lse[finite] - ref_lse[finite]).abs().max().item() <= 1e-3


def check(batch, seqlen_q, seqlen_k, heads, heads_kv, head_dim, causal, dtype, make=None, head_dim_v=None,
          config=None, pack_gqa=None, num_splits=1, tail=None, **features):
    """Run the kernel (with `config`, else the default for the head dim; `pack_gqa` and `num_splits` the call's
    hints; `tail` a split tail's (tiles, parts)) and compare with the PyTorch path; `features`: window, softcap,
    sink of `options`."""
    from cuteattn.sm90 import forward

    head_dim_v = head_dim_v or head_dim
    # Under 64 query rows, more batches: the rule compares two maxima, and over a few hundred outputs (one row
    # that sees 4 keys) they swing enough to fail about 1% of fresh draws on a correct kernel (notes-7).
    batch = max(batch, -(-64 // max(seqlen_q, 1)))
    make = make or (lambda *shape: torch.randn(*shape, device="cuda", dtype=dtype))
    q = make(batch, seqlen_q, heads, head_dim)
    k, v = make(batch, seqlen_k, heads_kv, head_dim), make(batch, seqlen_k, heads_kv, head_dim_v)
    opts = options(head_dim, causal, **features)
    out = torch.full((batch, seqlen_q, heads, head_dim_v), math.nan, dtype=dtype, device="cuda")
    lse = torch.full((batch, heads, seqlen_q), math.nan, device="cuda")
    forward.forward(q, k, v, opts, config=config, out=out, lse=lse, pack_gqa=pack_gqa, num_splits=num_splits,
                    tail=tail)
    torch.cuda.synchronize()
    assert_matches(out, lse, q, k, v, opts)
    return out, lse


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("head_dim", [64, 96, 128, 192, 256])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (17, 17), (113, 113), (128, 128), (1000, 1000),
                                               (113, 4097), (4097, 113), (1, 300), (300, 1)])
def test_forward(dtype, head_dim, causal, seqlen_q, seqlen_k):
    check(2, seqlen_q, seqlen_k, 4, 4, head_dim, causal, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(17, 17), (113, 4097), (1000, 333)])
def test_head_dim_v_differs(dtype, causal, seqlen_q, seqlen_k):
    check(2, seqlen_q, seqlen_k, 4, 2, 192, causal, dtype, head_dim_v=128, window=(256, None))


@pytest.mark.parametrize("heads,heads_kv", [(6, 2), (8, 1)])
@pytest.mark.parametrize("causal", [False, True])
def test_gqa_mqa(heads, heads_kv, causal):
    check(2, 257, 300, heads, heads_kv, 128, causal, torch.bfloat16)


@pytest.mark.parametrize("pack_gqa", [True, None])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("heads,heads_kv", [(8, 2), (4, 2), (16, 1)])
@pytest.mark.parametrize("window", [(None, None), (None, 0), (100, 0), (5, 20)])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (1, 4097), (17, 113), (113, 17), (300, 1000)])
def test_pack_gqa(pack_gqa, head_dim, heads, heads_kv, window, seqlen_q, seqlen_k):
    """The query heads of a KV head packed into a tile's rows (row r is query r // group), read and written in
    place through TMA: causal and windows per row, groups of 2 to 16, 1 to 300 queries (300 * 4 rows: several
    tiles, and a last one that TMA bounds)."""
    check(2, seqlen_q, seqlen_k, heads, heads_kv, head_dim, False, torch.bfloat16, pack_gqa=pack_gqa, window=window,
          softcap=30.0 if window == (5, 20) else 0.0)


@pytest.mark.parametrize("num_splits", [2, 3, 0, 64])
@pytest.mark.parametrize("head_dim,heads,heads_kv,pack_gqa", [(64, 4, 4, None), (128, 8, 2, True), (128, 6, 2, False)])
@pytest.mark.parametrize("window", [(None, None), (None, 0), (100, 0), (300, 40)])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 4097), (17, 1000), (113, 300), (300, 129), (4, 1)])
def test_split_kv(num_splits, head_dim, heads, heads_kv, pack_gqa, window, seqlen_q, seqlen_k):
    """Each tile's keys split among CTAs and merged (`fwd_combine`): splits that see none of a row's keys (a
    window, causal), more splits asked than key blocks, packed and unpacked rows, softcap."""
    from cuteattn.sm90 import forward

    opts, config = options(head_dim, False, window=window), forward.default_config(head_dim, options(
        head_dim, False, window=window), seqlen_k)
    if num_splits > 1 and seqlen_k > config.tile_n:
        q, k = torch.empty(1, seqlen_q, heads, head_dim), torch.empty(1, seqlen_k, heads_kv, head_dim)
        assert forward.kv_splits(q, k, opts, config, 1, num_splits) > 1
    check(2, seqlen_q, seqlen_k, heads, heads_kv, head_dim, False, torch.bfloat16, pack_gqa=pack_gqa,
          num_splits=num_splits, window=window, softcap=30.0 if window == (300, 40) else 0.0)


@pytest.mark.parametrize("tail", [(1, 2), (3, 5), (6, 8)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(300, 2000), (17, 1000), (113, 129), (200, 4097)])
def test_split_tail(tail, head_dim, seqlen_q, seqlen_k):
    """The launch's last tiles split into parts and merged (`fwd_combine.TailCombine`), on the grid of one CTA a
    tile that long keys take: a last tile whose rows end past seqlen_q, parts that see no key (more parts than
    key blocks), softcap; unpacked, as a tail takes the plain order's tiles."""
    from cuteattn.sm90 import forward

    config = forward.LONG_UNMASKED[head_dim][0]
    check(2, seqlen_q, seqlen_k, 4, 2, head_dim, False, torch.bfloat16, config=config, pack_gqa=False, tail=tail,
          softcap=30.0 if seqlen_k == 1000 else 0.0)


def test_split_tail_chosen():
    """num_splits=0 over long keys, a launch of fewer tiles than SMs but too many for split-KV: its tiles are the
    tail."""
    from cuteattn.sm90 import forward

    q, k = torch.empty(1, 800, 6, 128), torch.empty(1, 9000, 6, 128)  # 42 tiles
    opts = options(128, False)
    config = forward.default_config(128, opts, 9000)
    assert forward.kv_splits(q, k, opts, config, 1, 0) == 1 and forward.tail_split(q, k, opts, config, 1, 0)[1] > 1
    check(1, 800, 9000, 6, 6, 128, False, torch.bfloat16, num_splits=0)


def test_long_sequence():
    check(1, 4097, 4097, 2, 2, 128, True, torch.bfloat16)


def test_non_contiguous_inputs():
    def sliced(*shape):  # every other head of a wider tensor, and a padded head dim
        b, s, h, d = shape
        return torch.randn(b, s, 2 * h, d + 8, device="cuda", dtype=torch.bfloat16)[:, :, ::2, :d]
    check(2, 200, 333, 4, 4, 64, True, torch.bfloat16, make=sliced)


def test_rows_that_see_no_key():
    out, lse = check(1, 300, 100, 2, 2, 64, True, torch.bfloat16)
    assert torch.equal(out[:, :200], torch.zeros_like(out[:, :200]))
    assert torch.isneginf(lse[:, :, :200]).all()


@pytest.mark.parametrize("window", [(0, 0), (None, 5), (64, None), (100, 0), (3, 200), (0, None), (None, 0)])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(128, 128), (113, 300), (300, 113), (1000, 1000), (1, 257),
                                               (257, 1)])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_sliding_window(window, seqlen_q, seqlen_k, head_dim):
    check(2, seqlen_q, seqlen_k, 4, 4, head_dim, False, torch.bfloat16, window=window)


@pytest.mark.parametrize("left", [0, 100, 1000])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(500, 500), (200, 700), (700, 200)])
def test_causal_with_left_window(left, seqlen_q, seqlen_k):
    check(2, seqlen_q, seqlen_k, 4, 4, 128, True, torch.float16, window=(left, None))


def test_wide_window():  # sizes past any sequence length bind nothing
    check(1, 300, 500, 2, 2, 64, False, torch.bfloat16, window=(2**40, 2**40))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("softcap", [0.5, 5.0, 50.0])
@pytest.mark.parametrize("causal", [False, True])
def test_softcap(dtype, softcap, causal):
    check(2, 300, 400, 4, 4, 128, causal, dtype, softcap=softcap)


def test_softcap_saturates():  # scores far beyond softcap: tanh at +-1
    check(2, 200, 300, 4, 4, 64, False, torch.bfloat16, softcap=2.0,
          make=lambda *shape: 4 * torch.randn(*shape, device="cuda", dtype=torch.bfloat16))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(1, 1), (128, 128), (113, 300), (300, 113), (1000, 1000)])
def test_learnable_sink(causal, seqlen_q, seqlen_k):
    sink = torch.tensor([-20.0, -1.0, 0.5, 20.0], device="cuda")  # from negligible to dominant
    check(2, seqlen_q, seqlen_k, 4, 4, 128, causal, torch.bfloat16, sink=sink)


def test_sink_rows_that_see_no_key():
    sink = torch.tensor([-1.5, 2.0], device="cuda")
    out, lse = check(1, 300, 100, 2, 2, 64, True, torch.bfloat16, sink=sink)
    assert torch.equal(out[:, :200], torch.zeros_like(out[:, :200]))
    torch.testing.assert_close(lse[:, :, :200], sink.view(1, 2, 1).expand(1, 2, 200), atol=1e-6, rtol=1e-6)
    _, lse = check(1, 5, 0, 2, 2, 64, False, torch.bfloat16, sink=sink)  # no key at all
    torch.testing.assert_close(lse, sink.view(1, 2, 1).expand_as(lse))


def test_window_rows_that_see_no_key():  # seqlen_q > seqlen_k: the first 200 rows' windows end before key 0
    out, lse = check(1, 300, 100, 2, 2, 64, False, torch.bfloat16, window=(10, 0))
    assert torch.equal(out[:, :200], torch.zeros_like(out[:, :200]))
    assert torch.isneginf(lse[:, :, :200]).all()


@pytest.mark.parametrize("heads,heads_kv", [(6, 2), (8, 1)])
@pytest.mark.parametrize("causal,window,softcap,sink", [
    (True, (64, None), 0.0, False), (False, (None, 5), 30.0, True), (False, (100, 100), 5.0, True),
    (True, (None, None), 0.0, True), (False, (None, None), 10.0, False)])
def test_features_with_gqa(heads, heads_kv, causal, window, softcap, sink):
    sink = torch.randn(heads, device="cuda", dtype=torch.bfloat16) if sink else None
    check(2, 257, 300, heads, heads_kv, 128, causal, torch.bfloat16, window=window, softcap=softcap, sink=sink)


@pytest.mark.parametrize("config", [dict(tile_n=176), dict(tile_n=192), dict(num_consumers=3),
                                    dict(num_consumers=3, pingpong=False), dict(num_consumers=1),
                                    dict(rescale_threshold=None), dict(persistent=True),
                                    dict(persistent=True, num_consumers=3),
                                    dict(persistent=True, dynamic=True), dict(masked_loop=False),
                                    dict(masked_loop=False, num_consumers=3)])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen_q,seqlen_k", [(17, 17), (113, 4097), (1000, 333), (1000, 1000)])
def test_config_variants(config, head_dim, causal, seqlen_q, seqlen_k):
    from cuteattn.sm90.fwd_config import FwdConfig

    check(2, seqlen_q, seqlen_k, 4, 2, head_dim, causal, torch.bfloat16, config=FwdConfig(**config))


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("num_consumers", [2, 3])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("seqlen_k", [333, 1000])
def test_persistent_ctas_walk_several_tiles(dynamic, num_consumers, head_dim, causal, seqlen_k):
    """More tiles than an H100 or H200 has SMs (132), so each persistent CTA walks two or more, reusing its
    pipelines (test_config_variants' shapes have fewer tiles than SMs: one each); round robin, and claimed from
    the launch's counter (`dynamic`)."""
    from cuteattn.sm90.fwd_config import FwdConfig

    check(6, 1000, seqlen_k, 8, 2, head_dim, causal, torch.bfloat16,
          config=FwdConfig(persistent=True, dynamic=dynamic, num_consumers=num_consumers))


@pytest.mark.parametrize("features", [dict(window=(100, 0)), dict(window=(64, None)), dict(softcap=30.0),
                                      dict(sink=True, causal=True)])
def test_claimed_tiles_with_features(features):
    """A persistent grid that claims its tiles, under a window's left edge, softcap and a sink, pinned whatever
    the defaults: 6 batches x 8 heads x 8 blocks of 1000 rows."""
    from cuteattn.sm90.fwd_config import FwdConfig

    features = dict(features)
    causal = features.pop("causal", False)
    if features.pop("sink", False):
        features["sink"] = torch.randn(8, device="cuda", dtype=torch.bfloat16)
    check(6, 1000, 1000, 8, 2, 128, causal, torch.bfloat16, config=FwdConfig(persistent=True, dynamic=True),
          **features)


def test_dynamic_tiles_counter_returns_to_zero():
    """Each launch that claims tiles leaves its stream's counter at 0 for the next: ten launches in a row, of
    tile counts above and below the SMs, all correct, and the counter 0 after them."""
    from cuteattn.sm90.fwd_config import FwdConfig
    from cuteattn.tile_scheduler import tile_counter

    config = FwdConfig(persistent=True, dynamic=True)
    for i in range(10):
        check(1 + 5 * (i % 2), 1000, 1000, 8, 2, 128, True, torch.bfloat16, config=config)
    assert tile_counter(torch.device("cuda", torch.cuda.current_device())).item() == 0


@pytest.mark.parametrize("threshold", [8.0, 0.0, None])
@pytest.mark.parametrize("causal", [False, True])
def test_row_max_grows(threshold, causal):
    """Keys visited later (the blocks go from the last down) score ever higher, so the running max moves by
    more than the rescale threshold again and again: O must be rescaled each time."""
    from cuteattn.sm90.fwd_config import FwdConfig

    seqlen = 1000
    ramp = torch.linspace(12.0, 0.5, seqlen, device="cuda").view(1, seqlen, 1, 1)
    made = []

    def make(*shape):  # check() makes q, k, v in that order; all positive, so q.k grows with k's ramp
        t = torch.randn(*shape, device="cuda").abs()
        t = t * ramp if len(made) == 1 else t
        made.append(t)
        return t.to(torch.bfloat16)

    check(1, seqlen, seqlen, 2, 2, 128, causal, torch.bfloat16, make=make,
          config=FwdConfig(rescale_threshold=threshold))


def test_through_the_public_entry():
    q, k, v = (torch.randn(2, 333, 4, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    out, lse = cuteattn.flash_attn_func(q, k, v, causal=True, return_lse=True)
    ref, ref_lse = reference.attention(q.float(), k.float(), v.float(), options(128, True))
    assert (out.float() - ref).abs().max().item() < 2e-2
    torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-3)
    sink = torch.randn(4, device="cuda")
    out, lse = cuteattn.flash_attn_func(q, k, v, causal=True, window_size=(64, None), softcap=20.0,
                                        learnable_sink=sink, return_lse=True)
    ref, ref_lse = reference.attention(q.float(), k.float(), v.float(),
                                       options(128, True, window=(64, None), softcap=20.0, sink=sink))
    assert (out.float() - ref).abs().max().item() < 2e-2
    torch.testing.assert_close(lse, ref_lse, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("seqlen_q,seqlen_k,heads,causal,launch", [(333, 333, 4, True, "run"),
                                                                  (800, 9000, 6, False, "run_tail"),
                                                                  (1, 4096, 4, False, "run_split")])
def test_planned_calls_match_the_reference(seqlen_q, seqlen_k, heads, causal, launch):
    """Repeated forward-only calls of one layout run its plan (`interface._plans`: no checks, the prepared launch
    and its own allocations): the plain launch, a split tail and split-KV, fresh inputs each time, each call
    checked. Before each call, blocks of the outputs' sizes are filled with NaN and freed, which the caching
    allocator hands to the plan's outputs."""
    interface._plans.clear()
    batch = 2 if seqlen_q < 64 else 1
    for _ in range(3):
        q = torch.randn(batch, seqlen_q, heads, 128, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(batch, seqlen_k, heads, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        poison = torch.full_like(q, math.nan), torch.full((batch, heads, seqlen_q), math.nan, device="cuda")
        del poison
        out, lse = cuteattn.flash_attn_func(q, k, v, causal=causal, return_lse=True)
        torch.cuda.synchronize()
        assert_matches(out, lse, q, k, v, options(128, causal))
    (plan,) = interface._plans.values()
    assert plan[2].__name__ == launch
