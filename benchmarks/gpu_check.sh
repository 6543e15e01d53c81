#!/usr/bin/env bash
# The prepared GPU check, for a machine with an NVIDIA GPU (run from the repository root):
# installs CuPy if it is missing, runs the GPU tests, then the training benchmark at S and M on
# CUDA against PyTorch when it is installed. Everything it prints is also saved under $OUT
# (or ./gpu-check) as JSON lines and a log.
set -uo pipefail
out="${OUT:-gpu-check}"
mkdir -p "$out"
log="$out/log.txt"
python3 -c "import cupy" 2>/dev/null || python3 -m pip install -q cupy-cuda12x 2>&1 | tail -2
python3 -m pip install -q -e ".[test,mpi]" 2>&1 | tail -2  # mpi: the NCCL and shared-GPU tests
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$log"
python3 -m pytest -m gpu -q -p no:warnings 2>&1 | tail -15 | tee -a "$log"
compare=""
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null && compare="--compare torch"
for config in S M; do
  python3 benchmarks/bench_train.py --config "$config" --device cuda --steps 20 --rounds 3 $compare \
    2>>"$log" | tee -a "$out/bench_train.jsonl"
done
