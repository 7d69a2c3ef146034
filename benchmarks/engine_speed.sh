#!/usr/bin/env bash
# Idle-machine speed of the engine's new paths (run it with nothing else on the cores):
# bc-lstm on mosi-bclstm for 10 epochs in 1 and in 2 processes (--devices 2), and one epoch of
# text-finetune on iemocap6-text at 2 threads. Writes benchmarks/results/speed_*.json (results.json of
# each run; seconds_per_epoch is what the README quotes) and prints s/epoch.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
RESULTS=${RESULTS:-benchmarks/results}
WORK=$(mktemp -d)
common=(--quiet --seeds 1 --epochs 10 --set train.patience=100 --dataset mosi-bclstm --model bc-lstm)
mmaffect --threads 1 train "${common[@]}" --output "$WORK/bclstm_1p"
mmaffect train --devices 2 "${common[@]}" --output "$WORK/bclstm_2p"
mmaffect --threads 2 train --quiet --seeds 1 --epochs 1 --dataset iemocap6-text --model text-finetune \
  --output "$WORK/finetune"
cp "$WORK/bclstm_1p/results.json" "$RESULTS/speed_bc-lstm_1p.json"
cp "$WORK/bclstm_2p/results.json" "$RESULTS/speed_bc-lstm_2p.json"
cp "$WORK/finetune/results.json" "$RESULTS/speed_text-finetune_iemocap6-text.json"
for name in speed_bc-lstm_1p speed_bc-lstm_2p speed_text-finetune_iemocap6-text; do
  python -c "import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], round(r['seconds_per_epoch'], 3), 's/epoch')" \
    "$RESULTS/$name.json" "$name"
done
rm -rf "$WORK"
