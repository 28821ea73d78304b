"""Records to typed examples of the dataset's kind: chat conversations (SFT), preference pairs, KTO
feedback or pretraining text; skipped records are counted and the first few located."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from studio.data.formats import (
    Message,
    Skip,
    alpaca_prompt,
    chat_turns,
    check_alternation,
    text,
    tools_json,
    value_of,
    with_system,
)
from studio.data.pictures import conversation_pictures, has_pictures, read_pictures, refuse_answer_pictures
from studio.data.readers import Records
from studio.data.registry import DataError, DataKind, DatasetSpec
from studio.locales import Message as Said
from studio.locales import say

LOCATED_SKIPS = 5  # skipped records named by place; the rest are only counted

Conversation = list[Message]  # an SFT example: system?, then question/answer turns ending with an answer


@dataclass
class PairwiseExample:
    """A prompt (ending with a question) and two answers, the chosen one preferred (DPO, reward models)."""

    prompt: list[Message]
    chosen: Message
    rejected: Message


@dataclass
class FeedbackExample:
    """A conversation whose last answer is marked desirable or not (KTO). `kl_answer`: the answer its KL example
    takes (another example's, `with_kl_answers`), fixed when the datasets are read, before any split."""

    messages: list[Message]
    desirable: bool
    kl_answer: Message | None = None


@dataclass
class TextDocument:
    """Plain text for pretraining."""

    text: str


Example = Conversation | PairwiseExample | FeedbackExample | TextDocument  # one of each kind of data


@dataclass
class SkippedRow:
    where: str  # "data.csv line 7" (a Message of the table, as reason is)
    reason: str


@dataclass
class DatasetExamples:
    """The usable examples of one dataset, of one kind, and the records skipped and why."""

    dataset: str
    kind: DataKind = "sft"
    examples: list = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_rows: list[SkippedRow] = field(default_factory=list)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if len(self.skipped_rows) < LOCATED_SKIPS:
            self.skipped_rows.append(SkippedRow(where, reason))

    def skipped_text(self, reason: str) -> str:
        """'with an empty output (a.json example 3, a.json example 9)': the reason and where its first rows are."""
        places = [row.where for row in self.skipped_rows if row.reason == reason]
        return say("data.skipped_at", reason=reason, places=listed(places)) if places else reason


def listed(items: Sequence[str]) -> str:
    """'a, b, c', each item (a Message) and the commas in the reader's language."""
    if not items:
        return ""
    joined = items[-1]
    for item in reversed(items[:-1]):
        joined = say("data.list_more", first=item, rest=joined)
    return joined


def to_examples(
    spec: DatasetSpec,
    records: Records | list[dict],
    system_prompt: str | None = None,
    media_dir: Path | None = None,
) -> DatasetExamples:
    """Every record of one dataset converted to its kind; a dataset of pictures (an `images` column) has them
    checked and carried by its examples' turns (studio.data.pictures: a conversation's, a pair's or feedback
    example's prompt), relative paths under `media_dir`, the dataset folder.

    Raises DataError when the columns are missing, no record is usable, or a record's pictures are wrong."""
    if isinstance(records, list):
        plain, records = records, Records()
        records.add(spec.file_name or spec.name, "example", plain)
    if problem := spec.unsupported():
        raise DataError.said(problem)
    _check_columns(spec, records.rows)
    build = _BUILDERS[spec.kind]
    pictures = has_pictures(spec)  # not pretraining text (DatasetSpec.unsupported refuses its pictures)
    result = DatasetExamples(spec.name, spec.kind)
    for index, record in enumerate(records.rows):
        try:
            example = build(spec, record, system_prompt)
        except Skip as skip:
            result.skip(skip.reason, records.where(index) if len(result.skipped_rows) < LOCATED_SKIPS else "")
            continue
        if pictures:
            example = _with_pictures(spec, record, example, media_dir, records.where(index))
        result.examples.append(example)
    if not result.examples:
        reasons = [say("data.skipped_count", count=n, reason=result.skipped_text(r)) for r, n in result.skipped.items()]
        raise DataError("data.no_usable_example", name=spec.name, reasons=listed(reasons))
    return result


def _with_pictures(spec: DatasetSpec, record: dict, example: Example, media_dir: Path | None, where: Said) -> Example:
    """The example with the record's pictures checked and carried by the turns that show them: any turn of a
    conversation; a pair's or feedback example's prompt turns, never its answers (studio.data.pictures)."""
    if isinstance(example, PairwiseExample):
        for answer in (example.chosen, example.rejected):
            refuse_answer_pictures(answer, where)
        return replace(example, prompt=read_pictures(spec, record, example.prompt, media_dir, where))
    if isinstance(example, FeedbackExample):
        refuse_answer_pictures(example.messages[-1], where)
        return replace(example, messages=read_pictures(spec, record, example.messages, media_dir, where))
    if isinstance(example, list):
        return read_pictures(spec, record, example, media_dir, where)
    return example  # pretraining text: its pictures are refused before any record is read


def turns_of(example: Example) -> list[Message]:
    """Every turn of an example, in order (a pair's prompt, then its chosen and rejected answers); none for text."""
    if isinstance(example, PairwiseExample):
        return [*example.prompt, example.chosen, example.rejected]
    if isinstance(example, FeedbackExample):
        return example.messages
    return example if isinstance(example, list) else []


def example_pictures(example: Example) -> list[str]:
    """The pictures an example of any kind shows, in the order of their placeholders."""
    return conversation_pictures(turns_of(example))


def map_turns(example: Example, change: Callable[[Message], Message]) -> Example:
    """The example with each of its turns replaced by `change(turn)`."""
    if isinstance(example, PairwiseExample):
        return PairwiseExample([change(t) for t in example.prompt], change(example.chosen), change(example.rejected))
    if isinstance(example, FeedbackExample):
        return FeedbackExample([change(t) for t in example.messages], example.desirable, example.kl_answer)
    return [change(turn) for turn in example] if isinstance(example, list) else example


def _required_columns(spec: DatasetSpec) -> list[str]:
    if spec.kind == "text":
        return []  # checked against spec.text_column below
    asks = ["prompt"] if spec.formatting == "alpaca" else ["messages"]
    answers = {"sft": ["response"], "pairwise": ["chosen", "rejected"], "kto": ["response", "kto_tag"]}[spec.kind]
    if spec.formatting != "alpaca":
        answers = [a for a in answers if a != "response"]
    return asks + answers


def _check_columns(spec: DatasetSpec, records: list[dict]) -> None:
    present = set().union(*(r.keys() for r in records[:100]))
    wanted = [spec.column(role) for role in _required_columns(spec)]
    wanted += [spec.text_column] if spec.kind == "text" else []
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(
            "data.columns_missing",
            name=spec.name,
            formatting=spec.formatting,
            kind=spec.kind,
            missing=", ".join(repr(m) for m in missing),
            present=sorted(present),
        )


def _prompt_and_answers(spec: DatasetSpec, record: dict, system_prompt: str | None, answers: int):
    """(system, tools, turns) where turns end with `answers` answer turns (0 for pairwise prompts)."""
    tools = tools_json(spec, record)
    if spec.formatting == "alpaca":
        system, turns = text(value_of(spec, record, "system")), alpaca_prompt(spec, record)
        if answers:
            response = text(value_of(spec, record, "response"))
            if not response.strip():
                raise Skip(say("data.skip_empty_output"))
            turns.append({"role": "assistant", "content": response})
    else:
        system, turns = chat_turns(spec, record)
        check_alternation(turns, ends_with_answer=bool(answers))
    system = system_prompt if system_prompt is not None else system
    return system, tools, turns


def _sft(spec: DatasetSpec, record: dict, system_prompt: str | None) -> Conversation:
    system, tools, turns = _prompt_and_answers(spec, record, system_prompt, answers=1)
    return with_system(turns, system, tools)


def _feedback(spec: DatasetSpec, record: dict, system_prompt: str | None) -> FeedbackExample:
    tag = value_of(spec, record, "kto_tag")
    if isinstance(tag, str) and tag.strip().lower() in ("true", "false"):
        tag = tag.strip().lower() == "true"  # CSV brings booleans as text
    if not isinstance(tag, bool):
        raise Skip(say("data.skip_kto_tag"))
    return FeedbackExample(_sft(spec, record, system_prompt), tag)


def _pairwise(spec: DatasetSpec, record: dict, system_prompt: str | None) -> PairwiseExample:
    system, tools, turns = _prompt_and_answers(spec, record, system_prompt, answers=0)
    chosen, rejected = (_answer(spec, value_of(spec, record, side)) for side in ("chosen", "rejected"))
    return PairwiseExample(with_system(turns, system, tools), chosen, rejected)


def _answer(spec: DatasetSpec, value: Any) -> Message:
    """A chosen/rejected answer: text in alpaca data, a message object in sharegpt/openai data."""
    if spec.formatting == "alpaca":
        if not isinstance(value, str) or not value.strip():
            raise Skip(say("data.skip_empty_answer"))
        return {"role": "assistant", "content": value}
    tags = spec.tags
    speaker = value.get(tags.role_tag) if isinstance(value, dict) else None
    roles = {tags.assistant_tag: "assistant", tags.function_tag: "function_call"}
    role = roles.get(speaker) if isinstance(speaker, str) else None
    if role is None:
        raise Skip(say("data.skip_answer_not_message", assistant=tags.assistant_tag))
    return {"role": role, "content": text(value.get(tags.content_tag))}


def _document(spec: DatasetSpec, record: dict, system_prompt: str | None) -> TextDocument:
    content = text(record.get(spec.text_column))
    if not content.strip():
        raise Skip(say("data.skip_empty_text"))
    return TextDocument(content)


_BUILDERS: dict[str, Callable[[DatasetSpec, dict, str | None], Example]] = {
    "sft": _sft,
    "pairwise": _pairwise,
    "kto": _feedback,
    "text": _document,
}


KL_BATCH = 1000  # LLaMA-Factory's preprocessing_batch_size: its KL pairs never cross one of its batches


def kl_answers(examples: list[FeedbackExample]) -> list[Message]:
    """The answer each example's KL example takes, as LLaMA-Factory (0.9.3 and later) pairs them: the previous
    example's answer, the first example of each batch of KL_BATCH taking its batch's last one."""
    answers: list[Message] = []
    for start in range(0, len(examples), KL_BATCH):
        batch = examples[start : start + KL_BATCH]
        answers += [batch[index - 1].messages[-1] for index in range(len(batch))]
    return answers


def with_kl_answers(examples: list[FeedbackExample]) -> None:
    """Fix each example's KL answer (`kl_answers`) over the datasets in the order they were read, before any split,
    so an example keeps its pair on either side of it and Evaluate pairs as training did (LLaMA-Factory 0.9.3 paired
    so too; 0.9.4 and later pair inside each split, after its shuffle, which no other tool can repeat; with nothing
    split off both are the same). An answer already fixed (a run's val.jsonl) stays."""
    for example, answer in zip(examples, kl_answers(examples), strict=True):
        if example.kl_answer is None:
            example.kl_answer = answer


def to_record(example: Example) -> dict:
    """An example as one JSON object (a run's val.jsonl), readable back with `from_record`."""
    if isinstance(example, PairwiseExample):
        return {"prompt": example.prompt, "chosen": example.chosen, "rejected": example.rejected}
    if isinstance(example, FeedbackExample):
        kl = {"kl_answer": example.kl_answer} if example.kl_answer is not None else {}
        return {"messages": example.messages, "desirable": example.desirable, **kl}
    if isinstance(example, TextDocument):
        return {"text": example.text}
    return {"messages": example}


def from_record(record: dict) -> Example:
    """The example `to_record` wrote: its keys say its kind."""
    if "chosen" in record:
        return PairwiseExample(record["prompt"], record["chosen"], record["rejected"])
    if "desirable" in record:
        return FeedbackExample(record["messages"], record["desirable"], record.get("kl_answer"))
    if "text" in record:
        return TextDocument(record["text"])
    return record["messages"]
