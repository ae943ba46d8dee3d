"""Plans of repeated forward-only calls (`interface._plans`): when a call may skip its checks, and that a call
which differs in anything the checks or the launch read does not. The sm90 path runs on CPU tensors with the
compiled kernel replaced by a recorder, so no GPU and no compile is needed."""

import pytest
import torch

import cuteattn
from cuteattn import interface

pytest.importorskip("cutlass")


@pytest.fixture
def launches(monkeypatch):
    """The kernel arguments of each forward launch (split-KV's combine runs nothing); the sm90 path chosen for CPU
    tensors."""
    from cuteattn import compile_cache
    from cuteattn.sm90 import forward, fwd_combine

    calls = []
    monkeypatch.setattr(compile_cache, "_cache", {})  # kernels "compiled" by other tests record elsewhere
    monkeypatch.setattr(interface, "select_backend", lambda fn, device: "sm90")
    monkeypatch.setattr(forward, "_compile", lambda op: (lambda *args: calls.append((op, args))))
    monkeypatch.setattr(fwd_combine, "_compile", lambda op: (lambda *args: None))
    monkeypatch.setattr(forward, "sm_count", lambda index: 132)
    monkeypatch.setattr(forward, "tile_counter", lambda device: torch.zeros(1, dtype=torch.int32))
    monkeypatch.setattr(interface, "_plans", {})
    return calls


def qkv(*shape, dtype=torch.bfloat16):
    return [torch.randn(*shape, dtype=dtype) for _ in range(3)]


def test_second_call_uses_the_plan(launches, monkeypatch):
    q, k, v = qkv(2, 100, 4, 64)
    cuteattn.flash_attn_func(q, k, v, causal=True)
    assert len(interface._plans) == 1

    def checks_ran(*args):
        raise AssertionError("the checks ran again")

    monkeypatch.setattr(interface.checks, "check_layout", checks_ran)
    q2, k2, v2 = qkv(2, 100, 4, 64)
    out = cuteattn.flash_attn_func(q2, k2, v2, causal=True)
    assert len(launches) == 2 and out.shape == (2, 100, 4, 64)
    (op1, args1), (op2, args2) = launches
    assert op1 is op2 and args2[0] is not q and torch.equal(args2[0], q2)
    assert args1[5:] == args2[5:]  # sink, scales, window, mods, lists, SMs


@pytest.mark.parametrize("change", [dict(causal=False), dict(softmax_scale=0.5), dict(window_size=(8, 0)),
                                    dict(softcap=5.0), dict(return_lse=True)])
def test_changed_options_make_a_new_plan(launches, change):
    q, k, v = qkv(1, 64, 2, 64)
    cuteattn.flash_attn_func(q, k, v, causal=True)
    cuteattn.flash_attn_func(q, k, v, **{"causal": True, **change})
    assert len(interface._plans) == 2


def test_the_backend_variable_reaches_planned_calls(launches, monkeypatch):
    """The plan's key reads CUTEATTN_BACKEND through os.environ's own mapping; a change set through os.environ
    (as monkeypatch does) turns the next identical call away from the plan."""
    q, k, v = qkv(1, 64, 2, 64)
    cuteattn.flash_attn_func(q, k, v, causal=True)
    monkeypatch.setattr(interface, "select_backend", lambda fn, device: "reference")
    monkeypatch.setenv(interface.BACKEND_ENV, "reference")
    cuteattn.flash_attn_func(q, k, v, causal=True)
    assert len(launches) == 1 and len(interface._plans) == 1


def test_layouts_and_shapes_make_a_new_plan(launches):
    q, k, v = qkv(1, 64, 2, 64)
    cuteattn.flash_attn_func(q, k, v)
    cuteattn.flash_attn_func(*qkv(1, 65, 2, 64))
    big = torch.randn(1, 64, 3, 64, dtype=torch.bfloat16)
    cuteattn.flash_attn_func(big[:, :, :2], k, v)  # another head stride
    assert len(interface._plans) == 3


def test_bad_input_is_still_refused(launches):
    q, k, v = qkv(1, 64, 2, 64)
    cuteattn.flash_attn_func(q, k, v, causal=True)
    with pytest.raises(TypeError, match="causal must be a bool"):
        cuteattn.flash_attn_func(q, k, v, causal=1)  # 1 == True, but not a bool
    with pytest.raises(ValueError, match="softcap"):
        cuteattn.flash_attn_func(q, k, v, causal=True, softcap=-1.0)
    with pytest.raises(TypeError, match="softmax_scale"):
        cuteattn.flash_attn_func(q, k, v, softmax_scale=[0.5])  # unhashable: no plan key, the checks answer


