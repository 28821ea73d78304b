"""On a CUDA machine: the fast paths compute what the plain ones do (printed, for a GPU session).

    python bench/cuda_checks.py

A tiny Qwen2 model (grouped-query attention), 4-bit NF4, bf16, demo examples. Compares the
per-token losses of: packed (varlen flash attention) vs padded (SDPA); 4-bit layers vs their
dequantised cache; with vs without Liger kernels. Also prints which attention path ran.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: a dry run of this script
sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]


def losses(model_path: str, examples, packing: bool, cache: bool, liger: bool) -> torch.Tensor:
    from studio.config import LoraConfig, ModelConfig, QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.training.token_losses import TokenLosses
    from studio.training.trainable import load_trainable_model

    training = TrainingConfig(packing=packing, liger_kernels=liger, gradient_checkpointing="off", compile="off")
    quantization = QuantizationConfig(method="4bit", cache_dequantized=cache)
    plan = resolve_plan(quantization, training, cuda=DEVICE == "cuda")
    torch.manual_seed(0)
    model = load_trainable_model(
        model=ModelConfig(name_or_path=model_path),
        quantization=quantization,
        training=training,
        lora=LoraConfig(),
        model_path=model_path,
        plan=plan,
        info=print,
    )
    for name, parameter in model.named_parameters():  # a non-zero adapter, so LoRA is exercised too
        if "lora_B" in name:
            torch.nn.init.normal_(parameter, std=0.02)
    token_losses = TokenLosses(model, device=DEVICE, packing=packing, token_budget=4096, batch_size=2)
    with torch.autocast(DEVICE, dtype=plan.compute_dtype, enabled=DEVICE == "cuda"):
        result = token_losses(examples)
    result.sum().backward()
    grad = torch.cat([p.grad.flatten() for n, p in model.named_parameters() if p.grad is not None])
    return result.float().cpu(), grad.float().cpu()


def main() -> None:
    import throughput_sides as sides

    from studio.config import ModelConfig
    from studio.dev.tiny_models import build_tiny_model
    from studio.modeling.loader import load_tokenizer
    from studio.training import varlen_attention

    gpu = torch.cuda.get_device_name() if DEVICE == "cuda" else "no GPU"
    print(f"torch {torch.__version__}, {gpu}, varlen flash: {varlen_attention._flash_varlen_function() is not None}")
    if varlen_attention._flash_varlen_function() is not None:
        print(f"varlen parameters: {sorted(varlen_attention._varlen_parameters())}")
    with tempfile.TemporaryDirectory() as scratch:
        path = str(build_tiny_model(Path(scratch) / "tiny", hidden=256, layers=4))
        examples = sides.demo_examples(load_tokenizer(ModelConfig(name_or_path=path), path), 16)
        reference, reference_grad = losses(path, examples, packing=False, cache=False, liger=False)
        for label, options in [
            ("packed (varlen flash)", dict(packing=True, cache=False, liger=False)),
            ("dequantised cache, padded", dict(packing=False, cache=True, liger=False)),
            ("liger, padded", dict(packing=False, cache=False, liger=True)),
            ("packed + cache + liger", dict(packing=True, cache=True, liger=True)),
        ]:
            other, grad = losses(path, examples, **options)
            loss_gap = (other - reference).abs().max().item()
            grad_gap = ((grad - reference_grad).norm() / reference_grad.norm()).item()
            print(
                f"{label:28} vs padded 4-bit: max |loss diff| {loss_gap:.2e} over {len(other)} tokens "
                f"(mean loss {other.mean():.4f} vs {reference.mean():.4f}); LoRA grad rel. diff {grad_gap:.2e}"
            )


if __name__ == "__main__":
    main()
