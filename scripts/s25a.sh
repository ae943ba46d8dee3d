# Next session's call for the persistent backward experiment (apply it first: git revert --no-commit <revert>;
# export main's package for the A/B: mkdir -p _trees/main && git archive main cuteattn | tar -x -C _trees/main),
# then call the device with carry [".gpu", "_trees/main"]: bash scripts/s25a.sh. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
date +%s > $OUT/t0
CUTEATTN_TEST_HANG_SECONDS=90 timeout 200 python3 -m pytest tests/test_gpu_bwd_sm90.py -k "persistent" -q -n 15 -rf --tb=line -p no:cacheprovider > $OUT/tests.log 2>&1; echo "rc $?" >> $OUT/tests.log; tail -4 $OUT/tests.log; date +%s >> $OUT/t0
timeout 150 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128,64 --seqlens 1k,16k --causal 0,1 --rounds 3 --variants default= persist=persistent:True 2>&1 | grep -v -i "warn\|exe_args" > $OUT/sweep.log; grep "^bwd" $OUT/sweep.log; date +%s >> $OUT/t0
# main's default backward against this tree's (the refactor moved a few integer instructions), in one process each
rm -rf /tmp/main_pkg && cp -r cuteattn /tmp/main_pkg && rm -rf cuteattn && cp -r _trees/main/cuteattn . && timeout 80 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128,64 --seqlens 1k,16k --causal 0,1 --rounds 3 --variants default= 2>&1 | grep "^bwd" > $OUT/sweep_main.log; rm -rf cuteattn && cp -r /tmp/main_pkg cuteattn; cat $OUT/sweep_main.log; date +%s >> $OUT/t0
for tool in racecheck memcheck; do timeout 90 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_cases.py persistent > $OUT/san-$tool.log 2>&1; echo "$tool exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" $OUT/san-$tool.log | head -3; done; date +%s >> $OUT/t0
