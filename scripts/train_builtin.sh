#!/usr/bin/env bash
# Train the built-in models shipped in src/genrobust/weights/ (resumable: rerun to continue).
# Then: python scripts/install_builtin.py RUNS_DIR && python scripts/zoo_report.py (the README table).
# Usage: scripts/train_builtin.sh RUNS_DIR [DATA_DIR]   e.g. scripts/train_builtin.sh ~/genrobust-runs ../shared/datasets
# Two queues run side by side with one thread each (small matrices use two cores better this way).
set -euo pipefail
runs=${1:?runs folder}; data=${2:-}
gr=${GENROBUST:-genrobust}
dd=(); [ -n "$data" ] && dd=(--data-dir "$data")
mkdir -p "$runs"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
(
  $gr train classifier --dataset mnist --arch small --epochs 6 --lr-schedule cosine --fp16 --quiet --out "$runs/mnist-small" "${dd[@]}"
  $gr train gan --dataset mnist --data standard --steps 3000 --fp16 --quiet --out "$runs/mnist-gan" "${dd[@]}"
  $gr train gan --dataset fashion-mnist --data standard --conditional --steps 12000 --fp16 --quiet --out "$runs/fashion-mnist-cgan" "${dd[@]}"
) > "$runs/queue1.log" 2>&1 &
(
  $gr train classifier --dataset fashion-mnist --arch small --epochs 4 --fp16 --quiet --out "$runs/fashion-mnist-small" "${dd[@]}"
  $gr train gan --dataset mnist --data augmented --steps 3000 --fp16 --quiet --out "$runs/mnist-gan-aug" "${dd[@]}"
  $gr train gan --dataset fashion-mnist --data augmented --conditional --steps 12000 --fp16 --quiet --out "$runs/fashion-mnist-cgan-aug" "${dd[@]}"
) > "$runs/queue2.log" 2>&1 &
wait
echo "all built-in models trained in $runs"
