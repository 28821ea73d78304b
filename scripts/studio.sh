#!/usr/bin/env bash
# Set up (first time) and run QLoRA Studio on the embedded default model and the demo dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export GRADIO_ANALYTICS_ENABLED=False
qlora-studio train examples/demo.yaml "$@"
