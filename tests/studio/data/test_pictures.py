"""Datasets of pictures read as LLaMA-Factory reads them: the `images` column, `<image>` placeholders, paths relative to
the dataset folder; refused with file, line and picture when a count or a picture is wrong; confined to the served
workspace; and a text model refused by name."""

import json

import pytest
from PIL import Image

from studio.config import DataConfig, RunConfig
from studio.data.examples import from_record, to_record
from studio.data.pictures import conversation_pictures, thumbnail_uri
from studio.data.prepare import check_stage, check_vision, load_conversations, load_stage_examples
from studio.data.registry import DataError, load_registry
from studio.errors import PathNotAllowed
from studio.workspace import Workspace

SHAREGPT = {
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
}


def _turns(*contents):
    roles = ("user", "assistant") * len(contents)
    return [{"role": role, "content": content} for role, content in zip(roles, contents)]


def _picture(path, colour="red", size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """A dataset folder laid out as LLaMA-Factory's mllm_demo: data files beside a folder of pictures."""
    data = tmp_path / "data"
    _picture(data / "pics" / "1.png", "red")
    _picture(data / "pics" / "2.png", "blue")
    return data


def _register(folder, **entries):
    registry = {name: {"file_name": f"{name}.{ext}", **entry} for name, (ext, entry, _) in entries.items()}
    (folder / "dataset_info.json").write_text(json.dumps(registry), encoding="utf-8")
    for name, (ext, _, rows) in entries.items():
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) if ext == "jsonl" else json.dumps(rows)
        (folder / f"{name}.{ext}").write_text(text, encoding="utf-8")


def _load(folder, name):
    return load_conversations(DataConfig(dataset_dir=str(folder), datasets=[name]))[0]


def test_sharegpt_and_alpaca_pictures_ride_on_their_turns_in_placeholder_order(folder):
    rows = [
        {
            "messages": _turns("<image>谁？", "红。", "那这张<image>和<image>呢？", "蓝和红。"),
            "images": ["pics/1.png", "pics/2.png", "pics/1.png"],
        },
        {"messages": _turns("没有图", "好"), "images": []},
    ]
    alpaca = [{"instruction": "<image>什么颜色？", "output": "红色。", "images": "pics/1.png"}]  # one path, as a string
    _register(
        folder,
        chat=("json", SHAREGPT, rows),
        single=("json", {"columns": {"prompt": "instruction", "response": "output", "images": "images"}}, alpaca),
    )
    first, plain = _load(folder, "chat").examples
    red, blue = str((folder / "pics" / "1.png").resolve()), str((folder / "pics" / "2.png").resolve())
    assert first[0]["images"] == [red] and "images" not in first[1] and first[2]["images"] == [blue, red]
    assert conversation_pictures(first) == [red, blue, red] and conversation_pictures(plain) == []
    [single] = _load(folder, "single").examples
    assert single[0] == {"role": "user", "content": "<image>什么颜色？", "images": [red]}
    assert from_record(json.loads(json.dumps(to_record(first)))) == first  # val.jsonl keeps them


@pytest.mark.parametrize(
    "images, content, message",
    [
        (["pics/1.png", "pics/2.png"], "<image>谁？", r"chat.jsonl line 2: 1 <image> placeholders but 2 pictures"),
        ([], "<image>谁？", r"chat.jsonl line 2: 1 <image> placeholders but 0 pictures"),
        (["pics/9.png"], "<image>谁？", r"chat.jsonl line 2: picture 'pics/9.png' not found"),
        (["notes.png"], "<image>谁？", r"chat.jsonl line 2: picture 'notes.png' cannot be read as a picture"),
        ([{"bytes": "..."}], "<image>谁？", r"chat.jsonl line 2: the 'images' column must hold picture paths"),
    ],
)
def test_a_wrong_record_is_refused_naming_file_line_and_picture(folder, images, content, message):
    (folder / "notes.png").write_text("not a picture")
    good = {"messages": _turns("<image>谁？", "红。"), "images": ["pics/1.png"]}
    _register(folder, chat=("jsonl", SHAREGPT, [good, {"messages": _turns(content, "红。"), "images": images}]))
    with pytest.raises(DataError, match=message):
        _load(folder, "chat")


def test_a_picture_pil_would_render_with_another_program_is_refused_never_run(folder, monkeypatch):
    """A dataset may come from an upload: an EPS file (whatever its name), which PIL renders by running Ghostscript,
    is refused by name, neither checked, shown nor trained by running it; PIL's other readers stay open to it."""
    from PIL import EpsImagePlugin

    from studio.modeling.vision import open_scaled

    page = folder / "pics" / "page.png"
    page.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\nshowpage\n%%EOF\n")
    rendered: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: rendered.append(args))
    row = {"messages": _turns("<image>谁？", "红。"), "images": ["pics/page.png"]}
    _register(folder, chat=("jsonl", SHAREGPT, [row]))
    with pytest.raises(DataError, match=r"chat.jsonl line 1: picture 'pics/page.png' cannot be read as a picture"):
        _load(folder, "chat")
    for opening in (lambda: thumbnail_uri(page), lambda: open_scaled(page, 1024, 4096)):
        with pytest.raises(Image.UnidentifiedImageError):
            opening()
    assert rendered == []
    _picture(folder / "pics" / "old.bmp")  # a format beside the four uploads take
    _register(folder, chat=("jsonl", SHAREGPT, [dict(row, images=["pics/old.bmp"])]))
    assert _load(folder, "chat")


