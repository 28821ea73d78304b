"""The tokenizer as GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`).

A GGUF holds no tokenizer.json: llama.cpp rebuilds the tokenizer from the token list, their types,
the BPE merges, the special ids and `tokenizer.ggml.pre`, the name of the rule that splits text
before BPE. That rule is read off the tokenizer the studio trained with and named as llama.cpp
names it; a split it does not know would tokenise differently there, so it is refused.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from gguf import TokenType

from studio.export.gguf_arch import GgufUnsupported
from studio.modeling.pre_tokenizers import LLAMA3_SPLIT, QWEN_SPLIT

# llama.cpp's names for the pre-tokenizers these patterns make
if TYPE_CHECKING:
    from gguf import GGUFWriter
    from transformers import PreTrainedTokenizerBase

_SPLITS = {QWEN_SPLIT: "qwen2", LLAMA3_SPLIT: "llama-bpe"}


def backend_json(tokenizer: PreTrainedTokenizerBase) -> dict:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise GgufUnsupported("export.gguf_slow_tokenizer")
    return json.loads(backend.to_str())


def pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (`spec` is its tokenizer.json)."""
    if spec.get("model", {}).get("type") != "BPE" or "ByteLevel" not in json.dumps(spec.get("pre_tokenizer")):
        raise GgufUnsupported("export.gguf_not_byte_level", model=spec.get("model", {}).get("type", "unknown"))
    pre = spec["pre_tokenizer"]
    parts = pre["pretokenizers"] if pre["type"] == "Sequence" else [pre]
    kinds = [part["type"] for part in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"  # llama.cpp's spelling (llama-vocab.cpp): "gpt2" names the tokenizer model, and loads nothing
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and parts[0]["pattern"].get("Regex") in _SPLITS:
        return _SPLITS[parts[0]["pattern"]["Regex"]]
    raise GgufUnsupported("export.gguf_unknown_pre_tokenizer", parts=" + ".join(kinds))


def write_vocab(
    writer: GGUFWriter, tokenizer: PreTrainedTokenizerBase, vocab_size: int, pre: str | None = None
) -> None:
    """Tokens (padded to the model's embedding rows), their types, merges, special ids and chat template."""
    spec = backend_json(tokenizer)
    pre = pre or pre_tokenizer_name(spec)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    if max(by_id) >= vocab_size:
        raise GgufUnsupported("export.gguf_ids_past_embeddings", largest=max(by_id), rows=vocab_size)
    added = {index: token.special for index, token in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:  # embedding rows no token uses (Qwen pads its vocabulary to a multiple of 128)
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
            continue
        tokens.append(by_id[index])
        types.append(
            TokenType.NORMAL if index not in added else TokenType.CONTROL if added[index] else TokenType.USER_DEFINED
        )
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in spec["model"]["merges"]])
    _write_special_ids(writer, tokenizer)
    if isinstance(tokenizer.chat_template, str):
        writer.add_chat_template(tokenizer.chat_template)


def _write_special_ids(writer: GGUFWriter, tokenizer: PreTrainedTokenizerBase) -> None:
    for value, add in (
        (tokenizer.bos_token_id, writer.add_bos_token_id),
        (tokenizer.eos_token_id, writer.add_eos_token_id),
        (tokenizer.unk_token_id, writer.add_unk_token_id),
        (tokenizer.pad_token_id, writer.add_pad_token_id),
    ):
        if value is not None:
            add(int(value))
    probe = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id])
    writer.add_add_eos_token(tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id])
