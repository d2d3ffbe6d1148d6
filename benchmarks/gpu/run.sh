#!/usr/bin/env bash
# Checks and measurements of avlearn's CUDA paths in one call; see benchmarks/gpu/README.md.
#   benchmarks/gpu/run.sh                      # on a CUDA machine: every stage, under 8 minutes
#   benchmarks/gpu/run.sh --only encoders      # one stage (peak is always measured first)
#   benchmarks/gpu/run.sh --dry-run            # every stage on the CPU with tiny shapes (~1-2 min)
# Runs from the source tree (no install): PYTHONPATH gets the checkout; PYTHON picks the interpreter.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" -m benchmarks.gpu.suite "$@"
