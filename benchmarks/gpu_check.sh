#!/usr/bin/env bash
# Device check in one go on a GPU machine: the default search job and experiment=mmrec_lightgcn_baby with time per
# epoch and metrics (benchmarks/gpu_check.py; results in benchmarks/results/gpu_check_cuda.json). Extra arguments
# go to the script: `benchmarks/gpu_check.sh --quick --device cpu` is the short CPU smoke run. PYTHON=... picks
# the interpreter (default: python on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
"${PYTHON:-python}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), 'gpus', torch.cuda.device_count())"
gpus=$("${PYTHON:-python}" -c "import torch; print(torch.cuda.device_count())")
args=("$@")
if [[ " $* " != *" --quick "* && "$gpus" -gt 1 ]]; then args+=(--nproc "$gpus"); fi
exec "${PYTHON:-python}" benchmarks/gpu_check.py "${args[@]}"
