# After s38a: the mods suite (score_mods' backward converts dQ in the kernel, mask_mods' through the
# postprocess), then compute-sanitizer memcheck and racecheck over scripts/sanitize_cases.py. About 480 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 200 python3 -m pytest tests/test_gpu_mods_sm90.py -q -n 8 -rf 2>&1 | tail -8 | tee $OUT/mods_tests.log
for tool in memcheck racecheck; do
  timeout 130 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 \
    scripts/sanitize_cases.py > "$OUT/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool: exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$OUT/sanitizer-$tool.log" | head -3
done
