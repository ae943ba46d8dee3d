"""Experiment (not for main as it stands): per-tile timestamps of the sm90 forward, default against persistent.

Thread 0 of each warpgroup writes clock64 and globaltimer into a (tiles, warpgroup, event) buffer: the producer
(warpgroup 0) before acquiring Q's buffer (2), after (3) and once Q's loads are issued (4); each consumer at its
start (0, first tile only), before Q's wait (1), after it (2), K0 in (3), the first block's softmax done (4),
mainloop done (5), epilogue done (6). Event 7 of warpgroup 0 holds the SM.
"""
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cuteattn.reference import Options  # noqa: E402
from cuteattn.sm90 import forward as fwdmod  # noqa: E402

fwdmod.TRACE = torch.zeros(8192, 4, 8, 2, dtype=torch.int64, device="cuda")
T = fwdmod.TRACE


def med(x):
    x = [v for v in x.tolist()]
    return statistics.median(x) if x else float("nan")


def run(hdim, seqlen_k, causal, persistent, batch=16, seqlen_q=1024):
    heads = 2048 // hdim
    q = torch.randn(batch, seqlen_q, heads, hdim, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(batch, seqlen_k, heads, hdim, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    opts = Options(softmax_scale=hdim ** -0.5, window_left=None, window_right=0 if causal else None, softcap=0.0,
                   learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
    config = fwdmod.replace(fwdmod.default_config(hdim, opts), persistent=persistent)
    call = lambda: fwdmod.forward(q, k, v, opts, config=config)  # noqa: E731
    for _ in range(20):
        call()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(50):
        call()
    end.record()
    torch.cuda.synchronize()
    T.zero_()
    call()
    torch.cuda.synchronize()
    tr = T.cpu()
    tr = tr[(tr[:, 1, 2, 1] != 0)]
    c = tr[..., 1]
    cons = range(1, config.num_consumers + 1)
    rows = {"Q issued -> Q in (c1)": c[:, 1, 2] - c[:, 0, 4],
            "Q wait (c1)": c[:, 1, 2] - c[:, 1, 1]}
    for w in cons:
        rows[f"K0 wait c{w}"] = c[:, w, 3] - c[:, w, 2]
        rows[f"first block c{w}"] = c[:, w, 4] - c[:, w, 3]
        rows[f"rest of mainloop c{w}"] = c[:, w, 5] - c[:, w, 4]
        rows[f"epilogue c{w}"] = c[:, w, 6] - c[:, w, 5]
    rows["tile (c1: before Q wait -> epilogue done)"] = c[:, 1, 6] - c[:, 1, 1]
    # the time an SM spends between tiles: next tile's Q wait start - this tile's last epilogue end (globaltimer)
    g = tr[..., 0]
    sm = tr[:, 0, 7, 0]
    gaps = []
    for s in sm.unique():
        sel = (sm == s).nonzero().flatten()
        begin = g[sel, 1, 1]
        order = begin.argsort()
        ends = torch.stack([g[sel, w, 6] for w in cons]).max(dim=0).values[order]
        gaps += (begin[order][1:] - ends[:-1]).tolist()
    print(f"hdim {hdim} seqlen_k {seqlen_k} causal {causal} persistent {persistent}: {tr.shape[0]} tiles, "
          f"{1000 * start.elapsed_time(end) / 50:.1f} us a launch")
    for name, x in rows.items():
        print(f"  {name:>44}: {med(x):8.0f} cycles")
    print(f"  {'between tiles on an SM (globaltimer)':>44}: {statistics.median(gaps) if gaps else float('nan'):8.0f} ns")


for hdim in (128, 64):
    for causal in (False, True):
        for persistent in (False, True):
            run(hdim, 1024, causal, persistent)
