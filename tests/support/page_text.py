"""What a page shows a reader, as text: for the tests that look for English left on a page in 中文."""

import re
import time

VISIBLE_TEXT = """(skip) => {
  const hidden = (el) => { const s = getComputedStyle(el); return s.display === 'none' || s.visibility === 'hidden'; };
  const out = [];
  const walk = (node) => {
    if (node.nodeType === Node.ELEMENT_NODE) {
      if (hidden(node) || skip.some(sel => node.matches(sel))) return;
      if (node.tagName === 'INPUT' || node.tagName === 'TEXTAREA') {
        if (node.placeholder) out.push(node.placeholder);
        return;  // a value is the user's (or a config value), not the page's text
      }
      node.childNodes.forEach(walk);
    } else if (node.nodeType === Node.TEXT_NODE && node.textContent.trim()) {
      out.push(node.textContent.trim());
    }
  };
  walk(document.body);
  document.querySelectorAll('.js-plotly-plot text').forEach(t => out.push(t.textContent));
  return out;
}"""

# data, model output and machine text, shown as they are
SKIP = [
    "#qs-log",
    "#qs-preview-table",
    "#qs-eval-samples",
    "#qs-watched",
    "#qs-compare-watched",
    "#qs-chat-base .message-row",
    "#qs-chat-adapter-answers .message-row",
    "#qs-chat-tools textarea",  # the tools box's example: function schemas, JSON, are code
    "code",
    "pre",
    ".cm-editor",
    "#qs-eval-metrics tbody",
    ".modebar",
]
TERMS = {
    # training stages, losses and option values (the config's own words), and the distributed engine's
    "sft",
    "dpo",
    "kto",
    "ppo",
    "grpo",
    "sequence",
    "exact",
    "numeric",
    # Evaluate's task metrics and judge (the config's option values), the judge prompt's {question} field, and
    # benchmarks as lm-evaluation-harness names them
    "accuracy",
    "choice",
    "file",
    "regex",
    "model",
    "judge",
    "endpoint",
    "judge-endpoint",
    "openai_api_key",
    "http",  # a URL's scheme, e.g. the judge endpoint's example
    "question",
    "lm-evaluation-harness",
    "mmlu",
    "cmmlu",
    "ceval-valid",
    # a reward file's function, as the user writes it: reward(prompt, answer, reference) -> float, in Python
    "reward",
    "prompt",
    "answer",
    "reference",
    "float",
    "python",
    "allow-remote-code",
    "sigmoid",
    "hinge",
    "ipo",
    "orpo",
    "simpo",
    "beta",
    "gamma",
    "lambda",
    "initial",
    "ddp",
    "fsdp",
    "torchrun",
    "nnodes",
    "rendezvous",
    "modelfile",
    "k-quant",
    "llama-quantize",
    "llama-cpp-python",  # the package the GGUF check in llama.cpp needs (Export's note)
    "vllm",  # chat.engine's value and the package of that name
    "loading",  # Gradio's own placeholder while a component is redrawn (seen on a loaded machine)
    "qlora",
    "lora",
    "dora",
    "rslora",
    "adamw",
    "sdpa",
    "liger",
    "triton",
    "rmsnorm",
    "swiglu",
    "rope",
    "cuda",
    "gpu",
    "cpu",
    "bitsandbytes",
    "qwen",
    "hugging",
    "face",
    "llama",
    "factory",
    "safetensors",
    "transformers",
    "torch",
    "compile",
    "json",
    "yaml",
    "jsonl",
    "csv",
    "parquet",
    "zip",  # an uploaded archive of a data file and its pictures
    "token",
    "tokens",
    "studio",
    "auto",
    "none",
    "on",
    "off",
    "bf16",
    "fp16",
    "fp32",
    "cosine",
    "linear",
    "constant",
    "eager",
    "chatml",
    "mistral",
    "gemma",
    "deepseek",
    "alpaca",
    "embedded",
    "instruct",
    "chat",
    "eval",
    "loss",
    "rouge",
    "rouge-l",
    "bleu",
    "perplexity",
    "nvidia",
    "smi",
    "resident",
    "rss",
    "top",
    "dropout",
    "alpha",
    "rank",
    "checkpoint",
    "cutoff",
    "len",
    "sharegpt",
    "identity",
    "demo",
    "browser",
    "softcapping",
    "warmup",
    "nf4",
    "fp4",
    "mib",
    "gib",
    "tok",
    "gguf",
    "ollama",
    "base",
    "adapter",
    "you",
    "are",
    "helpful",
    "assistant",
    "dataset",
    "info",
    "data",
    "qwen1",
    "qwen2",
    "max",
    "steps",
    "num",
    "epochs",
    "true",
    "false",
    "english",
    "top-k",
    "top-p",
    "logits",
    "liger-kernel",
    "all",
    "sqrt",
    "hub",
    "txt",
    # finetuning methods, adapter starts and optimizers as peft, LLaMA-Factory and their packages name them, their
    # option values (freeze's module names, GaLore's projection sides, BAdam's switch orders, RoPE scalings,
    # schedulers), and the install command a missing optional package names
    "full",
    "freeze",
    "oft",
    "peft",
    "default",
    "pissa",
    "olora",
    "loftq",
    "mlp",
    "norm",
    "adam",
    "adafactor",
    "galore",
    "apollo",
    "badam",
    "epsilon",
    "left",
    "right",
    "std",
    "svd",
    "random",
    "layer",
    "ratio",
    "ascending",
    "descending",
    "fixed",
    "dynamic",
    "yarn",
    "ceil",
    "greedy",
    "polynomial",
    "modelscope",
    "pip",
    "install",
    "qlora-studio",
    # experiment trackers as their packages name them (logging.report_to), their modes, and the command that
    # uploads an offline run
    "tensorboard",
    "mlflow",
    "wandb",
    "swanlab",
    "trackio",
    "offline",
    "online",
    "sync",
    # peft's combination types (add_weighted_adapter), the HTTP client people test an endpoint with, and the
    # config value data.packing names
    "cat",
    "ties",
    "curl",
    "packing",
}


def _is_name(token: str) -> bool:
    """Files, models, datasets, runs and acronyms: digits, _ . / inside, or two capitals (LoRA, SwiGLU, AMX)."""
    return bool(re.search(r"[\d_./]", token)) or sum(c.isupper() for c in token) >= 2


def english_words(texts: list[str]) -> set[str]:
    found = set()
    for text in texts:
        for token in re.findall(r"\w[\w./-]*", text, flags=re.ASCII):
            token = token.strip(".-")
            if len(token) >= 3 and not _is_name(token) and token.lower() not in TERMS:
                found.add(f"{token}  <-  {text[:80]}")
    return found


def english_left(page, allowed=lambda line: False, timeout_s: float = 30.0) -> set[str]:
    """English left on the page once it has settled, but the lines `allowed` keeps: read again (every half second,
    for up to `timeout_s`) while some shows, since a language switch redraws tables and charts one event at a time
    and a loaded machine may take seconds for the last; what still shows at the end is returned."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = {line for line in english_words(page.evaluate(VISIBLE_TEXT, SKIP)) if not allowed(line)}
        if not left or time.monotonic() > deadline:
            return left
        page.wait_for_timeout(500)
