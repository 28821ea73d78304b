"""The demo benchmark's questions, read from the JSON-lines files beside this file (from any working directory)."""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def load_subject(subject: str, **_: object) -> datasets.DatasetDict:
    """A subject's dev split (few-shot examples) and test split (the scored questions)."""
    splits = {}
    for split in ("dev", "test"):
        lines = (HERE / f"{subject}_{split}.jsonl").read_text(encoding="utf-8").splitlines()
        splits[split] = datasets.Dataset.from_list([json.loads(line) for line in lines if line.strip()])
    return datasets.DatasetDict(splits)
