#!/usr/bin/env bash
# Reproduce the README results table: baselines on the real data, 3 seeds each, 2 CPU threads.
# Writes out/<dataset>/<model>/results.json (with checkpoints) and copies each results.json and the
# speed benchmarks to benchmarks/results/ (small JSON files, committed).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
run() { mmaffect --threads 2 train --quiet --seeds 3 "$@"; }
for model in tfn lf-dnn lmf ef-mlp text-mlp; do
  run --dataset mosi-bclstm --model "$model" --output "out/mosi-bclstm/$model"
  cp "out/mosi-bclstm/$model/results.json" "benchmarks/results/mosi-bclstm_$model.json"
done
for dataset in iemocap6-text meld7-text meld3-text; do
  run --dataset "$dataset" --model text-mlp --output "out/$dataset/text-mlp"
  cp "out/$dataset/text-mlp/results.json" "benchmarks/results/${dataset}_text-mlp.json"
done
mmaffect --threads 2 ablate --quiet --seeds 3 --dataset mosi-bclstm --model tfn --output out/ablation/tfn
cp out/ablation/tfn/ablation.json benchmarks/results/mosi-bclstm_tfn_ablation.json
for model in tfn lf-dnn lmf; do
  mmaffect benchmark train-speed --dataset mosi-bclstm --model "$model" --batch-sizes 64,512 \
    --thread-counts 1,2 --epochs 5 --output "benchmarks/results/train-speed_mosi-bclstm_$model.json"
done
