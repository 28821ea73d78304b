#!/usr/bin/env bash
# Set up (first time) and run the whole test suite; exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ui,test
# The browser tests drive Debian's Chromium (no browser download); CJK and emoji fonts render the page;
# CPU training workers preload tcmalloc when it is installed, so the tests run that path too.
bash scripts/system_packages.sh --browser
. .venv/bin/activate
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
# lint, format and types are checked first but do not hide test results: all are reported, any failing fails the run
lint=0
ruff check . && ruff format --check . && mypy || lint=$?
python -m pytest -ra "$@"
exit "$lint"