def test_pictures_train_with_sft_dpo_and_kto_only_and_a_text_model_is_refused_by_name(folder):
    _register(folder, chat=("json", SHAREGPT, [{"messages": _turns("<image>谁？", "红。"), "images": ["pics/1.png"]}]))
    spec = load_registry(folder)["chat"]
    with pytest.raises(
        DataError, match="'chat' has pictures, and stage grpo does not train on pictures: only sft, dpo"
    ):
        check_stage(spec, "grpo")
    loaded = load_stage_examples(DataConfig(dataset_dir=str(folder), datasets=["chat"]), "sft")
    check_vision(loaded, "Qwen/Qwen2-VL-2B-Instruct", vision=True)
    check_vision(loaded, "somewhere/unknown", vision=None)  # not known before the download: tokenisation refuses
    with pytest.raises(
        DataError, match="Dataset 'chat' has pictures; choose a vision-language model such as Qwen/Qwen2-VL-2B-Instruct"
    ):
        check_vision(loaded, "embedded:SmolLM2-135M-Instruct", vision=False)


def test_the_demo_set_with_the_embedded_text_model_is_refused_before_a_run():
    from studio.control.validation import check_data

    config = RunConfig().with_overrides({"data.datasets": "[shapes_zh_demo]"})
    with pytest.raises(DataError, match=r"'shapes_zh_demo' has pictures; choose a vision-language model .*SmolLM2"):
        check_data(config)


def test_the_preview_and_tokenisation_refuse_a_text_model_in_the_same_words(tiny_model_dir):
    from studio.config import ModelConfig
    from studio.data.preview import preview_datasets
    from studio.data.tokenize import encode_conversation
    from studio.locales import in_language
    from studio.modeling.loader import load_tokenizer

    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)), str(tiny_model_dir))
    data = DataConfig(datasets=["shapes_zh_demo"])
    [shown] = preview_datasets(data, rows=1, tokenizer=tokenizer, model_name="tiny-text").datasets
    problem = shown.stage_problem
    assert shown.tokens is None and problem is not None and problem.key == "data.pictures_need_vision_model"
    assert problem.startswith("Dataset 'shapes_zh_demo' has pictures; choose a vision-language model")
    assert in_language(problem, "zh").startswith("数据集 'shapes_zh_demo' 含有图片；") and "tiny-text" in problem
    [loaded] = load_conversations(data)
    with pytest.raises(DataError) as refused:  # no dataset named where one conversation is encoded
        encode_conversation(tokenizer, loaded.examples[0], cutoff_len=1000)
    assert refused.value.message.key == "data.pictures_need_vision_model"
    assert in_language(refused.value.message, "ru").startswith("В этих данных есть изображения;")


def test_every_picture_is_confined_to_the_workspace(tmp_path):
    root = tmp_path / "ws"
    data = root / "data"
    _picture(data / "pics" / "1.png")
    secret = _picture(tmp_path / "private" / "me.png")
    (data / "pics" / "link").symlink_to(secret.parent)
    attacks = {
        "climb": "../../etc/passwd",
        "absolute": str(secret),
        "linked": "pics/link/me.png",
        "home": "~/me.png",  # a file named so in the dataset folder: never the home folder
    }
    rows = {name: [{"messages": _turns("<image>谁？", "红。"), "images": [raw]}] for name, raw in attacks.items()}
    rows["inside"] = [{"messages": _turns("<image>谁？", "红。"), "images": ["pics/1.png"]}]
    _register(data, **{name: ("json", SHAREGPT, r) for name, r in rows.items()})
    workspace = Workspace.serve(root, "runs")
    workspace.check_dataset_files("data", ["inside", "home"])
    for name, raw in attacks.items():
        if name == "home":
            continue
        with pytest.raises(PathNotAllowed, match=f"picture '{raw}' of dataset '{name}' \\({name}.json example 1\\)"):
            workspace.check_dataset_files("data", [name])


def test_thumbnails_are_small_copies_as_data_uris(folder):
    import base64
    import io

    uri = thumbnail_uri(_picture(folder / "big.png", "green", (640, 320)))
    assert uri.startswith("data:image/png;base64,")
    small = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert small.size == (96, 48) and small.getpixel((10, 10))[:3] == (0, 128, 0)


def test_the_demo_set_is_what_its_script_makes(tmp_path):
    from studio.dev.vl_demo import FEEDBACK_NAME, NAME, PAIRS_NAME, generate
    from studio.paths import BUNDLED_DATA_DIR

    records = generate(tmp_path)
    assert json.loads((BUNDLED_DATA_DIR / f"{NAME}.json").read_text(encoding="utf-8")) == records
    for name in (NAME, PAIRS_NAME, FEEDBACK_NAME):  # the files byte for byte, the entries as registered
        assert (tmp_path / f"{name}.json").read_bytes() == (BUNDLED_DATA_DIR / f"{name}.json").read_bytes()
        assert load_registry(tmp_path)[name] == load_registry(BUNDLED_DATA_DIR)[name]
    made = sorted((tmp_path / NAME).iterdir())
    assert [p.name for p in made] == sorted(p.name for p in (BUNDLED_DATA_DIR / NAME).iterdir()) and len(made) == 40
    for path in made:
        assert Image.open(path).tobytes() == Image.open(BUNDLED_DATA_DIR / NAME / path.name).tobytes()
    [demo] = load_conversations(DataConfig(datasets=[NAME]))
    assert len(demo.examples) == 45 and all(e[-1]["content"].startswith(("图中", "第", "两张")) for e in demo.examples)
    assert sum(p.stat().st_size for p in made) < 64 * 1024  # the pictures ship in the repository
