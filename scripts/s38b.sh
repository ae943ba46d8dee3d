# After s38a, on the same tree: the backward's GPU tests (dQ converted in the kernel, and by the postprocess in
# the convert_dq=False variants), then the mods suite (score_mods convert in the kernel, mask_mods through the
# postprocess). About 520 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
test -f cuteattn/sm90/dq_convert.py || { echo "restore dq_convert first: git revert e19e0b6"; exit 2; }
timeout 300 python3 -m pytest tests/test_gpu_bwd_sm90.py -q -n 8 -rf 2>&1 | tail -12 | tee $OUT/bwd_tests.log
timeout 200 python3 -m pytest tests/test_gpu_mods_sm90.py -q -n 8 -rf 2>&1 | tail -8 | tee $OUT/mods_tests.log
