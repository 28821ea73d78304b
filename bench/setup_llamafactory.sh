#!/usr/bin/env bash
# LLaMA-Factory in its own venv, for the `llamafactory` side of bench/train_throughput.py.
# Its pins (transformers <= 5.6, peft <= 0.18.1, gradio 5) clash with the studio's, hence the
# separate venv. torch is the same 2.13.0 build as the studio's; torchvision and torchaudio,
# which llamafactory lists but does not import for text-only LoRA training, are left out
# (installing them would pull a multi-GB CUDA torch), so llamafactory itself goes in --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.bench-venvs/llamafactory
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.13.0 "transformers==5.6.0" "peft==0.18.1" "accelerate==1.11.0" "datasets==4.0.0" \
  "trl==0.24.0" "tyro<0.9.0" "torchdata==0.11.0" fire omegaconf einops sentencepiece tiktoken protobuf pyyaml \
  safetensors scipy pandas matplotlib "gradio<=5.50.0" fastapi sse-starlette uvicorn packaging pydantic numpy modelscope av
"$VENV/bin/pip" install -q --no-deps "llamafactory==0.9.5"
# LlamaBoard's BLEU/ROUGE (llamafactory's "metrics" extra), for bench/lf_metric_parity.py.
"$VENV/bin/pip" install -q "jieba==0.42.1" "rouge-chinese==1.0.3" "nltk==3.10.4"
"$VENV/bin/llamafactory-cli" version
# LLaMA-Factory 0.9.5's ppo stage is written against TRL's first PPOTrainer (trl <= 0.9.6; later TRLs replaced it),
# while its other stages want trl 0.24: that TRL goes to its own folder, put first on the path of the PPO side
# only (bench/rl_throughput.py), with LLaMA-Factory's own DISABLE_VERSION_CHECK=1.
"$VENV/bin/pip" install -q --no-deps "trl==0.9.6" --target .bench-venvs/trl-0.9.6
