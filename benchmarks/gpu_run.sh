#!/usr/bin/env bash
# The GPU acceptance run on a bare GPU machine (no network): install the carried wheels, unpack the
# carried corpus and BLiMP files where benchmarks/gpu_prepare.py prepared them, then run every phase
# of benchmarks/gpu_run.py, which writes its results to $OUT as it goes.
#   device call: carry [".travel"], command "bash benchmarks/gpu_run.sh", timeout_s 600
set -u
cd "$(dirname "$0")/.."
mkdir -p "${OUT:=gpu-run-out}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .travel/wheels/*.whl \
  && export PYTHONPATH=/tmp/site
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -d .travel/corpus ] || tar -C .travel -xJf .travel/corpus.tar.xz
[ -d .travel/runs ] || tar -C .travel -xJf .travel/runs.tar.xz
[ -d .travel/blimp ] || tar -C .travel -xJf .travel/blimp.tar.xz
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 benchmarks/gpu_run.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_run.log"
