#!/usr/bin/env bash
# The commands behind the figures in docs/capacity.md. Run on a quiet machine (no other jobs on
# the cores), from the repository root with the project's venv active; each prints the load
# before and after so the figures can be judged. About 15-20 minutes on 2 cores.
set -euo pipefail
say() { printf '\n### %s\n' "$*"; uptime; git rev-parse --short HEAD; date -Is; }
run() { echo "+ $*"; "$@"; }

say "1. the main job, defaults, capacity included (target: under 3 minutes)"
/usr/bin/time -v python -m pytest bench --no-history --report-dir reports/capacity-default 2>&1 \
  | grep -E "capacity|cameras|this host serves|Elapsed|Maximum resident|passed|failed" || true

say "2. serial's capacity against its offline throughput (N x fps <= F + 5%, (N+1) x fps > 0.8 F), small models"
run python -m pytest bench --model-size small --strategy serial --no-history --no-report --no-progress \
  | sed -n '/^offline:/,/^$/p;/capacity:/,/this host serves/p'

say "3. small models: the best strategy's cameras x fps against the best offline throughput"
run python -m pytest bench --model-size small --no-history --report-dir reports/capacity-small --no-progress \
  | sed -n '/^offline:/,/^$/p;/capacity:/,/this host serves/p'

say "4. dynamic_batch at 1 camera; batched (k=4) is left out of streaming with its reason: each frame waits for 3 later ones"
run python -m pytest bench --model-size small --strategy dynamic_batch --strategy batched --scenario streaming \
  --no-history --no-report --no-progress | sed -n '/streaming at/,/^$/p;/not streamed/p;/capacity:/,/this host serves/p'

say "5. aligned arrival, 8 cameras of small models: dynamic_batch against threads"
run python -m pytest bench --model-size small --strategy threads --strategy dynamic_batch --streams 8 \
  --stream-phase aligned --no-history --no-report --no-progress \
  | sed -n '/streaming at/,/^$/p;/capacity:/,/this host serves/p'

say "6. one strategy's capacity search on the default workload (target: at most 30 s)"
/usr/bin/time -f "%e s, peak RSS %M KB" python -m pytest bench --strategy threads --scenario streaming \
  --no-history --no-report --no-progress | grep -E "capacity|cameras|this host serves" || true

say "7. dynamic_batch's defaults: offline, max_batch 1/2/4/8/16, small models"
for batch in 1 2 4 8 16; do
  run python -m pytest bench --model-size small --strategy dynamic_batch --max-batch "$batch" --scenario offline \
    --no-history --no-report --no-progress | grep -E "^dynamic_batch" || true
done
