# The split tails against the size of the last wave: 1 x 16384 x heads x 128, heads 8-26 (a last wave of 100
# down to 28 key blocks or tiles of 132 SMs), backward then forward, after the forward's tail tests that
# session 24 changed (unpacked; 42 tiles chosen). Parts forced (7 backward, 5 forward, as the count chose for
# 68 and 36 in notes-24), past the bound. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T="python3 -m pytest -m gpu -q -n 15 -rf --tb=line -p no:cacheprovider"
CUTEATTN_TEST_HANG_SECONDS=60 timeout -s INT -k 10 80 $T tests/test_gpu_fwd_sm90.py::test_split_tail tests/test_gpu_fwd_sm90.py::test_split_tail_chosen > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -3 $OUT/tests.log
S=1x16384x8x128,1x16384x12x128,1x16384x16x128,1x16384x20x128,1x16384x24x128,1x16384x26x128
timeout 120 python3 -u benchmarks/split_tail.py --direction bwd --rounds 3 --parts 7 --shapes $S 2>&1 | grep -v "Warning\|exe_args" > $OUT/split_tail_bwd.log; cat $OUT/split_tail_bwd.log
timeout 100 python3 -u benchmarks/split_tail.py --direction fwd --rounds 3 --parts 5 --shapes $S 2>&1 | grep -v "Warning\|exe_args" > $OUT/split_tail_fwd.log; cat $OUT/split_tail_fwd.log
