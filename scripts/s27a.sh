# Next session's first call (carry .gpu), after re-applying the pack_gqa experiment (git revert --no-commit of
# its revert): the forward's GPU tests (GQA calls of fewer than 128 queries now pack by default), then
# packed against unpacked tiles and FA4 at decoding shapes. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 300 python3 -m pytest tests/test_gpu_fwd_sm90.py tests/test_gpu_training.py -q -n 12 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -4 $OUT/tests.log; date +%s >> $OUT/t0
timeout 120 python3 -u benchmarks/pack_gqa.py 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa.log; cat $OUT/pack_gqa.log; date +%s >> $OUT/t0
timeout 100 python3 -u benchmarks/pack_gqa.py --causal --seqlens-q 16,64,128 --seqlens-k 4096 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa_causal.log; cat $OUT/pack_gqa_causal.log; date +%s >> $OUT/t0
