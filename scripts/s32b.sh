# The grid of issues 3 and 4 at 2 rounds a cell (bench.py --rounds: the providers in alternating order, the
# median), cuteattn, FA4 and cuDNN in one process, under the backward's masks of ae3cdb0; for the README's table in
# place of notes-26's single pass. Logs under $OUT; about 260 s.
set --; source .gpu/setup.sh; python3 -c "import cutlass" || { rm -rf /tmp/gpu-site; source .gpu/setup.sh; }
timeout 400 python3 -u benchmarks/bench.py --providers cuteattn,fa4,sdpa-cudnn --rounds 2 --out $OUT 2>&1 \
  | grep -v "Warning\|exe_args" > $OUT/bench.log; tail -27 $OUT/bench.log
