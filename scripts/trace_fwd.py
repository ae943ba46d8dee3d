"""Experiment: per-CTA timestamps of the sm90 forward (not for main)."""
import sys, statistics
import torch
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))
import cuteattn
from cuteattn.sm90 import forward as fwdmod

MAXCTA = 8192
fwdmod.TRACE = torch.zeros(MAXCTA, 4, 8, 2, dtype=torch.int64, device='cuda')
T = fwdmod.TRACE

def run(hdim, sq, sk, causal, batch=16):
    heads = 2048 // hdim
    q = torch.randn(batch, sq, heads, hdim, device='cuda', dtype=torch.bfloat16)
    k = torch.randn(batch, sk, heads, hdim, device='cuda', dtype=torch.bfloat16)
    v = torch.randn_like(k)
    for _ in range(20):
        cuteattn.flash_attn_func(q, k, v, causal=causal)
    torch.cuda.synchronize()
    T.zero_()
    cuteattn.flash_attn_func(q, k, v, causal=causal)
    torch.cuda.synchronize()
    tr = T.cpu()
    used = (tr[:, 0, 0, 0] != 0).nonzero().flatten()
    tr = tr[used]
    n = tr.shape[0]
    g, c = tr[..., 0], tr[..., 1]
    start = g[:, 0, 0]
    end = g[:, 1:3, 6].max(dim=1).values
    t0 = start.min().item()
    span = (end.max() - t0).item()
    cyc = lambda a, b: statistics.median((a - b).tolist())
    # consumer 0 and 1 phases in cycles
    rep = {}
    rep['init(cyc)'] = cyc(c[:, 0, 1], c[:, 0, 0])
    rep['prod acquireQ'] = cyc(c[:, 0, 3], c[:, 0, 0])
    for w in (1, 2):
        rep[f'c{w} start'] = cyc(c[:, w, 0], c[:, 0, 0])
        rep[f'c{w} qwait'] = cyc(c[:, w, 2], c[:, 0, 0])
        rep[f'c{w} k0wait'] = cyc(c[:, w, 3], c[:, w, 2])
        rep[f'c{w} S0+sm'] = cyc(c[:, w, 4], c[:, w, 3])
        rep[f'c{w} loop'] = cyc(c[:, w, 5], c[:, w, 4])
        rep[f'c{w} epi'] = cyc(c[:, w, 6], c[:, w, 5])
    rep['cta(cyc)'] = cyc(c[:, 1:3, 6].max(dim=1).values, c[:, 0, 0])
    rep['cta(ns)'] = cyc(end, start)
    # gaps on each SM between one CTA's end and the next one's start
    sm = tr[:, 0, 7, 0]
    gaps = []
    per_sm = {}
    for i in range(n):
        per_sm.setdefault(int(sm[i]), []).append((int(start[i]), int(end[i])))
    for lst in per_sm.values():
        lst.sort()
        gaps += [b[0] - a[1] for a, b in zip(lst, lst[1:])]
    rep['gap(ns) med'] = statistics.median(gaps) if gaps else -1
    rep['gap min'] = min(gaps) if gaps else -1
    rep['ctas/sm'] = n / len(per_sm)
    # globaltimer resolution
    diffs = sorted(set((start - t0).tolist()))
    steps = [b - a for a, b in zip(diffs, diffs[1:]) if b > a]
    rep['timer step'] = min(steps) if steps else -1
    ms = torch.cuda.Event(enable_timing=True); me = torch.cuda.Event(enable_timing=True)
    ms.record()
    for _ in range(50):
        cuteattn.flash_attn_func(q, k, v, causal=causal)
    me.record(); torch.cuda.synchronize()
    rep['kernel us (event)'] = ms.elapsed_time(me) / 50 * 1000
    rep['span us'] = span / 1000
    print(f"hdim {hdim} sq {sq} sk {sk} causal {causal}: ctas {n}")
    for k_, v_ in rep.items():
        print(f"   {k_:>18}: {v_:.0f}" if isinstance(v_, (int, float)) else f"   {k_}: {v_}")

for hdim in (128, 64):
    for sk in (128, 1024):
        run(hdim, 1024, sk, False)
    run(hdim, 1024, 1024, True)
