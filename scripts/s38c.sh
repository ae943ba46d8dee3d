# After s38b, on the same tree: compute-sanitizer memcheck and racecheck over scripts/sanitize_cases.py (every
# backward there but the mask_mod ones converts dQ in the kernel). About 280 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
test -f cuteattn/sm90/dq_convert.py || { echo "restore dq_convert first: git revert e19e0b6"; exit 2; }
for tool in memcheck racecheck; do
  timeout 130 compute-sanitizer --tool $tool --report-api-errors no --error-exitcode 9 python3 \
    scripts/sanitize_cases.py > "$OUT/sanitizer-$tool.log" 2>&1
  echo "compute-sanitizer $tool: exit $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|hazard" "$OUT/sanitizer-$tool.log" | head -3
done
