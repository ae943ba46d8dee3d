#!/usr/bin/env python3
"""Where a kernel's warps stall, from ncu's source page exported as CSV
(`ncu --import R --page source --csv --print-source sass`): the stall reasons, the opcodes, and the hottest
instructions with their two main reasons.

    python benchmarks/ncu_hot.py kernel.sass.csv [--top 25]
"""

import argparse
import collections
import csv

SAMPLES = "Warp Stall Sampling (All Samples)"


def number(text: str) -> float:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("csv_path")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    rows = list(csv.reader(open(args.csv_path)))
    header = next(r for r in rows if "Source" in r and SAMPLES in r)
    body = rows[rows.index(header) + 1:]
    col = {name: i for i, name in enumerate(header)}
    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    total = sum(number(r[col[SAMPLES]]) for r in body) or 1.0

    reasons = collections.Counter()
    opcodes = collections.Counter()
    for r in body:
        for s in stalls:
            reasons[s] += number(r[col[s]])
        source = r[col["Source"]].split()
        opcode = next((w for w in source if not w.startswith("@")), "?")
        opcodes[opcode.split(".")[0]] += number(r[col[SAMPLES]])
    print(f"samples {total:.0f}")
    print("reasons: " + ", ".join(f"{k[6:]} {v / total:.1%}" for k, v in reasons.most_common(10)))
    print("opcodes: " + ", ".join(f"{k} {v / total:.1%}" for k, v in opcodes.most_common(12)))
    for r in sorted(body, key=lambda r: -number(r[col[SAMPLES]]))[:args.top]:
        top = sorted(((number(r[col[s]]), s[6:]) for s in stalls), reverse=True)[:2]
        why = ", ".join(f"{name} {n / total:.1%}" for n, name in top if n)
        print(f"{number(r[col[SAMPLES]]) / total:6.1%}  {r[col['Source']][:72]:72}  {why}")


if __name__ == "__main__":
    main()
