#!/usr/bin/env bash
# MOSI with text vectors that did not see the corpus (issue 20): the bc-LSTM release's text CNN was trained
# on all 62 training videos, so its vectors are nearly separable on any validation carve-out and
# validation cannot choose anything. Here the text modality comes from the MOSI transcripts instead:
#   * the packaged MiniLM, frozen (--minilm-text);
#   * the packaged MiniLM fine-tuned end to end on the training videos (text-finetune, epoch chosen on the
#     10 validation videos), 5 seeds, as two classes (sentiment2:, bc-LSTM's task: acc = acc2_has0) and as
#     the score regression (mosi-bclstm: the field's full metric set);
# with the openSMILE audio vectors (a73, not learned), every context model beside its no-context variant
# (seeds 0-4; seed k reads encoder k), the ridge context floor on the same vectors, and two side rows:
# text alone, and with the release's 3D-CNN video vectors (trained on the training videos, like the text CNN).
# Finished runs in out/ are read back, not retrained. Writes benchmarks/results/context_*mosi-bclstm_{minilm,
# finetuned,finetuned_t,finetuned_tav}.json, context_floor_*.json and sentiment2_mosi-bclstm_text-finetune-window2.json;
# `python benchmarks/report.py` prints them.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
RESULTS=${RESULTS:-benchmarks/results}
OUT=${OUT:-out/mosi-text}
SEEDS="0 1 2 3 4"
ALL=bc-lstm,bc-lstm-nocontext,dialogue-rnn-bi,dialogue-rnn-causal,dialogue-rnn-nocontext,turn-transformer-bi,turn-transformer-causal,turn-transformer-nocontext
SIDE=bc-lstm,bc-lstm-nocontext,dialogue-rnn-bi,dialogue-rnn-nocontext
mkdir -p "$RESULTS" "$OUT"

python benchmarks/context_models.py --dataset sentiment2:mosi-bclstm --minilm-text --modalities t,a --seeds $SEEDS \
  --variants "$ALL" --workdir "$OUT/minilm" --output "$RESULTS/context_sentiment2_mosi-bclstm_minilm.json"
python benchmarks/context_floor.py --dataset sentiment2:mosi-bclstm --text-encoder minilm \
  --output "$RESULTS/context_floor_minilm.json"

# epochs: the engine's 3 for the two classes (seeds stop at epoch 1-2); the score regression chose the last of 3
# epochs in every seed, and 6 gave a lower validation loss in every seed (0.86-0.90 against 0.89-0.92)
for dataset_epochs in sentiment2:mosi-bclstm=3 mosi-bclstm=6; do
  dataset=${dataset_epochs%=*}
  stem=${dataset/:/_}
  mmaffect --threads 1 train --quiet --seeds 5 --epochs "${dataset_epochs#*=}" --dataset "$dataset" \
    --model text-finetune --output "$OUT/$stem/text-finetune"
  encoder="$OUT/$stem/text-finetune/seed{seed}"
  python benchmarks/context_models.py --dataset "$dataset" --encoder "$encoder" --modalities t,a --seeds $SEEDS \
    --variants "$ALL" --workdir "$OUT/$stem/ta" --output "$RESULTS/context_${stem}_finetuned.json"
  python benchmarks/context_floor.py --dataset "$dataset" --text-encoder "$encoder" --seeds $SEEDS \
    --output "$RESULTS/context_floor_${stem}_finetuned.json"
done
# the fine-tuned encoder reading the 2 previous utterances of its video too (causal): one video per batch, as the
# engine's default of 16 dialogues leaves 2 updates per epoch on 52 training videos
mmaffect --threads 1 train --quiet --seeds 5 --epochs 3 --dataset sentiment2:mosi-bclstm --model text-finetune \
  --set model_args.context_turns=2 --set train.batch_size=1 --output "$OUT/sentiment2_mosi-bclstm/text-finetune-window2"
cp "$OUT/sentiment2_mosi-bclstm/text-finetune-window2/results.json" \
  "$RESULTS/sentiment2_mosi-bclstm_text-finetune-window2.json"
for modalities in t t,a,v; do
  python benchmarks/context_models.py --dataset sentiment2:mosi-bclstm --modalities "$modalities" --seeds $SEEDS \
    --encoder "$OUT/sentiment2_mosi-bclstm/text-finetune/seed{seed}" --variants "$SIDE" \
    --workdir "$OUT/sentiment2_mosi-bclstm/${modalities//,/}" \
    --output "$RESULTS/context_sentiment2_mosi-bclstm_finetuned_${modalities//,/}.json"
done
