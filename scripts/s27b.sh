# This session's first call (carry .gpu), the splitkv tree: the forward's GPU tests (pack_gqa and split-KV
# included) and the training test. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 400 python3 -m pytest tests/test_gpu_fwd_sm90.py tests/test_gpu_training.py -q -n 14 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -30 $OUT/tests.log; date +%s >> $OUT/t0
