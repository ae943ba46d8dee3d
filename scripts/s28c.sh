# The default num_splits is now 0 (cuteattn chooses): the whole GPU suite (forward, backward, interface, training
# loop), then decoding shapes over batch 1-8 (benchmarks/pack_gqa.py). Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
CUTEATTN_TEST_HANG_SECONDS=120 timeout 400 python3 -m pytest -m gpu tests -q -n 15 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -12 $OUT/tests.log
B="timeout 45 python3 -u benchmarks/pack_gqa.py --rep-ms 30 --seqlens-q 1,16,64 --seqlens-k 4096,16384"
(for b in 1 2 4; do $B --batch $b; done) 2>&1 | grep -v "Warning\|exe_args" > $OUT/pack_gqa.log; cat $OUT/pack_gqa.log
