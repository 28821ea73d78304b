#!/usr/bin/env bash
# Set up (first time) and run the whole test suite; exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh ui,test
has_tcmalloc="$( (ldconfig -p 2>/dev/null || true) | grep -c libtcmalloc_minimal || true)"
if ! command -v chromium >/dev/null || [ "$has_tcmalloc" = "0" ]; then
    # The browser tests drive Debian's Chromium (no browser download); CJK fonts render the Chinese UI;
    # CPU training workers preload tcmalloc when it is installed, so the tests run that path too.
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium fonts-wqy-microhei libtcmalloc-minimal4 >/dev/null
fi
. .venv/bin/activate
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
python -m pytest -ra "$@"
