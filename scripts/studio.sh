#!/usr/bin/env bash
# Set up (first time) and serve QLoRA Studio on http://127.0.0.1:7860 with the embedded default
# model and the demo dataset. Extra arguments go to `qlora-studio webui` (e.g. --port 7861).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ui
. .venv/bin/activate
export GRADIO_ANALYTICS_ENABLED=False
echo "Open the URL below, press Preview dataset, then Start. Ctrl-C stops the server, not the runs."
exec qlora-studio webui "$@"
