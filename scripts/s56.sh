# Sessions 39-40 (notes-39, -40), for a session with a GPU: FwdConfig.exp2_fma_share. First bring it back with
# `git revert --no-edit 4e47776`, carry [".gpu"]. Its GPU tests (the forward's
# config variants with it), then the forward at hdim 64, 1k/4k/16k, causal and not, sharing 0, 1 and 2 of every 8
# exp2 with the FMA pipes, and hdim 128 at 16k, FA4 in the same run. About 300 s, at most 480.
tests_s=${1:-120} sweep_s=${2:-240}; set --
source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout "$tests_s" python3 -m pytest tests/test_gpu_fwd_sm90.py -q -n 8 -p no:cacheprovider \
  -k "config_variants and exp2" > $OUT/exp2_tests.log 2>&1
tail -3 $OUT/exp2_tests.log
timeout "$sweep_s" python3 benchmarks/sweep_sm90.py --direction fwd --hdims 64 --seqlens 1k,4k,16k --causal 0,1 \
  --rounds 3 --warmup-ms 500 --variants default= fma1=exp2_fma_share:1 fma2=exp2_fma_share:2 2>&1 \
  | tee $OUT/exp2_sweep.log | grep -E "^\|"
timeout 120 python3 benchmarks/sweep_sm90.py --direction fwd --hdims 128 --seqlens 16k --causal 0 --rounds 3 \
  --warmup-ms 500 --variants default= fma1=exp2_fma_share:1 2>&1 | tee $OUT/exp2_sweep128.log | grep -E "^\|"
