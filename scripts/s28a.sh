# Copy-free pack_gqa and split-KV (re-applied experiment 71652ad): the forward's GPU tests that pack or split,
# decoding shapes (benchmarks/pack_gqa.py), then compute-sanitizer on small packed and split launches. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 150 python3 -m pytest tests/test_gpu_fwd_sm90.py -k "pack_gqa or split_kv or head_dim_v" -q -n 15 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -15 $OUT/tests.log; date +%s >> $OUT/t0
timeout 60 python3 -u benchmarks/pack_gqa.py --seqlens-q 1,16,64 --seqlens-k 4096,16384 --rep-ms 50 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa.log; cat $OUT/pack_gqa.log; date +%s >> $OUT/t0
for tool in memcheck racecheck; do timeout 100 compute-sanitizer --tool $tool python3 scripts/sanitize_decoding.py > $OUT/$tool.log 2>&1; echo "rc $?" >> $OUT/$tool.log; tail -4 $OUT/$tool.log; done; date +%s >> $OUT/t0
