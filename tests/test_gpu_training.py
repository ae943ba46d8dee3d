"""Training through cuteattn: a 2-layer transformer with random weights, 50 AdamW steps, against the same
model on PyTorch's SDPA from the same initial weights and batches: the loss curves agree within bf16 noise."""

import pytest
import torch
import torch.nn.functional as F

import cuteattn

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9,
                       reason="needs an sm90 GPU"),
]

VOCAB, DIM, HEADS, LAYERS, SEQLEN, BATCH, STEPS = 512, 256, 4, 2, 256, 8, 50


class Block(torch.nn.Module):
    def __init__(self, attention):
        super().__init__()
        self.attention = attention
        self.norm1, self.norm2 = torch.nn.LayerNorm(DIM), torch.nn.LayerNorm(DIM)
        self.qkv, self.proj = torch.nn.Linear(DIM, 3 * DIM), torch.nn.Linear(DIM, DIM)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(DIM, 4 * DIM), torch.nn.GELU(), torch.nn.Linear(4 * DIM, DIM))

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, HEADS, DIM // HEADS)).unbind(2)
        x = x + self.proj(self.attention(q, k, v).flatten(-2))
        return x + self.mlp(self.norm2(x))


def sdpa(q, k, v):  # (batch, seqlen, heads, head_dim) as cuteattn takes it
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                          is_causal=True).transpose(1, 2)


def ours(q, k, v):
    return cuteattn.flash_attn_func(q, k, v, causal=True)


def losses(attention, state, batches):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(VOCAB, DIM), *(Block(attention) for _ in range(LAYERS)),
                                torch.nn.LayerNorm(DIM), torch.nn.Linear(DIM, VOCAB)).cuda().bfloat16()
    if state is not None:
        model.load_state_dict(state)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    curve = []
    for tokens in batches:
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        curve.append(loss.item())
    return curve, model


def test_loss_curve_matches_sdpa():
    generator = torch.Generator(device="cuda").manual_seed(1)
    # A learnable sequence: runs of consecutive tokens from random starts, so the loss falls with training.
    batches = []
    for _ in range(STEPS):
        start = torch.randint(0, VOCAB, (BATCH, 1), device="cuda", generator=generator)
        batches.append((start + torch.arange(SEQLEN + 1, device="cuda")) % VOCAB)
    torch.manual_seed(0)
    init = torch.nn.Sequential(torch.nn.Embedding(VOCAB, DIM), *(Block(sdpa) for _ in range(LAYERS)),
                               torch.nn.LayerNorm(DIM), torch.nn.Linear(DIM, VOCAB)).cuda().bfloat16().state_dict()
    reference, _ = losses(sdpa, init, batches)
    got, _ = losses(ours, init, batches)
    assert reference[-1] < 0.5 * reference[0], f"the model does not learn: {reference}"
    for step, (a, b) in enumerate(zip(got, reference)):
        assert abs(a - b) <= 0.03 * abs(b) + 0.02, f"step {step}: loss {a} with cuteattn, {b} with SDPA"
