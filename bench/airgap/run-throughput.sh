#!/usr/bin/env bash
# On a GPU host with PyTorch (CUDA) but no package index: install the wheels that
# fetch-wheels.sh brought in $WHEELS (default .whl/) into a private folder ($SITE), then time
# the example GAN and CNN jobs on the CPU and on CUDA through modelkiln api + one worker per
# device (python -m bench.job_throughput). The table goes to stdout and to $OUT/throughput.txt
# ($OUT defaults to /tmp). Arguments are passed on to the bench, e.g. --cpu-threads 4.
#
#   bash bench/airgap/run-throughput.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
SITE=${SITE:-/tmp/modelkiln-site}
WHEELS=${WHEELS:-.whl}
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$WHEELS"/*.whl
# The repository root is on the path too: the bench starts `python -m app.cli` from here.
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")'
$PY -m bench.job_throughput "$@" | tee "${OUT:-/tmp}/throughput.txt"
