"""The tokenizer fix LLaMA-Factory makes when it applies a chat template, and the model's embeddings fitted to it.

LLaMA-Factory 0.9.5 (`Template.fix_special_tokens`), done here the same way and in the same order, so new tokens get
the same ids:
- replace_eos: the template's first stop word becomes the end-of-sequence token (added when the tokenizer lacks it);
- no end-of-sequence token at all: '<|endoftext|>' is added as one; no padding token: the end token pads;
- the other stop words are added as special tokens, so each encodes as one id (Llama 3's <|eom_id|>).
Ids added past the model's embedding crash its first forward pass: model.resize_vocab grows the embedding and output
layers (LLaMA-Factory's `resize_embedding_layer`), otherwise such a tokenizer is refused up front.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from studio.config import ModelConfig
from studio.modeling.sources import ModelLoadError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from studio.modeling.chat_formats import ChatFormat

FALLBACK_EOS = "<|endoftext|>"  # what LLaMA-Factory adds to a tokenizer without an end token
ROWS_MULTIPLE = 64  # resized embeddings are padded to a multiple of 64 rows, as LLaMA-Factory pads them


def fix_special_tokens(tokenizer: PreTrainedTokenizerBase, fmt: ChatFormat | None) -> list[str]:
    """Fix `tokenizer` for the named format installed on it (None: the tokenizer's own template, which has no stop
    words to add); returns a line per change, for the log."""
    lines, before = [], len(tokenizer)
    stop_words = list(fmt.stop_words) if fmt else []
    if fmt and fmt.replace_eos and stop_words:
        lines += _set_eos(tokenizer, stop_words.pop(0), f"template {fmt.name} ends answers with it")
    if tokenizer.eos_token_id is None:
        lines += _set_eos(tokenizer, FALLBACK_EOS, "the tokenizer had none")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if fmt and stop_words:
        missing = [word for word in stop_words if word not in tokenizer.get_vocab()]
        # extended, not replaced: the tokenizer's own extra special tokens stay special
        tokenizer.add_special_tokens({"extra_special_tokens": stop_words}, replace_extra_special_tokens=False)
        if missing:
            lines.append(f"Template {fmt.name}: stop words added as special tokens: {_ids(tokenizer, missing)}.")
    if len(tokenizer) > before:
        lines.append(
            f"Ids {before}-{len(tokenizer) - 1} are new to the model: their embedding rows were never trained "
            "(model.resize_vocab grows the embedding where it lacks them, and trains it with the output layer)."
        )
    return lines


def _set_eos(tokenizer: PreTrainedTokenizerBase, token: str, why: str) -> list[str]:
    if tokenizer.eos_token == token:
        return []
    before, known = tokenizer.eos_token, token in tokenizer.get_vocab()
    tokenizer.add_special_tokens({"eos_token": token})
    added = "" if known else " (added to the tokenizer)"
    return [f"End-of-sequence token {before} → {_ids(tokenizer, [token])}{added}: {why}."]


def _ids(tokenizer: PreTrainedTokenizerBase, tokens: list[str]) -> str:
    return ", ".join(f"{token} (id {tokenizer.convert_tokens_to_ids(token)})" for token in tokens)


def fit_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: ModelConfig) -> str | None:
    """Make every id of `tokenizer` fit `model`'s embedding, as model.resize_vocab says; an info line, or None when
    nothing needed saying. Refused when ids fall outside the embedding and resize_vocab is off."""
    rows, size = _weight(model.get_input_embeddings()).shape[0], len(tokenizer)
    if size <= rows:
        if not config.resize_vocab:
            return None
        return (
            f"model.resize_vocab: the embedding's {rows:,} rows already hold the tokenizer's {size:,} tokens, so it "
            "keeps its size; with LoRA the embedding and output layers still train in full."
        )
    outside = sorted((i, t) for t, i in tokenizer.get_added_vocab().items() if i >= rows)
    if not config.resize_vocab:
        raise ModelLoadError(
            "modeling.vocab_exceeds_embeddings",
            name=config.name_or_path,
            rows=rows,
            size=size,
            tokens=", ".join(t for _, t in outside) or "-",
        )
    grown = resize_embeddings(model, size)
    return (
        f"model.resize_vocab: embedding and output layers grown from {rows:,} to {grown:,} rows for the tokenizer's "
        f"{size:,} tokens; the new rows start at the mean of the old ones plus noise, and train in full with LoRA."
    )


def resize_embeddings(model: PreTrainedModel, size: int) -> int:
    """Grow the embedding (and an untied output layer) to `size` rows rounded up to a multiple of 64; each new row
    is the mean of the old rows plus Gaussian noise of std 1/sqrt(width), as LLaMA-Factory's noise_init. Returns
    the new row count."""
    embedding, output = model.get_input_embeddings(), model.get_output_embeddings()
    if output is not None and not isinstance(output, torch.nn.Linear):  # a quantised or custom output layer
        raise ModelLoadError("modeling.vocab_unresizable", kind=type(output).__name__)
    old = _weight(embedding).shape[0]
    tied = output is not None and output.weight is embedding.weight
    # mean_resizing off: the new rows are set below, not sampled from the old rows' covariance (slow, and not LF's)
    model.resize_token_embeddings(size, pad_to_multiple_of=ROWS_MULTIPLE, mean_resizing=False)
    layers = [model.get_input_embeddings()] + ([] if tied or output is None else [model.get_output_embeddings()])
    with torch.no_grad():
        for layer in layers:
            _noisy_mean_rows(_weight(layer), old)
    grown = _weight(model.get_input_embeddings()).shape[0]
    model.config.get_text_config().vocab_size = model.config.vocab_size = grown
    return grown


def _weight(layer: torch.nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)  # an embedding's or a linear layer's
    return weight


def _noisy_mean_rows(weight: torch.Tensor, old: int) -> None:
    width = weight.shape[1]
    mean = weight[:old].float().mean(dim=0, keepdim=True)
    noise = torch.randn(weight.shape[0] - old, width, device=weight.device) / math.sqrt(width)
    weight[old:] = (mean + noise).to(weight.dtype)


def extra_trainable_modules(config: ModelConfig, model: PreTrainedModel | None = None) -> list[str]:
    """Modules a LoRA run trains in full besides its adapters (peft's modules_to_save): with model.resize_vocab the
    embedding and output layers, as LLaMA-Factory adds them. Their names as peft matches them (the last part of the
    module path), read from `model` when given, else the usual 'embed_tokens' and 'lm_head'."""
    if not config.resize_vocab:
        return []
    if model is None:
        return ["embed_tokens", "lm_head"]
    wanted = [layer for layer in (model.get_input_embeddings(), model.get_output_embeddings()) if layer is not None]
    names = {id(module): name.rsplit(".", 1)[-1] for name, module in model.named_modules() if module in wanted}
    return list(dict.fromkeys(names[id(layer)] for layer in wanted if id(layer) in names))
