#!/usr/bin/env bash
# Create .venv and install divrec into it (editable). Usage: scripts/setup.sh [--dev]
#
# torch: on a machine without an NVIDIA GPU the CPU build torch==2.13.0 (+cpu) is installed first, from pip's
# configured sources where they hold it (a local wheel here), else from PyTorch's CPU index; so pip never pulls a
# multi-GB CUDA build. (macOS: PyPI's torch is the CPU build.)
# With a GPU (nvidia-smi works) or DIVREC_TORCH=cuda, pip's default torch build is used. DIVREC_TORCH=skip keeps
# whatever torch is already in the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

mode=${DIVREC_TORCH:-auto}
if [ "$mode" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then mode=cuda; else mode=cpu; fi
fi
if [ "$mode" = cpu ] && ! .venv/bin/python -c 'import torch' >/dev/null 2>&1; then
  if [ "$(uname -s)" = Darwin ]; then
    "${pip[@]}" torch==2.13.0
  else
    "${pip[@]}" "torch==2.13.0+cpu" 2>/dev/null \
      || "${pip[@]}" "torch==2.13.0+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi

target="."
[ "${1:-}" = "--dev" ] && target=".[dev]"
# requirements/constraints.txt pins the versions tested together (torch excluded: chosen above).
"${pip[@]}" -c requirements/constraints.txt -e "$target"
