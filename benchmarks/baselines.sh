#!/usr/bin/env bash
# Reproduce the README's "Results (measured here)" tables: baselines on the real data, 3 seeds each
# (5 for text-mlp on the text corpora, the row beside the seed methods), 2 CPU threads, the modality
# ablation, the training-speed benchmark and the floors.
# Writes out/<dataset>/<model>/results.json (with checkpoints) and copies each results.json to
# $RESULTS (default benchmarks/results/, small JSON files, committed); then
# `python benchmarks/report.py` prints the tables. Finished runs in out/ are read back, not retrained.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS"
run() { mmaffect --threads 2 train --quiet --seeds "${SEEDS:-3}" "$@"; }
for model in tfn lf-dnn lmf ef-mlp text-mlp; do
  run --dataset mosi-bclstm --model "$model" --output "out/mosi-bclstm/$model"
  cp "out/mosi-bclstm/$model/results.json" "$RESULTS/mosi-bclstm_$model.json"
done
for dataset in iemocap6-text meld7-text meld3-text iemocap8-text; do
  SEEDS=5 run --dataset "$dataset" --model text-mlp --output "out/$dataset/text-mlp"
  cp "out/$dataset/text-mlp/results.json" "$RESULTS/${dataset}_text-mlp.json"
done
run --dataset iemocap6-text --model ef-lstm --output out/iemocap6-text/ef-lstm  # MiniLM token sequences
cp out/iemocap6-text/ef-lstm/results.json "$RESULTS/iemocap6-text_ef-lstm.json"
mmaffect --threads 2 ablate --quiet --seeds 3 --dataset mosi-bclstm --model tfn --output out/ablation/tfn
cp out/ablation/tfn/ablation.json "$RESULTS/mosi-bclstm_tfn_ablation.json"
for model in tfn lf-dnn lmf; do
  mmaffect benchmark train-speed --dataset mosi-bclstm --model "$model" --batch-sizes 64,512 \
    --thread-counts 1,2 --epochs 5 --output "$RESULTS/train-speed_mosi-bclstm_$model.json"
done
python benchmarks/floors.py --threads 1 --results "$RESULTS/floors.json"
