#!/usr/bin/env bash
# Everything issue 5 measures on a GPU, in one command (one device call), results under $OUT (or ./gpu_out).
#
# Here, before the call (the data does not travel with the repo; .data/ is git-ignored, ~42 MB):
#   mkdir -p .data && cp -r ../shared/data/MNIST ../shared/data/FashionMNIST .data/
# On the GPU machine, from the repo root, with .data carried:
#   bash benchmarks/gpu_session.sh
# It prints the versions, runs tests/test_cuda.py (graph path == eager path on the GPU), the throughput table
# (source-style / dlspec / hand-tuned CUDA graph, with the targets), the optimizer step for-loop / foreach /
# fused (whether train.fused: auto should take fused on CUDA too), the end-to-end runs of the recipes, and
# specs/mnist_speedrun.yaml on 5 seeds (time to 99 %).  Nothing is installed: the machine's python3 has torch,
# pyyaml, numpy and tqdm; dlspec runs from the checkout.
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export DLSPEC_DATA=${DLSPEC_DATA:-$PWD/.data} PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PYTHON:-python3}
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import sys, torch; print('python', sys.version.split()[0], '· torch', torch.__version__, '· CUDA', torch.version.cuda, '· cuDNN', torch.backends.cudnn.version())"
} 2>&1 | tee "$OUT/versions.txt"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_steps.py 2>&1 | tail -15 | tee "$OUT/tests.txt"
$PY benchmarks/train_speed.py --device cuda --workers 4 --budget-s 1 --repeats 5 --json "$OUT/speed.json" 2>&1 \
  | tee "$OUT/speed.txt"
$PY benchmarks/optimizer_step.py --device cuda 2>&1 | tee "$OUT/optimizer_step.txt"   # does fused pay on CUDA?
$PY benchmarks/train_speed.py --end-to-end --specs lenet mnist_cnn simple_cnn lstm_rows mnist_speedrun \
  --json "$OUT/e2e.json" 2>&1 | tee "$OUT/e2e.txt"
for seed in 0 1 2 3 4; do
  $PY -m dlspec run specs/mnist_speedrun.yaml "train.seed=$seed" --out "$OUT/runs" --no-progress --quiet
done
$PY - "$OUT" <<'PY' 2>&1 | tee "$OUT/speedrun.txt"
import glob, json, statistics, sys
rows = [json.load(open(p)) for p in sorted(glob.glob(f"{sys.argv[1]}/runs/MnistSpeedrun/*/summary.json"))]
for r in rows:
    print(f"acc {r['final']['test_accuracy']:.4f}  train {r['train_time_s']:.3f} s  wall {r['wall_time_s']:.2f} s  {r['path']}")
if rows:
    print(f"mean acc {statistics.mean(r['final']['test_accuracy'] for r in rows):.4f} · mean train "
          f"{statistics.mean(r['train_time_s'] for r in rows):.3f} s over {len(rows)} seeds")
PY
