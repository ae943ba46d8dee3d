# The split tail (tests, then timed against unsplit and FA4), and session 22's pending num_splits=0 tests: the
# backward of a split forward, training, mods; then batch-4 decoding. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T="python3 -m pytest -m gpu -q -n 15 -rf --tb=line -p no:cacheprovider"
CUTEATTN_TEST_HANG_SECONDS=120 timeout -s INT -k 10 150 $T tests/test_gpu_fwd_sm90.py -k "split_tail or split_kv" > $OUT/tests_tail.log 2>&1; echo "rc $?" >> $OUT/tests_tail.log; tail -5 $OUT/tests_tail.log
timeout 150 python3 -u benchmarks/split_tail.py --rounds 5 2>&1 | grep -v "Warning\|exe_args" > $OUT/split_tail.log; cat $OUT/split_tail.log
CUTEATTN_TEST_HANG_SECONDS=120 timeout -s INT -k 10 140 $T tests/test_gpu_bwd_sm90.py::test_backward_of_a_split_forward tests/test_gpu_training.py tests/test_gpu_mods_sm90.py > $OUT/tests_bwd_mods.log 2>&1; echo "rc $?" >> $OUT/tests_bwd_mods.log; tail -5 $OUT/tests_bwd_mods.log
