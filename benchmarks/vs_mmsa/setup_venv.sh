#!/usr/bin/env bash
# A separate venv with MMSA 2.2.1 and only what its TFN/LMF/MulT/MISA/Self-MM training imports.
# MMSA declares GPU-era dependencies (nvidia-ml-py3, pytorch_transformers, unpinned torch that
# resolves to a CUDA build); we install the package with --no-deps, then torch==2.13.0 (the CPU
# wheel here) and the libraries its modules import at load time. Usage: setup_venv.sh VENV_DIR
set -euo pipefail
venv=${1:?usage: setup_venv.sh VENV_DIR}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import MMSA" 2>/dev/null; then
  echo "MMSA venv ready: $venv"; exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
# torch: the exact pin (any other spec pulls a multi-GB CUDA build); the rest: what MMSA imports
# (data loader: numpy/pandas; metrics: scikit-learn; trainers: tqdm; run.py: easydict;
# utils/functions.py: pynvml from nvidia-ml-py3; models/subNets: transformers for the BERT classes)
"$venv/bin/pip" install -q torch==2.13.0 numpy pandas scikit-learn tqdm easydict nvidia-ml-py3 transformers
"$venv/bin/pip" install -q --no-deps MMSA==2.2.1
"$venv/bin/python" -c "import MMSA, torch; print('MMSA', MMSA.__file__, 'torch', torch.__version__)"
