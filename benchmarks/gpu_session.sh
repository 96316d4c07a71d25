#!/usr/bin/env bash
# Everything issue 5 measures on a GPU, in one script, results under $OUT (or ./gpu_out).
#
# Here, before the call (the data does not travel with the repo; .data/ is git-ignored, ~42 MB):
#   mkdir -p .data && cp -r ../shared/data/MNIST ../shared/data/FashionMNIST .data/
# On the GPU machine, from the repo root, with .data carried, in two device calls (each well inside a call's
# 10 minutes; every part also has its own time limit, so a slow part cannot take the others' results with it):
#   bash benchmarks/gpu_session.sh tests speed optimizer
#   bash benchmarks/gpu_session.sh e2e speedrun
# (no argument: all five parts, one after the other).
# It prints the versions, runs tests/test_cuda.py (graph path == eager path on the GPU), the throughput table
# (source-style / dlspec / hand-tuned CUDA graph, with the targets), the optimizer step for-loop / foreach /
# fused (whether train.fused: auto should take fused on CUDA too), the end-to-end runs of the recipes, and
# specs/mnist_speedrun.yaml on 5 seeds (time to 99 %).  Nothing is installed: dlspec runs from the checkout
# with the machine's python3 (its image has torch, pyyaml, numpy, tqdm, pytest, Pillow and matplotlib; not
# jsonschema, which dlspec needs only to explain a spec it rejects).
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export DLSPEC_DATA=${DLSPEC_DATA:-$PWD/.data} PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
RUNS=${RUNS:-${TMPDIR:-/tmp}/dlspec-gpu-runs}  # run folders stay out of $OUT (only a few files come back)
PARTS=("$@")
[ "${#PARTS[@]}" -eq 0 ] && PARTS=(tests speed optimizer e2e speedrun)
for part in "${PARTS[@]}"; do
  case "$part" in
    tests|speed|optimizer|e2e|speedrun) ;;
    *) echo "gpu_session.sh: no part '$part' (tests, speed, optimizer, e2e, speedrun)"; exit 2 ;;
  esac
done

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import sys, torch; print('python', sys.version.split()[0], '· torch', torch.__version__, '· CUDA', torch.version.cuda, '· cuDNN', torch.backends.cudnn.version())"
} 2>&1 | tee "$OUT/versions.txt"

part_tests() {
  if ! $PY -c "import pytest" 2>/dev/null; then
    echo "GPU TESTS NOT RUN: no pytest for $PY on this machine (carry its wheels: /work/.library/device/README.md)"
    return 1
  fi
  timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_steps.py 2>&1 | tail -25
}
part_speed() {
  timeout 300 $PY benchmarks/train_speed.py --device cuda --workers 4 --budget-s 1 --repeats 5 --json "$OUT/speed.json"
}
part_optimizer() {  # does the fused optimizer step pay on CUDA too (train.fused: auto takes it on a CPU only)?
  timeout 120 $PY benchmarks/optimizer_step.py --device cuda
}
part_e2e() {
  timeout 360 $PY benchmarks/train_speed.py --end-to-end --specs lenet mnist_cnn simple_cnn lstm_rows mnist_speedrun \
    --json "$OUT/e2e.json"
}
part_speedrun() {
  for seed in 0 1 2 3 4; do
    timeout 60 $PY -m dlspec run specs/mnist_speedrun.yaml "train.seed=$seed" --out "$RUNS" --no-progress --quiet
  done
  $PY - "$RUNS" <<'PY'
import glob, json, statistics, sys
rows = [json.load(open(p)) for p in sorted(glob.glob(f"{sys.argv[1]}/MnistSpeedrun/*/summary.json"))]
for r in rows:
    print(f"acc {r['final']['test_accuracy']:.4f}  train {r['train_time_s']:.3f} s  wall {r['wall_time_s']:.2f} s  {r['path']}")
if rows:
    print(f"mean acc {statistics.mean(r['final']['test_accuracy'] for r in rows):.4f} · mean train "
          f"{statistics.mean(r['train_time_s'] for r in rows):.3f} s over {len(rows)} seeds")
PY
}

for part in "${PARTS[@]}"; do
  echo "== $part ($(date -u +%T))"
  t0=$SECONDS
  "part_$part" 2>&1 | tee "$OUT/$part.txt"
  echo "== $part: exit status ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$OUT/$part.txt"
done
