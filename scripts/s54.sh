# Sessions 39-40 (notes-40), after s57 if BwdConfig.dq_lag wins, on a checkout with it back
# (`git revert --no-edit 66a15dd`: its four sanitize cases), carry [".gpu"]: compute-sanitizer racecheck and memcheck
# on scripts/sanitize_cases.py, then the other backward tests (the mods' backward, deterministic with a mask_mod,
# the training loop). About 350 s.
tests_s=${1:-200}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
for tool in racecheck memcheck; do
  compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_cases.py \
    > "$OUT/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool: exit $?"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$OUT/sanitizer-$tool.log" | head -3
done
timeout "$tests_s" python3 -m pytest tests/test_gpu_mods_sm90.py tests/test_gpu_training.py -q -n 12 \
  -p no:cacheprovider -k "backward or training or deterministic" > $OUT/mods_bwd_tests.log 2>&1
tail -3 $OUT/mods_bwd_tests.log
