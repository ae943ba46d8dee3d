"""Tracing mods on the CPU: what the kernels are given (no GPU needed)."""

import pytest
import torch

from cuteattn import reference
from cuteattn.mods import block_mask, trace


def test_trace_finds_captured_tensors_and_derivatives():
    bias = torch.randn(4, 511, requires_grad=True)
    scale = torch.randn(4)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]

    def head_scale(score, b, h, q_idx, kv_idx):
        return score * scale[h] + torch.tensor(0.5)

    traced = trace.trace_score_mod(rel_bias)
    assert traced.captured == (bias,) and traced.grads_of == (0,)
    assert traced.score_grad_is_identity and not traced.grads_read_score
    scaled = trace.trace_score_mod(head_scale)
    assert len(scaled.captured) == 1 and scaled.captured[0] is scale  # the 0-d constant is compiled in
    assert not scaled.score_grad_is_identity and scaled.grads_of == ()


def test_equal_code_equal_keys_and_retrace_on_new_closure():
    def make(c):
        return lambda score, b, h, q_idx, kv_idx: score * c

    assert trace.trace_score_mod(make(2.0)).key == trace.trace_score_mod(make(2.0)).key
    assert trace.trace_score_mod(make(2.0)).key != trace.trace_score_mod(make(3.0)).key


def test_errors_name_the_op_and_the_line():
    def erf_mod(score, b, h, q_idx, kv_idx):
        return torch.erf(score)

    with pytest.raises(TypeError, match=r"aten\.erf\.default.*return torch\.erf\(score\)"):
        trace.trace_score_mod(erf_mod)
    with pytest.raises(TypeError, match="mask_mod must return a bool tensor"):
        trace.trace_mask_mod(lambda b, h, q_idx, kv_idx: q_idx - kv_idx)
    table = torch.randn(2, 64)
    with pytest.raises(TypeError, match="one value per score"):
        trace.trace_score_mod(lambda score, b, h, q_idx, kv_idx: score + table[h])
    table64 = torch.randn(2, 64, dtype=torch.float64)
    with pytest.raises(TypeError, match="captured tensors may be"):
        trace.trace_score_mod(lambda score, b, h, q_idx, kv_idx: score + table64[h, q_idx])


@pytest.mark.parametrize("block_size", [(128, 128), (64, 256)])
def test_block_mask_folds_into_an_equal_mask_mod(block_size):
    from torch.nn.attention.flex_attention import create_block_mask

    doc = torch.randint(0, 3, (2, 300)).sort(dim=-1).values

    def document(b, h, q_idx, kv_idx):
        return (doc[b, q_idx] == doc[b, kv_idx]) & (q_idx >= kv_idx)

    mask = create_block_mask(document, 2, None, 300, 300, device="cpu", BLOCK_SIZE=block_size)
    opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,
                             learnable_sink=None, score_mod=None, mask_mod=None, block_mask=mask)
    folded = block_mask.fold(opts, torch.device("cpu"))
    assert folded.block_mask is None and block_mask.fold(opts, torch.device("cpu")).mask_mod is folded.mask_mod
    b, h, i, j = (torch.arange(n).view(*(-1 if d == k else 1 for d in range(4)))
                  for k, n in enumerate((2, 4, 300, 300)))
    want = reference._block_mask_visible(reference.expand_block_mask(mask, "cpu"), (2, 4, 300, 300), b, h, i, j)
    assert torch.equal(folded.mask_mod(b, h, i, j).expand(2, 4, 300, 300), want.expand(2, 4, 300, 300))
    trace.trace_mask_mod(folded.mask_mod)  # the kernels can take it