def test_no_plan_for_mods_sink_or_gradients(launches):
    q, k, v = qkv(1, 64, 2, 64)
    assert interface._plan_key(q, k, v, None, False, (None, None), 0.0, torch.zeros(2), None, None, None,
                               False, False, None, 1) is None
    assert interface._plan_key(q, k, v, None, False, (None, None), 0.0, None, lambda s, b, h, i, j: s, None,
                               None, False, False, None, 1) is None
    assert interface._plan_key(q, k, v, None, False, [None, None], 0.0, None, None, None, None, False, False,
                               None, 1) is None
    q.requires_grad_(True)
    assert interface._plan_key(q, k, v, None, False, (None, None), 0.0, None, None, None, None, False, False,
                               None, 1) is None
    with torch.no_grad():
        assert interface._plan_key(q, k, v, None, False, (None, None), 0.0, None, None, None, None, False, False,
                                   None, 1) is not None


def test_a_replaced_config_entry_drops_the_plan(launches, monkeypatch):
    from cuteattn.sm90 import forward

    q, k, v = qkv(1, 64, 2, 64)
    cuteattn.flash_attn_func(q, k, v)
    monkeypatch.setitem(forward.CONFIGS, 64, (forward.FwdConfig(tile_n=64),) * 3)
    cuteattn.flash_attn_func(q, k, v)
    assert launches[0][0].config != launches[1][0].config
    assert launches[1][0].config.tile_n == 64


def test_a_replaced_long_unmasked_entry_drops_the_plan(launches, monkeypatch):
    from cuteattn.sm90 import forward

    q, (k, v) = qkv(1, 64, 2, 128)[0], qkv(1, forward.LONG_KEYS + 1, 2, 128)[1:]
    cuteattn.flash_attn_func(q, k, v)
    monkeypatch.setitem(forward.LONG_UNMASKED, 128, (forward.FwdConfig(tile_n=64),) * 2)
    cuteattn.flash_attn_func(q, k, v)
    assert launches[0][0].config != launches[1][0].config
    assert launches[1][0].config.tile_n == 64


def test_plain_attention_over_long_keys_takes_its_own_config(launches):
    """Past LONG_KEYS keys, plain attention at hdim 128 runs one CTA per tile; up to it, and causal at any length,
    on the grid that claims its tiles; a second, planned call launches what the first did."""
    from cuteattn.sm90 import forward

    for seqlen_k, causal, persistent in ((forward.LONG_KEYS, False, True), (forward.LONG_KEYS + 1, False, False),
                                        (forward.LONG_KEYS + 1, True, True)):
        q, (k, v) = qkv(1, 64, 2, 128)[0], qkv(1, seqlen_k, 2, 128)[1:]
        for _ in range(2):
            cuteattn.flash_attn_func(q, k, v, causal=causal)
        first, second = launches[-2][0].config, launches[-1][0].config
        assert first == second
        assert (first.persistent, first.dynamic) == (persistent, persistent)


@pytest.mark.parametrize("head_dim", [64, 128])
def test_features_over_long_keys_claim_tiles_only_when_masked(launches, head_dim):
    """Past LONG_KEYS keys, softcap without a mask runs one CTA per tile (LONG_UNMASKED's second entry); softcap
    under causal, and a window with a left edge, run on the grid that claims its tiles, as they do up to it."""
    from cuteattn.sm90 import forward

    q, (k, v) = qkv(1, 64, 2, head_dim)[0], qkv(1, forward.LONG_KEYS + 1, 2, head_dim)[1:]
    for options, persistent in ((dict(softcap=30.0), False), (dict(softcap=30.0, causal=True), True),
                                (dict(window_size=(256, None)), True), (dict(window_size=(256, 0)), True)):
        cuteattn.flash_attn_func(q, k, v, **options)
        config = launches[-1][0].config
        assert (config.persistent, config.dynamic) == (persistent, persistent), options
        assert config.num_consumers == 2, options  # the features' tile at hdim 64 too (three consumers spill)


def test_planned_calls_pack_gqa_as_the_first(launches):
    """A grouped call of few queries packs its query heads (the kernel views q as rows of heads_kv heads, in
    place), planned or not; pack_gqa=False does not."""
    q, (k, v) = qkv(1, 16, 8, 64)[0], qkv(1, 100, 2, 64)[1:]
    for pack_gqa, pack in ((None, 4), (False, 1)):
        for _ in range(2):
            cuteattn.flash_attn_func(q, k, v, causal=True, pack_gqa=pack_gqa)
        for op, args in launches[-2:]:
            assert op.pack_gqa == pack and op.qhead_per_kvhead == 4 // pack
            assert args[0].data_ptr() == q.data_ptr() and args[3].shape == q.shape


def test_dynamic_needs_a_persistent_grid():
    from cuteattn.sm90.fwd_config import FwdConfig

    with pytest.raises(ValueError, match="persistent=True"):
        FwdConfig(dynamic=True)
