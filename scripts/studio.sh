#!/usr/bin/env bash
# Set up (first time) and serve QLoRA Studio on http://127.0.0.1:7860 with the embedded default
# model and the demo dataset. Extra arguments go to `qlora-studio webui` (e.g. --port 7861).
# Once set up, it only checks that nothing changed and serves (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ui
bash scripts/system_packages.sh
. .venv/bin/activate
export GRADIO_ANALYTICS_ENABLED=False
echo "Once the page is served (its address follows), press Preview dataset, then Start."
exec qlora-studio webui "$@"
