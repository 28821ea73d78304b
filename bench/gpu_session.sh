#!/usr/bin/env bash
# One lease of a GPU machine (see /work/.library/device): the checks and measurements only a GPU
# can give, logs under $OUT. Wheels the machine lacks travel in .whl (bitsandbytes, pydantic, ...).
#   bash bench/gpu_session.sh main     # checks, ours vs baseline on the Qwen1.5-1.8B shape, a studio run
#   bash bench/gpu_session.sh levers   # one lever off at a time
#   bash bench/gpu_session.sh ab       # only the defaults vs the baseline, two rounds
#   bash bench/gpu_session.sh profile  # where a step of the defaults spends its time (bench/step_profile.py)
#   bash bench/gpu_session.sh devices  # data parallel: 1 GPU against all of them (torchrun, NCCL), 4-bit
#   bash bench/gpu_session.sh fsdp     # bf16 base: 1 GPU against all of them with ddp and with fsdp (2+ GPUs)
#   bash bench/gpu_session.sh vllm     # Chat through chat.engine vllm against hf: greedy agreement, tokens/s, 2 adapters
set -uo pipefail
MODE=${1:-main}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
ARCH=/tmp/qwen1.5-1.8b-arch
BENCH="python3 bench/train_throughput.py --device cuda --model qwen1.5-1.8b-arch --quant 4bit --model-cache $ARCH --json"

if [ "$MODE" = devices ] || [ "$MODE" = fsdp ]; then  # scaling over the GPUs, the studio's own runs (device_scaling.py)
    GPUS=$(nvidia-smi --list-gpus | wc -l)
    if [ "$MODE" = fsdp ] && [ "$GPUS" -lt 2 ]; then echo "fsdp needs 2 or more GPUs; this machine has $GPUS" | tee "$OUT/fsdp.txt"; exit 0; fi
    python3 -c "import sys; sys.path.insert(0, 'bench'); import throughput_sides as s; from pathlib import Path; s.build_qwen15_architecture(Path('$ARCH'))"
    python3 -c "from studio.dev.tiny_models import build_tokenizer; build_tokenizer().save_pretrained('$ARCH')"
    if [ "$MODE" = devices ]; then
        timeout 540 $BENCH --steps 12 --rounds 1 --devices "$GPUS" 2>&1 | grep -v "it/s]" | tee "$OUT/devices.txt"
    else  # fsdp shards a bf16 base (a 4-bit one is refused), so both sides train bf16
        timeout 540 ${BENCH/--quant 4bit/--quant none} --steps 12 --rounds 1 --devices "$GPUS" --strategies ddp,fsdp \
            2>&1 | grep -v "it/s]" | tee "$OUT/fsdp.txt"
    fi
elif [ "$MODE" = vllm ]; then  # bench/vllm_chat.py: Qwen1.5-1.8B's shapes, base and two LoRA adapters in turn
    # vllm travels as a wheel in .whl with those it needs (installed above; it brings its own CUDA torch), or is there
    python3 -c "import vllm; print('vllm', vllm.__version__)" 2>&1 | tail -1 | tee "$OUT/vllm.txt"
    timeout 150 python3 bench/vllm_chat.py --model tiny --json "$OUT/vllm-tiny.json" 2>&1 | grep -v "it/s]" | tee -a "$OUT/vllm.txt"
    timeout 390 python3 bench/vllm_chat.py --model qwen1.5-1.8b-arch --model-cache /tmp/qwen-chat --json "$OUT/vllm.json" \
        2>&1 | grep -v "it/s]" | tee -a "$OUT/vllm.txt"
elif [ "$MODE" = profile ]; then  # GPU busy share and the costliest kernels, after warm-up (and compilation)
    timeout 500 python3 bench/step_profile.py --device cuda --model qwen1.5-1.8b-arch --quant 4bit --model-cache $ARCH --rows 30 \
        2>&1 | grep -v "it/s]" | tee "$OUT/profile.txt"
elif [ "$MODE" = ab ]; then  # the defaults against the baseline, A B A B
    timeout 500 $BENCH --steps 16 --rounds 2 --sides baseline,ours 2>&1 | grep -v "it/s]" | tee "$OUT/ab.txt"
elif [ "$MODE" = main ]; then
    { nvidia-smi; python3 -c "import torch, transformers, peft, bitsandbytes, liger_kernel, importlib.metadata as m
print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__, 'liger', m.version('liger-kernel'))"; } 2>&1 | tee "$OUT/env.txt"
    timeout 150 python3 bench/cuda_checks.py 2>&1 | grep -v "Warning\|it/s]" | tee "$OUT/checks.txt"
    timeout 330 $BENCH --steps 24 --rounds 2 --sides baseline,ours,ours-no-gc,ours-cached 2>&1 | grep -v "it/s]" | tee "$OUT/bench.txt"
    # the studio itself on CUDA: CLI -> service -> worker subprocess, events with nvidia-smi readings
    python3 -c "from studio.dev.tiny_models import build_tokenizer; build_tokenizer().save_pretrained('$ARCH')"
    timeout 120 python3 -m studio.cli train examples/demo.yaml --model.name_or_path $ARCH --training.max_steps 40 \
        --training.logging_steps 5 --runs-dir /tmp/runs 2>&1 | tail -40 | tee "$OUT/studio.txt"
    cp /tmp/runs/*/events.jsonl "$OUT/events.jsonl"; cp /tmp/runs/*/worker.log "$OUT/worker.log" 2>/dev/null
    ls /tmp/runs/*/ >> "$OUT/studio.txt"
else
    # how long one kernel launch takes here, from Python: eager LoRA steps are bound by it
    python3 -c "
import time, torch
x = torch.zeros(16, device='cuda'); torch.cuda.synchronize()
for n in (1000, 20000):
    t = time.perf_counter()
    for _ in range(n): x.add_(1)
    torch.cuda.synchronize(); print(f'{(time.perf_counter() - t) / n * 1e6:.1f} us per launched add_ ({n} launches)')
" 2>&1 | tee "$OUT/launch.txt"
    timeout 540 $BENCH --steps 24 --rounds 1 --sides ours-cached-compile,ours-compile,ours-cached-no-gc-compile,ours-padded,ours-full-logits,ours-no-liger 2>&1 | grep -v "it/s]" | tee "$OUT/levers.txt"
fi
