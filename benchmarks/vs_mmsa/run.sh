#!/usr/bin/env bash
# mmaffect vs MMSA 2.2.1 on the same exported data (mosi-bclstm, our 10 validation videos), the same
# seeds and MMSA's selection rule, both on CPU with OMP_WAIT_POLICY=PASSIVE and one thread.
#
#   bash benchmarks/vs_mmsa/run.sh [WORK_DIR]        (mmaffect venv active; default WORK_DIR /work/runs/vs_mmsa)
#
# Environment: MODELS (default "tfn lmf misa self_mm mult"), SEEDS (default 1111-1115, MMSA's own seeds
# and the committed results).
# Writes benchmarks/results/vs_mmsa.json and prints the table. Re-running resumes (finished seeds are
# kept in WORK_DIR/*.jsonl). The MMSA venv is WORK_DIR/mmsa-venv, never inside the repository.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${1:-/work/runs/vs_mmsa}
models=${MODELS:-tfn lmf misa self_mm mult}
seeds=${SEEDS:-1111,1112,1113,1114,1115}
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1
mkdir -p "$work"
bash "$here/setup_venv.sh" "$work/mmsa-venv"
data="$work/mosi_bclstm_mmsa.pkl"
[ -f "$data" ] || mmaffect export mmsa --dataset mosi-bclstm --output "$data"
for model in $models; do
  "$work/mmsa-venv/bin/python" "$here/mmsa_cpu.py" --data "$data" --model "$model" --seeds "$seeds" \
    --work "$work/mmsa_runs" --output "$work/mmsa_$model.jsonl" 2> >(grep -v "^MMSA - " >&2)
  python "$here/ours.py" --data "$data" --model "${model//_/-}" --seeds "$seeds" \
    --work "$work/ours_runs" --output "$work/ours_$model.jsonl"
done
python "$here/table.py" --work "$work" --models "$models" --seeds "$seeds" --output "$repo/benchmarks/results/vs_mmsa.json"
