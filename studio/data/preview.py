"""Dataset preview: first rows, counts and token-length statistics, before anything trains.

Token lengths are counted as the dataset's kind is trained: a conversation whole; a preference pair as its
prompt plus its longer answer (with prompt, chosen and rejected apart as well); a KTO answer with its prompt;
a pretraining document with its end-of-sequence token.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.config import DataConfig
from studio.data.examples import DatasetExamples, SkippedRow, to_examples
from studio.data.pictures import PICTURE_COLUMN, has_pictures, picture_path, record_pictures
from studio.data.readers import Records, read_records
from studio.data.registry import DataError, DatasetSpec, Hub, resolve_specs
from studio.data.tokenize import encode_conversation, picture_messages
from studio.locales import Message
from studio.paths import resolve_dataset_dir

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.data.picture_tokens import PictureEncoder


@dataclass
class TokenStats:
    count: int
    min: int
    mean: float
    median: float
    p95: int
    max: int
    truncated: int  # longer than cutoff_len
    lengths: list[int] = field(repr=False, default_factory=list)  # for histograms


@dataclass
class DatasetPreview:
    name: str
    file: str
    formatting: str
    num_rows: int
    num_usable: int
    skipped: dict[str, int]
    rows: list[dict]
    tokens: TokenStats | None = None  # when a tokenizer was given
    kind: str = "sft"  # sft, pairwise, kto or text: which training stage can use it
    skipped_rows: list[SkippedRow] = field(default_factory=list)  # the first few, with file and line
    parts: dict[str, TokenStats] = field(default_factory=dict)  # a pair's prompt, chosen and rejected apart
    stage_problem: Message | None = None  # why the chosen training stage cannot use it (the error Start would give)
    pictures: list[list[str]] = field(default_factory=list)  # each shown row's pictures (absolute paths), in order
    picture_column: str | None = None  # the rows' key holding those pictures' paths (the entry's columns.images)


@dataclass
class Preview:
    datasets: list[DatasetPreview]

    def to_text(self) -> str:
        lines = []
        for d in self.datasets:
            lines.append(
                f"== {d.name} ({d.formatting}, {d.kind} data, {d.file}): {d.num_usable} usable of {d.num_rows} rows"
            )
            for reason, count in d.skipped.items():
                lines.append(f"   skipped {count} {reason}")
            lines += [f"   skipped {row.where}: {row.reason}" for row in d.skipped_rows]
            if d.stage_problem:
                lines.append(f"   cannot be trained: {d.stage_problem}")
            if d.tokens:
                t = d.tokens
                lines.append(
                    f"   tokens: min {t.min}, median {t.median:.0f}, mean {t.mean:.0f}, p95 {t.p95}, max {t.max}; "
                    f"{t.truncated} longer than cutoff_len"
                )
                lines += [
                    f"   {name} tokens: median {p.median:.0f}, p95 {p.p95}, max {p.max}" for name, p in d.parts.items()
                ]
            lines += [f"   {json.dumps(row, ensure_ascii=False)[:300]}" for row in d.rows]
            shown = [Path(path).name for row in d.pictures for path in row]
            lines += [f"   pictures in these rows: {', '.join(shown)}"] if shown else []
        return "\n".join(lines)


@dataclass
class PreviewProgress:
    """How far a preview has come: stage is 'reading' or 'tokenizing' (the caller adds its own, e.g. 'tokenizer')."""

    stage: str
    dataset: str
    done: int
    total: int


def preview_datasets(
    config: DataConfig,
    rows: int = 5,
    tokenizer: PreTrainedTokenizerBase | None = None,
    progress: Callable[[PreviewProgress], None] = lambda report: None,
    stage: str | None = None,
    hub: Hub = "huggingface",
    pictures: PictureEncoder | None = None,
    model_name: str = "",
) -> Preview:
    """Raw first rows of each dataset, its kind and skipped rows, and the pictures of those rows; token statistics
    when a tokenizer is given, a picture counted as its image tokens by `pictures` (a vision-language model's
    encoder; a dataset of pictures with a text model `model_name` is said to need one); with `stage`, whether that
    training stage can use each dataset; `hub` (model.hub) for hub entries."""
    dataset_dir = resolve_dataset_dir(config.dataset_dir)
    previews = []
    for spec in resolve_specs(dataset_dir, config.datasets):
        progress(PreviewProgress("reading", spec.name, 0, 0))
        records = read_records(dataset_dir, spec, hub)
        loaded = to_examples(spec, records, config.system_prompt, media_dir=dataset_dir)
        preview = DatasetPreview(
            name=spec.name,
            file=spec.file_name or spec.hub_source(hub)[1],
            formatting=spec.formatting,
            num_rows=len(records),
            num_usable=len(loaded.examples),
            skipped=loaded.skipped,
            rows=records.rows[:rows],
            kind=loaded.kind,
            skipped_rows=loaded.skipped_rows,
            pictures=_row_pictures(dataset_dir, spec, records, rows),
            picture_column=spec.column(PICTURE_COLUMN),
        )
        if stage is not None:
            _check_stage(preview, spec, stage)
        if tokenizer is not None and loaded.examples and _readable(preview, loaded, tokenizer, model_name, pictures):
            report = lambda done, name=spec.name, total=len(loaded.examples): progress(
                PreviewProgress("tokenizing", name, done, total)
            )  # noqa: E731
            preview.tokens, preview.parts = _token_stats(tokenizer, loaded, config, report, pictures)
        previews.append(preview)
    return Preview(previews)


def _row_pictures(dataset_dir: Path, spec: DatasetSpec, records: Records, rows: int) -> list[list[str]]:
    if not has_pictures(spec):
        return []
    found: list[list[str]] = [[] for _ in records.rows[:rows]]
    for index, _, raws in record_pictures(spec, records, rows, strict=False):
        found[index] = [str(picture_path(dataset_dir, raw)) for raw in raws]
    return found


def _readable(
    preview: DatasetPreview,
    loaded: DatasetExamples,
    tokenizer: PreTrainedTokenizerBase,
    model_name: str,
    pictures: PictureEncoder | None,
) -> bool:
    """Whether the model reads what the dataset shows; when it cannot read its pictures, the preview says so as
    Start would (prepare.check_vision)."""
    from studio.data.prepare import check_vision

    try:
        check_vision([loaded], model_name or Path(tokenizer.name_or_path or "?").name, vision=pictures is not None)
    except DataError as error:
        preview.stage_problem = preview.stage_problem or error.message
        return False
    return True


def _check_stage(preview: DatasetPreview, spec: DatasetSpec, stage: str) -> None:
    from studio.data.prepare import check_stage

    try:
        check_stage(spec, stage)
    except DataError as error:
        preview.stage_problem = error.message


def _token_stats(
    tokenizer: PreTrainedTokenizerBase,
    loaded: DatasetExamples,
    config: DataConfig,
    report: Callable[[int], None] = lambda done: None,
    pictures: PictureEncoder | None = None,
) -> tuple[TokenStats, dict[str, TokenStats]]:
    """(lengths as trained, {part: lengths}) of the dataset's examples, with how many exceed cutoff_len."""
    lengths: list[int] = []
    parts: dict[str, list[int]] = {}
    for index, example in enumerate(loaded.examples):
        if index % 50 == 0:
            report(index)
        total, pieces = _lengths(tokenizer, loaded.kind, example, pictures)
        lengths.append(total)
        for name, length in pieces.items():
            parts.setdefault(name, []).append(length)
    return _stats(lengths, config.cutoff_len), {name: _stats(n, config.cutoff_len) for name, n in parts.items()}


