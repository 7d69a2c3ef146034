#!/usr/bin/env bash
# Engine results (issue 17): the packaged MiniLM fine-tuned end to end (text-finetune) on iemocap6-text
# and meld7-text, 5 seeds, and the context models on each seed's fine-tuned encoder (issue 20; the
# encoders' own heads are the README's text-finetune rows); the dialogue-batched bc-lstm on mosi-bclstm
# in one and in two processes (torchrun, gloo), 3 seeds each; then the ridge context floor
# (benchmarks/context_floor.py). text-finetune is the slow part (3 epochs x 5 seeds per corpus, MiniLM
# forward and backward on CPU); finished runs in out/ are read back, not retrained.
# Writes benchmarks/results/context_{iemocap6-text,meld7-text}_finetuned.json, mosi-bclstm_bc-lstm.json,
# mosi-bclstm_bc-lstm_2p.json and context_floor.json; `python benchmarks/report.py` prints the tables.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
RESULTS=${RESULTS:-benchmarks/results}
mkdir -p "$RESULTS"
for dataset in iemocap6-text meld7-text; do
  mmaffect --threads 1 train --quiet --seeds 5 --epochs 3 --dataset "$dataset" --model text-finetune \
    --output "out/$dataset/text-finetune"
  python benchmarks/context_models.py --dataset "$dataset" --seeds 0 1 2 3 4 --workdir "out/$dataset/context" \
    --encoder "out/$dataset/text-finetune/seed{seed}" --output "$RESULTS/context_${dataset}_finetuned.json"
done
mmaffect --threads 1 train --quiet --seeds 3 --dataset mosi-bclstm --model bc-lstm --output out/mosi-bclstm/bc-lstm
cp out/mosi-bclstm/bc-lstm/results.json "$RESULTS/mosi-bclstm_bc-lstm.json"
mmaffect train --quiet --seeds 3 --devices 2 --dataset mosi-bclstm --model bc-lstm --output out/mosi-bclstm/bc-lstm-2p
cp out/mosi-bclstm/bc-lstm-2p/results.json "$RESULTS/mosi-bclstm_bc-lstm_2p.json"
python benchmarks/context_floor.py
