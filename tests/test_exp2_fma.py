"""`softmax.exp2_fma`'s method and constants on the CPU: its PTX steps done in float32 with numpy, against
exp2 in float64 (the GPU tests run the kernel's own, `FwdConfig.exp2_fma_share`)."""

import numpy as np

from cuteattn.softmax import EXP2_CUBIC

ROUNDING = np.float32(1.5 * 2 ** 23)


def exp2_fma(x: np.ndarray) -> np.ndarray:
    x = np.maximum(x.astype(np.float32), np.float32(-127.0))
    j = (x + ROUNDING).astype(np.float32)
    f = (x - (j - ROUNDING)).astype(np.float32)
    p = np.float32(EXP2_CUBIC[3])
    for c in reversed(EXP2_CUBIC[:3]):  # fma.rn: one rounding of the exact product and sum
        p = (p.astype(np.float64) * f + np.float64(np.float32(c))).astype(np.float32)
    bits = p.view(np.int32) + (j.view(np.int32) << np.int32(23))
    return bits.view(np.float32)


def test_relative_error_over_the_scores_range():
    """From 2^-125 to 2^8 (scores under a running max that may trail by the rescale threshold): within 1.1e-4 of
    exp2, a fraction of a bf16 or fp16 ulp."""
    x = np.linspace(-125.0, 8.0, 2_000_001, dtype=np.float32)
    got = exp2_fma(x).astype(np.float64)
    err = np.abs(got / np.exp2(x.astype(np.float64)) - 1).max()
    assert err < 1.1e-4, err


def test_masked_scores_give_zero():
    """-inf (a masked score) and anything at or below the clamp give exactly 0, so a fully masked row sums to 0;
    just above it, tiny but never negative or NaN."""
    assert EXP2_CUBIC[0] == 1.0
    out = exp2_fma(np.array([-np.inf, -1e30, -200.0, -127.0], dtype=np.float32))
    assert (out == 0).all() and not np.signbit(out).any(), out
    near = exp2_fma(np.linspace(-127.0, -120.0, 10001, dtype=np.float32))
    assert np.isfinite(near).all() and (near >= 0).all() and near.max() < 2.0 ** -119
