# The split tails, forward and backward (tests, then each timed against its unsplit launch and FA4), and session
# 22's pending tests (the backward of a split forward, mods). Logs under $OUT. Ran in session 24 with 3369422
# reverted (notes-24); the tails are on main since bdf6cfa.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T="python3 -m pytest -m gpu -q -n 15 -rf --tb=line -p no:cacheprovider"
CUTEATTN_TEST_HANG_SECONDS=150 timeout -s INT -k 10 270 $T tests/test_gpu_bwd_sm90.py tests/test_gpu_fwd_sm90.py::test_split_tail tests/test_gpu_fwd_sm90.py::test_split_tail_chosen tests/test_gpu_fwd_sm90.py::test_split_kv tests/test_gpu_mods_sm90.py tests/test_gpu_training.py > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -8 $OUT/tests.log
for d in fwd bwd; do timeout 110 python3 -u benchmarks/split_tail.py --direction $d --rounds 5 --shapes 1x16384x16x128,2x12288x16x128,1x16384x32x64 2>&1 | grep -v "Warning\|exe_args" > $OUT/split_tail_$d.log; cat $OUT/split_tail_$d.log; done
