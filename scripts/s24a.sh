# Next session's call, from the repo root of a tree with the experiment applied (git revert --no-commit <revert>):
#   bash scripts/s24a.sh   (carry .gpu); logs under $OUT/w
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
W=$OUT/w; mkdir -p $W; nvidia-smi --query-gpu=name,clocks.max.sm --format=csv > $W/gpu.txt; date +%s > $W/t0
timeout 100 python3 benchmarks/sweep_sm90.py --hdims 128,64 --seqlens 1k --causal 0,1 --rounds 3 --variants default= persist=persistent:True 2>&1 | grep -v -i "warn\|exe_args" > $W/sweep.log; grep "^fwd" $W/sweep.log; date +%s >> $W/t0
timeout 80 python3 scripts/trace_fwd.py 2>&1 | grep -v -i "warn\|exe_args" > $W/trace.log; cat $W/trace.log; date +%s >> $W/t0
CUTEATTN_TEST_HANG_SECONDS=60 timeout 120 python3 -m pytest tests/test_gpu_fwd_sm90.py -k "persistent_ctas or config_variants" -q -n 15 -rf --tb=line -p no:cacheprovider > $W/tests.log 2>&1; echo "rc $?" >> $W/tests.log; tail -5 $W/tests.log; date +%s >> $W/t0
timeout 80 python3 benchmarks/sweep_sm90.py --hdims 128,64 --seqlens 4k,16k --causal 0,1 --rounds 3 --variants default= persist=persistent:True 2>&1 | grep -v -i "warn\|exe_args" > $W/sweep_long.log; grep "^fwd" $W/sweep_long.log; date +%s >> $W/t0
for tool in racecheck memcheck; do timeout 90 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_cases.py > $W/san-$tool.log 2>&1; echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" $W/san-$tool.log | head -3; done; date +%s >> $W/t0
cat $W/t0
