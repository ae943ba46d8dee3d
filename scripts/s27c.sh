# Second call: packed, packed with split-KV, unpacked and FA4 (with and without its splits) at decoding shapes.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
timeout 250 python3 -u benchmarks/pack_gqa.py 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa.log; cat $OUT/pack_gqa.log; date +%s >> $OUT/t0
timeout 150 python3 -u benchmarks/pack_gqa.py --causal --seqlens-q 16,64,128 --seqlens-k 4096 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa_causal.log; cat $OUT/pack_gqa_causal.log; date +%s >> $OUT/t0
