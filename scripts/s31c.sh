# The hdim 128 backward at 80 query rows a step against the default 64, FA4 beside, 3 rounds in one process
# (notes-25: 80 rows are FA4's step and now compile without spills); then the GPU tests of the 80-row configs, so
# that a win can become the default on this call's evidence. Logs under $OUT.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 250 python3 -u benchmarks/sweep_sm90.py --direction bwd --hdims 128 --seqlens 1k,16k --causal 0 --rounds 3 --variants default= m80=tile_m:80 2>&1 | grep -v "Warning\|exe_args" > $OUT/sweep_bwd128.log; tail -6 $OUT/sweep_bwd128.log
timeout 150 python3 -m pytest -q -x tests/test_gpu_bwd_sm90.py -k "config_variants and tile_m80" 2>&1 | tail -3 | tee $OUT/tests_m80.log
