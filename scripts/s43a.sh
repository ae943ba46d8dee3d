# The key-split backward's paths that this session's shared code touches (the scores' orientation in
# probabilities and score_grads, write_dkv, TailSum with head_dim_v), hdim 64 and 128, in three processes. ~200 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
T=tests/test_gpu_bwd_sm90.py
timeout 280 python3 -m pytest -q $T -k "split_tail or (window and 128)" > $OUT/tests-a.log 2>&1 &
timeout 280 python3 -m pytest -q $T -k "test_backward and (64 or 128) and not test_backward_of" > $OUT/tests-b.log 2>&1 &
timeout 280 python3 -m pytest -q tests/test_gpu_mods_sm90.py -k "backward" > $OUT/tests-c.log 2>&1 &
wait
for f in $OUT/tests-*.log; do tail -n 1 $f; done
