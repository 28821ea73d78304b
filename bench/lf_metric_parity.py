"""BLEU-4 and ROUGE-1/2/L expected values from LlamaBoard's own metric code, for the metrics test.

    bash bench/setup_llamafactory.sh                      # once: .bench-venvs/llamafactory with its metric packages
    .venv/bin/python bench/lf_metric_parity.py            # prints the largest difference to ours
    .venv/bin/python bench/lf_metric_parity.py --write-fixture tests/studio/evaluation/fixtures/lf_metric_pairs.json

LLaMA-Factory's ComputeSimilarity (llamafactory.train.sft.metric) scores the pairs in its venv;
its tokenizer argument only decodes, so a stand-in maps ids to the written strings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LF_PYTHON = ROOT / ".bench-venvs" / "llamafactory" / "bin" / "python"
LONG_ZH = (
    "人工智能是计算机科学的一个分支，它企图了解智能的实质，并生产出一种新的能以人类智能相似的方式做出反应的智能机器。"
    * 4
)
LONG_EN = "The quick brown fox jumps over the lazy dog while the cat watches from the warm windowsill. " * 5
PAIRS = [  # (prediction, reference)
    ("我爱北京天安门", "我爱北京天安门"),
    ("今天天气很好", "今天天气不错"),
    ("abc", "xyz"),
    ("", "参考答案"),
    ("预测", ""),
    ("", ""),
    ("   ", "参考"),
    ("参考", " \n "),
    ("\n", "\n"),
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("Hello, world!", "hello world"),
    ("第一行\n第二行", "第一行\n第二行"),
    ("第一行\n第二行\n第三行", "第一行\n第三行"),
    ("line one\nline two", "line one line two"),
    ("喵～你好 🐾", "喵～你好 🐾"),
    ("喵～你好 🐾", "喵～再见 🐾"),
    ("🐾🐾🐾", "🐾"),
    ("😀 smile", "smile 😀"),
    ("数字 123 和 456", "数字 123 和 789"),
    ("a  b   c", "a b c"),
    ("\n\n答案以换行开头", "答案以换行开头"),
    ("答案。\n\n下一段。", "答案。下一段。"),
    ("问号？感叹号！句号。", "问号？句号。"),
    ("他说：“你好。”然后走了。", "他说：“你好。”"),
    ("Yes.", "No."),
    ("yes", "yes"),
    ("长" * 50, "长" * 49),
    (LONG_ZH, LONG_ZH[:-20]),
    (LONG_EN, LONG_EN[:200]),
    (LONG_ZH, LONG_EN),
    ("\t制表符\t", "制表符"),
    ("混合 English 和中文", "混合English和中文"),
    ("北京是中国的首都。", "中国的首都是北京。"),
    ("1. 第一步\n2. 第二步\n3. 第三步", "1. 第一步\n2. 第二步"),
    ("```python\nprint(1)\n```", "print(1)"),
    (
        "喵～因为阳光穿过大气时，蓝光被散射得最厉害。 🐾",
        "喵～因为阳光穿过大气时，波长较短的蓝光被空气分子散射得最厉害。 🐾",
    ),
    ("a", "a b"),
    ("a b", "a"),
    ("...", "。。。"),
    ("……省略号", "省略号……"),
    ("\r\nWindows 换行\r\n", "Windows 换行"),
    ("了", "了"),
    ("的的的的", "的"),
    ("I don't know.", "I do not know."),
    ("中文，英文, mixed.", "中文,英文，mixed。"),
]


class _Strings:
    """The tokenizer stand-in: id i decodes to the i-th string."""

    pad_token_id = 0

    def __init__(self, strings):
        self.strings = strings

    def batch_decode(self, rows, skip_special_tokens=True):
        return [self.strings[int(row[0])] for row in rows]


def lf_side(out_file: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from llamafactory_side import stand_in_for_media_libraries

    stand_in_for_media_libraries()
    import numpy as np
    from llamafactory.train.sft.metric import ComputeSimilarity
    from transformers import EvalPrediction

    scores = []
    for prediction, reference in PAIRS:
        metric = ComputeSimilarity(tokenizer=_Strings([prediction, reference]))
        ids = EvalPrediction(predictions=np.array([[0]]), label_ids=np.array([[1]]))
        scores.append(metric(ids))
    Path(out_file).write_text(json.dumps(scores), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-fixture")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([str(LF_PYTHON), __file__, "--lf-side", f"{tmp}/out.json"], check=True, env=env)
        theirs = json.loads((Path(tmp) / "out.json").read_text(encoding="utf-8"))
    from studio.evaluation.metrics import sample_scores

    worst = max(abs(sample_scores(p, r)[k] - s[k]) for (p, r), s in zip(PAIRS, theirs) for k in s)
    print(f"{len(PAIRS)} pairs; largest difference between the studio and LlamaBoard: {worst:.6f}")
    if args.write_fixture:
        rows = [{"prediction": p, "reference": r, "llamaboard": s} for (p, r), s in zip(PAIRS, theirs)]
        Path(args.write_fixture).write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--lf-side"]:
        lf_side(sys.argv[2])
    else:
        main()
