#!/usr/bin/env bash
# Issue 23's first "done when": from a fresh venv, `pip install .` (not editable, no extras, no --no-deps
# step), then `mmaffect analyze CLIP`, one line of Python and `mmaffect serve` work with no training, no
# cache and no network. Prints each step's wall seconds and output; exits non-zero when any step fails
# or the served result differs from the CLI's.
#
#     bash benchmarks/fresh_install.sh [CLIP]     # default: an IEMOCAP clip from $MMAFFECT_DATA
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${MMAFFECT_DATA:-$ROOT/../shared/data}
CLIP=$(realpath "${1:-$DATA/iemocap_clips/Ses01M_script02_2_F040.mp4}")
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
SERVER=
export OMP_WAIT_POLICY=PASSIVE MMAFFECT_CACHE=$WORK/cache HF_HUB_OFFLINE=1
step() { local t0=$SECONDS; echo "== $1"; shift; "$@"; echo "   ($((SECONDS - t0)) s)"; }

step "python3 -m venv + pip install $ROOT" bash -c "python3 -m venv '$WORK/venv' && '$WORK/venv/bin/pip' install -q '$ROOT'"
. "$WORK/venv/bin/activate"
cd "$WORK"
python - <<'EOF'
import importlib.util, mmaffect, pathlib
print("   mediapipe installed:", importlib.util.find_spec("mediapipe") is not None)
print("   shipped:", sorted(p.name for p in (pathlib.Path(mmaffect.__file__).parent / "pretrained/files").iterdir()))
EOF
step "mmaffect models --pretrained" mmaffect models --pretrained
step "mmaffect pretrained verify analysis" mmaffect pretrained verify analysis
step "mmaffect analyze (first run of this install)" \
  /usr/bin/time -f "   %e s wall, %M KB peak RSS" mmaffect --threads 2 analyze "$CLIP" --json cli.json
step "mmaffect analyze (second run)" \
  /usr/bin/time -f "   %e s wall, %M KB peak RSS" mmaffect --threads 2 analyze "$CLIP" --json cli2.json
step "python -c 'mmaffect.load(...).predict(...)'" python -c "
import mmaffect
p = mmaffect.load('pretrained:analysis')
print('  ', p)
print('  ', p.predict(text='I am so happy to see you again', media='$CLIP'))
print('  ', mmaffect.load('pretrained:text-iemocap6').predict(text='I am so happy to see you again'))"

PORT=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
mmaffect --threads 2 serve --port "$PORT" > serve.log 2>&1 &
SERVER=$!
serve_job() {
  until curl -sf "http://127.0.0.1:$PORT/api/config" > /dev/null; do
    kill -0 $SERVER || { cat serve.log; return 1; }; sleep 0.5
  done
  local id; id=$(curl -sf -F "file=@$CLIP" "http://127.0.0.1:$PORT/api/jobs" | python -c "import json, sys; print(json.load(sys.stdin)['id'])")
  until curl -sf "http://127.0.0.1:$PORT/api/jobs/$id" > job.json && python -c "
import json, sys; sys.exit(json.load(open('job.json'))['status'] not in ('done', 'error'))"; do sleep 0.5; done
  python - <<'EOF'
import json
job, cli = json.load(open("job.json")), json.load(open("cli.json"))
assert job["status"] == "done", job
keys = ("start", "end", "text", "label", "probabilities", "contributions")
same = [{k: s.get(k) for k in keys} for s in job["result"]["segments"]] == [{k: s.get(k) for k in keys} for s in cli["segments"]]
print("   served:", [(s["label"], round(max(s["probabilities"].values()), 3)) for s in job["result"]["segments"]],
      "identical to the CLI's:", same)
assert same, "the served result differs from the CLI's"
EOF
}
step "mmaffect serve + POST /api/jobs + GET /api/jobs/ID" serve_job
python - <<'EOF'
import json
for s in json.load(open("cli.json"))["segments"]:
    print(f"   {s['start']:.1f}-{s['end']:.1f} s {s['label']} {max(s['probabilities'].values()):.2f} {s['text'][:60]!r}")
EOF
