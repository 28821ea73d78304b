#!/usr/bin/env bash
# Debian packages the studio uses when present: tcmalloc for CPU training workers (faster than the
# tuned glibc malloc they run without it; docs/benchmarks.md), for the browser tests (--browser),
# Chromium with CJK and emoji fonts, and to build llama-cpp-python (--compiler, the extra gguf-check)
# a C++ compiler and cmake. Installs only what is missing; without apt it says so and goes on.
set -euo pipefail
wanted=()
(ldconfig -p 2>/dev/null || true) | grep -q libtcmalloc_minimal || wanted+=(libtcmalloc-minimal4)
if [ "${1:-}" = "--browser" ]; then
    command -v chromium >/dev/null || wanted+=(chromium)
    fc-list 2>/dev/null | grep -qi "wenquanyi\|wqy" || wanted+=(fonts-wqy-microhei)
    fc-list 2>/dev/null | grep -qi "noto color emoji" || wanted+=(fonts-noto-color-emoji)
fi
if [ "${1:-}" = "--compiler" ]; then
    command -v c++ >/dev/null || wanted+=(g++)
    command -v cmake >/dev/null || wanted+=(cmake)
fi
[ ${#wanted[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "note: install ${wanted[*]} with your package manager (the studio runs without them, using more memory)." >&2
    exit 0
fi
sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
echo "Installing ${wanted[*]} (Debian packages)..."
$sudo_cmd apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${wanted[@]}" >/dev/null
