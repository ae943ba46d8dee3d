"""Reading the SASS that CuTe DSL keeps (CUTE_DSL_KEEP=sass): opcode counts, and the innermost loops, whose
instructions are what a warp issues per step of a kernel's mainloop; from the cubin, each instruction's control
bits (its stall, the scoreboards it sets and those it waits for). Used by the SASS tests and by
`benchmarks/sass_steps.py`; needs no GPU."""

import importlib.metadata
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from typing import Optional

# "        /*0f70*/              @!P0 HGMMA.64x128x16.F32.BF16 R24, gdesc[UR28], RZ, !UPT ;" -> "HGMMA"
INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", re.MULTILINE)
LABEL = re.compile(r"^(\.L_x_\d+):")
BRANCH = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")
PREDICATED = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+@")
# nvdisasm -hex: "/*19f0*/  S2R R0, SR_TID.X ;  /* 0x0000000000007919 */", the high word on the next line.
HEX_LOW = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(.*?)\s*;\s*/\* (0x[0-9a-f]{16}) \*/")
HEX_HIGH = re.compile(r"^\s*/\* (0x[0-9a-f]{16}) \*/")
NO_SCOREBOARD = 7


def opcodes(sass: str) -> Counter:
    """How often each opcode (without its modifiers) occurs."""
    return Counter(INSTRUCTION.findall(sass))


def innermost_loop_bodies(sass: str) -> list:
    """The instruction lines of each loop (a branch back to an earlier label) that holds no other loop, in order;
    the retry loop of an mbarrier wait, which ptxas may place inside the step, does not count as one."""
    labels, body = {}, []
    for line in sass.splitlines():  # a label names the instruction after it
        label = LABEL.match(line)
        if label:
            labels[label.group(1)] = len(body)
        elif INSTRUCTION.match(line):
            body.append(line)
    loops = []
    for end, line in enumerate(body):
        target = BRANCH.search(line)
        # An unconditional branch back is the way home of a block placed out of line, not a loop.
        if target and PREDICATED.match(line) and labels.get(target.group(1), end + 1) <= end:
            loops.append((labels[target.group(1)], end))
    # An mbarrier wait's retry loop (a barrier check and no wgmma) may sit inside a step; it does not nest.
    nesting = [(c, d) for c, d in loops if any("HGMMA" in line for line in body[c:d + 1])
               or not any("SYNCS.PHASECHK" in line for line in body[c:d + 1])]
    inner = [(a, b) for a, b in loops if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in nesting)]
    return [body[a:b + 1] for a, b in inner]


def innermost_loops(sass: str) -> list:
    """Opcode counts of each innermost loop (`innermost_loop_bodies`), in order."""
    return [Counter(INSTRUCTION.match(line).group(1) for line in lines) for lines in innermost_loop_bodies(sass)]


def address(line: str) -> int:
    """The address of an instruction line of the SASS."""
    return int(re.match(r"^\s*/\*([0-9a-f]+)\*/", line).group(1), 16)


@dataclass(frozen=True)
class Control:
    """An instruction's control bits (bits 105-121 of its 128-bit word, sm70 onwards): the cycles the warp
    stalls after issuing it, the scoreboard its result (write) or its operands' release (read) sets, and the
    scoreboards it waits for before issuing."""

    stall: int
    write: Optional[int]
    read: Optional[int]
    waits: tuple

    @staticmethod
    def decode(word: int) -> "Control":
        write, read = (word >> 110) & 7, (word >> 113) & 7
        return Control(stall=(word >> 105) & 15, write=None if write == NO_SCOREBOARD else write,
                       read=None if read == NO_SCOREBOARD else read,
                       waits=tuple(b for b in range(6) if (word >> (116 + b)) & 1))


def nvdisasm() -> str:
    """The nvdisasm of the nvidia-cuda-nvdisasm wheel (the `test` extra), else one on PATH."""
    try:
        dist = importlib.metadata.distribution("nvidia-cuda-nvdisasm")
        for file in dist.files or ():
            if file.name == "nvdisasm":
                return str(dist.locate_file(file))
    except importlib.metadata.PackageNotFoundError:
        pass
    found = shutil.which("nvdisasm")
    if found is None:
        raise RuntimeError("nvdisasm not found: pip install nvidia-cuda-nvdisasm, or put the CUDA toolkit's on PATH")
    return found


def controls(cubin_path: str) -> dict:
    """{address: Control} of every instruction of a cubin's kernels."""
    return parse_controls(subprocess.run([nvdisasm(), "-hex", "-c", cubin_path], capture_output=True, text=True,
                                         check=True).stdout)


def parse_controls(listing: str) -> dict:
    """{address: Control} of the instructions of an `nvdisasm -hex` listing."""
    lines = listing.splitlines()
    found = {}
    for low, high in zip(lines, lines[1:]):
        low_match, high_match = HEX_LOW.match(low), HEX_HIGH.match(high)
        if low_match and high_match:
            word = int(low_match.group(3), 16) | int(high_match.group(1), 16) << 64
            found[int(low_match.group(1), 16)] = Control.decode(word)
    return found
