"""Check the SASS of the sm90 forward's main configs, with no GPU: Hopper warpgroup MMAs, no register spills.

Each config compiles in a fresh process with CUTE_DSL_KEEP=sass, which makes the DSL keep the cubin and
disassemble it with nvdisasm (the nvidia-cuda-nvdisasm wheel of the `test` extra) into CUTE_DSL_DUMP_DIR.
"""

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# "        /*0f70*/              @!P0 HGMMA.64x128x16.F32.BF16 R24, gdesc[UR28], RZ, !UPT ;" -> "HGMMA"
INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", re.MULTILINE)

BUILD = """
import sys, torch
from cuteattn import reference
from cuteattn.sm90.forward import _compile, kernel_for
head_dim, causal = int(sys.argv[1]), sys.argv[2] == "causal"
opts = reference.Options(softmax_scale=1.0, window_left=None, window_right=0 if causal else None, softcap=0.0,
                         learnable_sink=None, score_mod=None, mask_mod=None, block_mask=None)
_compile(kernel_for(torch.bfloat16, head_dim, head_dim, 1, opts))
"""


def opcodes(sass: str) -> Counter:
    """How often each opcode (without its modifiers) occurs in the disassembly."""
    return Counter(INSTRUCTION.findall(sass))


@pytest.mark.parametrize("mask", ["plain", "causal"])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_fwd_sass(head_dim, mask, tmp_path):
    env = {**os.environ, "CUTE_DSL_ARCH": "sm_90a", "CUTE_DSL_KEEP": "sass", "CUTE_DSL_DUMP_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", BUILD, str(head_dim), mask], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"compile failed:\n{result.stderr}"
    sass_files = list(tmp_path.glob("*.sass"))
    assert len(sass_files) == 1, f"expected one SASS file in the dump dir, found {sass_files}"
    counts = opcodes(sass_files[0].read_text())
    assert counts["HGMMA"] > 0, f"no HGMMA in the SASS; opcodes found: {dict(counts)}"
    spills = {op: counts[op] for op in ("STL", "LDL") if counts[op]}
    assert not spills, f"local-memory traffic (register spills): {spills}"
