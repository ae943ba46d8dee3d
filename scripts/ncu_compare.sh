#!/usr/bin/env bash
# On the GPU machine: ncu (full set) of one call of cuteattn and of FA4 on the same case, summarized by
# benchmarks/ncu_hot.py; everything in one tarball under $OUT (the device returns few files).
#   bash scripts/ncu_compare.sh fwd 128 [--causal] [--seqlen 1k]
set -uo pipefail
source .gpu/setup.sh
direction=$1 hdim=$2; shift 2
case $direction in fwd) kernels="FlashFwdSm90|ForwardSm90" ;; bwd) kernels="FlashBwdSm90|BackwardSm90" ;; esac
work=$(mktemp -d)
for provider in cuteattn fa4; do
  name=${direction}${hdim}_$provider
  timeout 240 ncu --clock-control none -k "regex:$kernels" --launch-skip 2 --launch-count 1 --set full \
    --import-source no -o "$work/$name" -f python3 benchmarks/profile_one.py --provider $provider \
    --direction "$direction" --hdim "$hdim" "$@" > "$work/$name.run.log" 2>&1
  echo "$name: ncu exit $?"
  ncu --import "$work/$name.ncu-rep" --page details > "$work/$name.details.txt" 2>&1
  ncu --import "$work/$name.ncu-rep" --page source --csv --print-source sass > "$work/$name.sass.csv" 2>&1
  grep -E "Duration|Executed Ipc Active|Issue Slots Busy" "$work/$name.details.txt" | head -3
  python3 benchmarks/ncu_hot.py "$work/$name.sass.csv" --top 15 | tee "$work/$name.hot.txt" | head -3
  rm -f "$work/$name.ncu-rep"
done
tar -czf "$OUT/ncu_${direction}${hdim}.tar.gz" -C "$work" .