def _lengths(
    tokenizer: PreTrainedTokenizerBase, kind: str, example: Any, pictures: PictureEncoder | None = None
) -> tuple[int, dict[str, int]]:
    # `example` is of `kind` (studio.data.examples.Example narrowed by the kind, which the checker cannot follow)
    from studio.data.tokenize_kinds import encode_one_turn

    def one_turn(prompt: list, answer: dict) -> tuple[list[int], list[int]]:  # a picture counted as its tokens
        turns, _ = picture_messages(tokenizer, [*prompt, answer], pictures)
        return encode_one_turn(tokenizer, turns[:-1], turns[-1])

    if kind == "pairwise":  # trained as the prompt with each answer; cut to fit the longer one
        prompt, chosen = one_turn(example.prompt, example.chosen)
        _, rejected = one_turn(example.prompt, example.rejected)
        sizes = {"prompt": len(prompt), "chosen": len(chosen), "rejected": len(rejected)}
        return len(prompt) + max(len(chosen), len(rejected)), sizes
    if kind == "kto":
        prompt, answer = one_turn(example.messages[:-1], example.messages[-1])
        return len(prompt) + len(answer), {}
    if kind == "text":
        return len(tokenizer.encode(example.text, add_special_tokens=False)) + 1, {}  # and its end token
    encoded = encode_conversation(tokenizer, example, cutoff_len=10**9, train_on_prompt=True, pictures=pictures)
    return (len(encoded.input_ids) if encoded else 0), {}


def _stats(lengths: list[int], cutoff_len: int) -> TokenStats:
    ordered = sorted(lengths)
    return TokenStats(
        count=len(lengths),
        min=ordered[0],
        mean=statistics.fmean(ordered),
        median=statistics.median(ordered),
        p95=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        max=ordered[-1],
        truncated=sum(length > cutoff_len for length in lengths),
        lengths=lengths,
    )
