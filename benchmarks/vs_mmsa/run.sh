#!/usr/bin/env bash
# mmaffect vs MMSA 2.2.1 on the same exported data (mosi-bclstm, our 10 validation videos), the same
# seeds and MMSA's selection rule, both on CPU with OMP_WAIT_POLICY=PASSIVE and one thread.
# Two jobs run at a time (JOBS, default 2: one per core), a job being one toolkit's seeds of one model,
# longest first, so every time in the table is one thread measured beside one other job.
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
run_job() {  # run_job TOOLKIT MODEL: one toolkit's seeds of one model, resumable
  if [ "$1" = mmsa ]; then
    "$work/mmsa-venv/bin/python" "$here/mmsa_cpu.py" --data "$data" --model "$2" --seeds "$seeds" \
      --work "$work/mmsa_runs" --output "$work/mmsa_$2.jsonl" 2> >(grep -v "^MMSA - " >&2)
  else
    python "$here/ours.py" --data "$data" --model "${2//_/-}" --seeds "$seeds" \
      --work "$work/ours_runs" --output "$work/ours_$2.jsonl"
  fi
}
export -f run_job
export here work data seeds
# longest first (MMSA's TFN and MulT take ~15 of the ~45 CPU minutes each), then anything not ranked
ranked="mmsa:tfn mmsa:mult mmsa:misa ours:mult ours:tfn ours:misa mmsa:self_mm ours:self_mm mmsa:lmf ours:lmf"
queue=()
for job in $ranked; do [[ " $models " == *" ${job#*:} "* ]] && queue+=("$job"); done
for model in $models; do [[ " $ranked " == *":$model "* ]] || queue+=("mmsa:$model" "ours:$model"); done
printf '%s\n' "${queue[@]}" | xargs -P "${JOBS:-2}" -I{} bash -c 'job={}; run_job "${job%%:*}" "${job#*:}"'
python "$here/table.py" --work "$work" --models "$models" --seeds "$seeds" --output "$repo/benchmarks/results/vs_mmsa.json"
