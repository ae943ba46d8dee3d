"""Reading the SASS that CuTe DSL keeps (CUTE_DSL_KEEP=sass): opcode counts, and the innermost loops, whose
instructions are what a warp issues per step of a kernel's mainloop. Used by the SASS tests and by
`benchmarks/sass_steps.py`; needs no GPU."""

import re
from collections import Counter

# "        /*0f70*/              @!P0 HGMMA.64x128x16.F32.BF16 R24, gdesc[UR28], RZ, !UPT ;" -> "HGMMA"
INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", re.MULTILINE)
LABEL = re.compile(r"^(\.L_x_\d+):")
BRANCH = re.compile(r"\bBRA\b.*`\((\.L_x_\d+)\)")


def opcodes(sass: str) -> Counter:
    """How often each opcode (without its modifiers) occurs."""
    return Counter(INSTRUCTION.findall(sass))


def innermost_loops(sass: str) -> list:
    """Opcode counts of each loop (a branch back to an earlier label) that holds no other loop, in order."""
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
        if target and labels.get(target.group(1), end + 1) <= end:
            loops.append((labels[target.group(1)], end))
    inner = [(a, b) for a, b in loops if not any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops)]
    return [Counter(INSTRUCTION.match(line).group(1) for line in body[a:b + 1]) for a, b in inner]
