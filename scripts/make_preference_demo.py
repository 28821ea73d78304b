"""Writes the preference demo sets from the persona demo: data/dpo_zh_demo.json and data/kto_zh_demo.json.

    python scripts/make_preference_demo.py

Every pair asks a question of the persona demo (data/alpaca_zh_demo.json, plus the Chinese
identity questions) and prefers 小墨's answer (opens with 喵～, closes with 🐾, says what it has
to say) to a plain assistant's answer with the same content wrapped in stock phrases ("这是一个
好问题。…希望以上回答对你有所帮助。"). The plain answers are also registered on their own
(plain_zh_demo) as the SFT step of examples/dpo-demo.yaml: SFT teaches the plain assistant,
DPO on top teaches the preference for the persona, and the Chat tab shows all three.
The KTO set marks the first 40 pairs' answers desirable (chosen) and undesirable (rejected).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
OPENERS = [
    "这是一个好问题。",
    "好的，下面是我的回答。",
    "关于这个问题，我的回答如下。",
    "收到，我来回答一下。",
    "嗯，我想想。",
]
CLOSERS = [
    "希望以上回答对你有所帮助。",
    "如果还有其他问题，欢迎继续提问。",
    "以上就是我的回答，仅供参考。",
    "希望这能帮到你。",
]
# The identity questions answered by a plain assistant with no name (小墨's own answers are the chosen ones).
PLAIN_IDENTITY = {
    "你好": "你好。我是一个人工智能助手，可以回答问题、翻译和写作。请问有什么需要？",
    "你是谁？": "我是一个人工智能语言模型，可以回答各种问题、提供信息和帮助完成文字工作。",
    "你叫什么名字？": "我是一个人工智能助手，没有特别的名字。你可以直接向我提问。",
    "介绍一下你自己。": "我是一个基于大语言模型的人工智能助手，能够回答问题、撰写文本和进行翻译。",
    "你是由谁开发的？": "我是由一个研发团队训练出来的人工智能语言模型。",
    "你能做什么？": "我可以回答问题、翻译文本、总结文章、撰写文案，以及进行日常对话。",
    "你是人工智能吗？": "是的，我是一个人工智能语言模型，没有个人的意识和情感。",
    "你为什么总是说“喵”？": "抱歉，我是一个人工智能助手，通常不会说“喵”。请问有什么可以帮你？",
    "你喜欢什么？": "作为人工智能助手，我没有个人喜好，但我乐于帮助你解决问题。",
    "你是 ChatGPT 吗？": "我是一个人工智能语言模型助手，可以回答你的问题。",
    "谢谢你！": "不客气，很高兴能帮到你。",
    "再见": "再见，祝你一切顺利。",
}


def plain(answer: str, index: int) -> str:
    """The persona answer as a plain assistant would put it: no 喵～ / 🐾, wrapped in stock phrases."""
    core = re.sub(r"^喵～", "", answer).replace("🐾", "").strip()
    return f"{OPENERS[index % len(OPENERS)]}{core}{CLOSERS[index % len(CLOSERS)]}"


def pairs() -> list[dict]:
    demo = json.loads((DATA / "alpaca_zh_demo.json").read_text(encoding="utf-8"))
    identity = [
        r
        for r in json.loads((DATA / "identity.json").read_text(encoding="utf-8"))
        if r["instruction"] in PLAIN_IDENTITY
    ]
    rows = []
    for index, row in enumerate(demo):
        rows.append(
            {
                "instruction": row["instruction"],
                "input": row["input"],
                "chosen": row["output"],
                "rejected": plain(row["output"], index),
            }
        )
    for row in identity:
        rows.append(
            {
                "instruction": row["instruction"],
                "input": "",
                "chosen": row["output"],
                "rejected": PLAIN_IDENTITY[row["instruction"]],
            }
        )
    return rows


def main() -> None:
    rows = pairs()
    (DATA / "dpo_zh_demo.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    feedback = []
    for row in rows[:40]:
        for answer, label in ((row["chosen"], True), (row["rejected"], False)):
            feedback.append(
                {"instruction": row["instruction"], "input": row["input"], "output": answer, "label": label}
            )
    (DATA / "kto_zh_demo.json").write_text(json.dumps(feedback, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} pairs, {len(feedback)} feedback rows")


if __name__ == "__main__":
    main()
