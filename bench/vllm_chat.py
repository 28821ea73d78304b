"""Chat through chat.engine vllm against chat.engine hf: the same greedy answers, base and two adapters in turn.

    python bench/vllm_chat.py --model qwen1.5-1.8b-arch --model-cache /tmp/qwen-chat  # a GPU (gpu_session.sh vllm)
    python bench/vllm_chat.py --model tiny                                           # CPU: HF's side, then the refusal

The model is Qwen1.5-1.8B's architecture with random bf16 weights (bench/throughput_sides.py's shapes) and the tiny
model's tokenizer, its vocabulary cut to that tokenizer's 2,000 tokens so that every id an answer holds decodes; or
the tiny model itself. Two LoRA adapters with random non-zero weights (rank 8, every linear layer) are made beside it.
Through `Studio`, the page's front door, the base and each adapter in turn answer the same prompts greedily, all at
once, first on the HF engine, then on vLLM (loading there unloads the HF engine's model). Printed as JSON, per
adapter: the share of answers that are identical, the share of tokens equal before the first difference, and each
engine's tokens/s with the ratio vllm/hf. Random weights answer gibberish, but both engines compute the same
weights: what differs is the kernels' rounding (bf16) and, on the HF engine, left padding. Numbers are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = [
    "你是谁？",
    "用一句话介绍一下你自己。",
    "Write a haiku about autumn.",
    "如何学习一门新的编程语言？",
    "List three fruits.",
    "请解释什么是机器学习。",
    "What is 12 times 7?",
    "给我讲一个简短的故事。",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen1.5-1.8b-arch", help="qwen1.5-1.8b-arch, tiny, or a model folder")
    parser.add_argument("--model-cache", help="where the built model is kept (default: a temporary folder)")
    parser.add_argument("--quant", choices=["none", "4bit"], default="none", help="quantization.method of both sides")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--gpu-share", type=float, default=0.6, help="chat.gpu_memory_utilization for vLLM")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()

    import torch

    from studio.api import Studio
    from studio.chat.vllm_options import check_vllm
    from studio.errors import StudioError

    work = Path(tempfile.mkdtemp(prefix="vllm-chat-"))
    model = _model(args.model, Path(args.model_cache) if args.model_cache else work / "model")
    adapters = {name: _adapter(model, work / name, seed) for seed, name in enumerate(("first", "second"), start=1)}
    studio, report = Studio(work / "runs"), {"model": str(model), "quant": args.quant, "prompts": len(PROMPTS)}
    answers = {}
    for engine in ("hf", "vllm"):
        try:
            if engine == "hf" and torch.cuda.is_available():
                check_vllm()  # a GPU without vllm: said before the HF side spends the lease (a CPU runs that side)
            answers[engine] = _answers(studio, engine, model, adapters, args)
        except StudioError as error:  # vLLM refused here: no CUDA GPU, or no vllm package
            report["vllm"] = f"refused: {error}"
            return _print(report, args.json, 2)
    report["vllm_version"] = _version("vllm")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    report["adapters"] = {
        name: _compared(answers["hf"][name], answers["vllm"][name], tokenizer) for name in answers["hf"]
    }
    return _print(report, args.json, 0)


def _model(name: str, folder: Path) -> Path:
    """The model folder: the tiny model, Qwen1.5-1.8B's shapes (built once into `folder`), or a folder given."""
    from studio.dev.tiny_models import build_tiny_model, build_tokenizer

    if name == "tiny":
        return folder if (folder / "config.json").is_file() else build_tiny_model(folder)
    if name != "qwen1.5-1.8b-arch":
        return Path(name)
    if not (folder / "config.json").is_file():
        import torch
        from throughput_sides import QWEN15_18B  # bench/ is on the path of a script run from it
        from transformers import AutoModelForCausalLM, Qwen2Config

        tokenizer = build_tokenizer()
        config = Qwen2Config(**{**QWEN15_18B, "vocab_size": len(tokenizer)}, torch_dtype="bfloat16")
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def _adapter(model: Path, folder: Path, seed: int, scale: float = 0.02) -> Path:
    """A LoRA adapter of rank 8 on every linear layer with random B (peft starts it at zero: no change at all)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # the shapes are all an adapter needs
        base = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model), dtype=torch.bfloat16)
    peft_model = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, scale)
    peft_model.save_pretrained(folder)
    return folder


def _answers(studio, engine: str, model: Path, adapters: dict[str, Path], args) -> dict[str, dict]:
    """Each of base and adapters answering every prompt at once on `engine`: texts, tokens and seconds."""
    from studio.config import ChatConfig, GenerationConfig, ModelConfig, QuantizationConfig

    chat = ChatConfig(engine=engine, gpu_memory_utilization=args.gpu_share, max_model_len=2048)
    loaded = studio.load_model(ModelConfig(name_or_path=str(model)), QuantizationConfig(method=args.quant), chat=chat)
    print(loaded, file=sys.stderr)
    for name, folder in adapters.items():
        studio.load_adapter(str(folder), name)
    generation = GenerationConfig(temperature=0, repetition_penalty=1.0, max_new_tokens=args.max_new_tokens)
    _final(studio, PROMPTS[:2], None, generation)  # warm-up: CUDA graphs, kernels' first calls
    results = {}
    for name in (None, *adapters):
        started = time.perf_counter()
        final = _final(studio, PROMPTS, name, generation)
        seconds = time.perf_counter() - started
        tokens = sum(answer.tokens for answer in final)
        results[name or "base"] = {"texts": [answer.text for answer in final], "tokens": tokens, "seconds": seconds}
        print(f"[{engine}] {name or 'base'}: {tokens} tokens in {seconds:.2f} s", file=sys.stderr)
    studio.unload_model()
    return results


def _final(studio, prompts: list[str], adapter: str | None, generation) -> list:
    conversations = [[{"role": "user", "content": prompt}] for prompt in prompts]
    *_, final = studio.stream(conversations, [adapter] * len(prompts), generation)
    return final


def _compared(hf: dict, vllm: dict, tokenizer) -> dict:
    """Identical answers, tokens equal before the first difference (re-encoded), and tokens/s of each engine."""
    equal = same = total = 0
    for left, right in zip(hf["texts"], vllm["texts"]):
        a, b = tokenizer.encode(left, add_special_tokens=False), tokenizer.encode(right, add_special_tokens=False)
        prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        equal, same, total = equal + (left == right), same + prefix, total + max(len(a), len(b), 1)
    hf_rate, vllm_rate = hf["tokens"] / hf["seconds"], vllm["tokens"] / vllm["seconds"]
    return {
        "identical_answers": equal / len(hf["texts"]),
        "tokens_before_first_difference": same / total,
        "hf_tokens_per_s": round(hf_rate, 1),
        "vllm_tokens_per_s": round(vllm_rate, 1),
        "vllm_over_hf": round(vllm_rate / hf_rate, 2),
        "first_answers": {"hf": hf["texts"][0][:120], "vllm": vllm["texts"][0][:120]},
    }


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _print(report: dict, path: str | None, code: int) -> int:
    text = json.dumps(report, ensure_ascii=False, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n", encoding="utf-8")
    return code


if __name__ == "__main__":  # vLLM's engine core may start in a process of its own, which imports this module again
    sys.exit(main())
