#!/usr/bin/env bash
# Download, on a machine that reaches PyPI, the wheels that run-throughput.sh installs on an
# air-gapped GPU host: bench/airgap/requirements.txt and their dependencies, for CPython
# $PYVER (default 3.12) on x86-64 Linux, into $DEST (default .whl/ in the repository root).
#
#   bash bench/airgap/fetch-wheels.sh              # then copy .whl/ and the repo to the host
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVER=${PYVER:-3.12}
DEST=${DEST:-.whl}
PIP=${PIP:-python3 -m pip}
mkdir -p "$DEST"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
    manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
$PIP download -q --only-binary=:all: --implementation cp --python-version "$PYVER" \
    "${platforms[@]}" -d "$DEST" -r bench/airgap/requirements.txt
echo "$(ls "$DEST" | wc -l) wheels, $(du -sh "$DEST" | cut -f1), in $DEST"
