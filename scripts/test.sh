#!/usr/bin/env bash
# Set up (first time) and run the whole test suite; exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
python -m pytest -ra "$@"
