# For a num_splits=0 default (cuteattn chooses): the GPU tests that call flash_attn_func with defaults
# (the backward of a split forward, training, mods), then decoding shapes at batch 4. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T="python3 -m pytest -m gpu -q -n 15 -rf --tb=line -p no:cacheprovider"
CUTEATTN_TEST_HANG_SECONDS=120 timeout -s INT -k 10 140 $T tests/test_gpu_bwd_sm90.py::test_backward_of_a_split_forward tests/test_gpu_training.py tests/test_gpu_mods_sm90.py > $OUT/tests_bwd_mods.log 2>&1; echo "rc $?" >> $OUT/tests_bwd_mods.log; tail -6 $OUT/tests_bwd_mods.log
B="timeout 25 python3 -u benchmarks/pack_gqa.py --rep-ms 30 --seqlens-q 1,16 --seqlens-k 4096,16384"
(timeout 20 $B --batch 4) 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa.log; cat $OUT/pack_gqa.log
