# Decoding shapes beyond s28a's: batch 1 (8 KV heads: few CTAs, where split-KV should pay) and causal batch 8.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
B="python3 -u benchmarks/pack_gqa.py --rep-ms 40"
(timeout 100 $B --batch 1 --seqlens-q 1,16,128 --seqlens-k 4096,16384,65536; timeout 80 $B --causal --seqlens-q 16,64,128 --seqlens-k 4096,16384; timeout 60 $B --seqlens-q 128 --seqlens-k 4096,16384) 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa.log; cat $OUT/pack_gqa.log