def test_block_lists_from_tile_classes(monkeypatch):
    """The host side of block sparsity, from given tile classes (the GPU computes them; here a table)."""
    from cuteattn.mods import block_sparsity

    V, B = block_sparsity.SOME_VISIBLE, block_sparsity.SOME_VISIBLE | block_sparsity.SOME_HIDDEN
    C = B | block_sparsity.SOME_CUT
    # (batch 1, heads 2, 2 query blocks, 3 key blocks): 0 empty, V full, B partial (a window edge or the seqlen_k
    # tail), C partial and cut by the mask_mod
    classes = torch.tensor([[[[V, 0, C], [0, B, V]],
                             [[0, 0, 0], [C, B, C]]]], dtype=torch.int32)
    monkeypatch.setattr(block_sparsity, "_tile_classes", lambda *args: classes.clone())
    opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=None, softcap=0.0,
                             learnable_sink=None, score_mod=None, mask_mod=lambda b, h, q, kv: q >= kv,
                             block_mask=None)
    count, blocks, order = block_sparsity.forward_lists(opts, 3, 2, 200, 300, 128, 128, 4, torch.device("cpu"))
    # (listed, partial) per query block; the partial blocks first, each class from the last key block down;
    # entries 4 * n_block + 2 * cut + partial.
    assert count.shape == (3, 2, 2, 2) and count[0].tolist() == [[[2, 1], [2, 1]], [[0, 0], [3, 3]]]
    assert blocks[2, 0, 0, :2].tolist() == [4 * 2 + 2 + 1, 4 * 0]
    assert blocks[0, 0, 1, :2].tolist() == [4 * 1 + 1, 4 * 2]
    assert blocks[0, 1, 1, :3].tolist() == [4 * 2 + 3, 4 * 1 + 1, 4 * 0 + 3]
    # The tiles (query block, head, batch) by their listed blocks, in groups of 4 (head, batch) pairs.
    assert order.tolist() == [3, 7, 0, 1, 4, 5, 2, 6, 11, 8, 9, 10]
    count, blocks, turns, order = block_sparsity.backward_lists(opts, 1, 2, 1, 200, 300, 128, 128, 1,
                                                                torch.device("cpu"))
    # Key block n lists (g, m) over the group's two heads: entries 2 * (g * 2 + m) + cut, in order.
    assert count[0, 0].tolist() == [2, 2, 3]
    assert blocks[0, 0, 0, :2].tolist() == [2 * 0, 2 * 3 + 1]
    assert blocks[0, 0, 1, :2].tolist() == [2 * 1, 2 * 3]
    assert blocks[0, 0, 2, :3].tolist() == [2 * 0 + 1, 2 * 1, 2 * 3 + 1]
    # A turn counts the earlier key blocks that list the same (head, query block).
    assert turns[0, 0, 2, :3].tolist() == [1, 1, 2]
    assert order.tolist() == [2, 0, 1]


def test_position_difference():
    """The graphs that read the positions only through q_idx - kv_idx (or kv_idx - q_idx)."""
    bias, slope = torch.randn(2, 511), torch.randn(2)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]

    def alibi(score, b, h, q_idx, kv_idx):
        return score + slope[h] * (kv_idx - q_idx)

    def causal_bias(score, b, h, q_idx, kv_idx):
        return score + (q_idx >= kv_idx).float()

    def two_reads(score, b, h, q_idx, kv_idx):
        return score + (q_idx - kv_idx) * 0.1 + q_idx * 0.01

    for fn, found in [(rel_bias, True), (alibi, True), (causal_bias, False), (two_reads, False)]:
        traced = trace.trace_score_mod(fn)
        assert (trace.position_difference(traced.graph, 1) is not None) == found, fn.__name__
        assert (trace.position_difference(traced.grad_graph, 1) is not None) == found, fn.__name__


def test_mask_comparisons_by_difference():
    """A mask_mod's comparisons of q_idx with kv_idx are rewritten to read their difference: a sliding window
    then reads the positions only through q_idx - kv_idx; the graph still computes the user's mask."""
    doc = torch.tensor([0] * 20 + [1] * 20, dtype=torch.int32)

    def sliding_window(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx <= 5)

    def flipped(b, h, q_idx, kv_idx):
        return (kv_idx < q_idx) | (kv_idx == q_idx) | ((kv_idx - q_idx) > 30)

    def banded(b, h, q_idx, kv_idx):
        return (q_idx - kv_idx).abs() <= 3

    def document(b, h, q_idx, kv_idx):
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    q_idx, kv_idx = torch.arange(40, dtype=torch.int32).view(-1, 1), torch.arange(40, dtype=torch.int32).view(1, -1)
    zero = torch.zeros((), dtype=torch.int32)
    for fn, found in [(sliding_window, True), (flipped, False), (banded, True), (document, False)]:
        traced = trace.trace_mask_mod(fn)
        assert (trace.position_difference(traced.graph, 0) is not None) == found, fn.__name__
        assert torch.equal(traced.graph(zero, zero, q_idx, kv_idx), fn(zero, zero, q_idx, kv_idx)), fn.__name__


def test_difference_frontier():
    """What a difference table holds: the values that read the positions through q_idx - kv_idx only and that
    the score meets; nothing where a value is not a float or the positions are read otherwise."""
    from cuteattn.mods.tile import difference_frontier

    bias, slope = torch.randn(2, 511), torch.randn(2)

    def rel_bias(score, b, h, q_idx, kv_idx):
        return score + bias[h, (q_idx - kv_idx).clamp(-255, 255) + 255]

    def alibi(score, b, h, q_idx, kv_idx):
        return score * 0.5 + slope[h] * (kv_idx - q_idx)

    def sign_flip(score, b, h, q_idx, kv_idx):
        return torch.where(q_idx - kv_idx > 0, score, -score)

    def two_reads(score, b, h, q_idx, kv_idx):
        return score + (q_idx - kv_idx) * 0.1 + q_idx * 0.01

    frontier = {fn.__name__: [n.target for n in difference_frontier(trace.trace_score_mod(fn))]
                for fn in (rel_bias, alibi, sign_flip, two_reads)}
    assert frontier == {"rel_bias": [torch.ops.aten.index.Tensor], "alibi": [torch.ops.aten.mul.Tensor],
                        "sign_flip": [], "two_reads": []}
