# The least that the num_splits=0 default needs: the backward from split forwards, and the training loop through
# flash_attn_func's defaults. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
CUTEATTN_TEST_HANG_SECONDS=80 timeout -s INT -k 10 100 python3 -m pytest -m gpu -q -n 15 -rf --tb=line -p no:cacheprovider tests/test_gpu_bwd_sm90.py::test_backward_of_a_split_forward tests/test_gpu_training.py > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -6 $OUT/tests.log
