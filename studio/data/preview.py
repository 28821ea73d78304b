"""Dataset preview: first rows, counts and token-length statistics, before anything trains."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

from studio.config import DataConfig
from studio.data.examples import SkippedRow, to_examples
from studio.data.readers import read_records
from studio.data.registry import resolve_specs
from studio.data.tokenize import encode_conversation
from studio.paths import resolve_dataset_dir


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
    tokens: TokenStats | None = None  # SFT data only
    kind: str = "sft"  # sft, pairwise, kto or text: which training stage can use it
    skipped_rows: list[SkippedRow] = field(default_factory=list)  # the first few, with file and line


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
            if d.tokens:
                t = d.tokens
                lines.append(
                    f"   tokens: min {t.min}, median {t.median:.0f}, mean {t.mean:.0f}, p95 {t.p95}, max {t.max}; "
                    f"{t.truncated} longer than cutoff_len"
                )
            lines += [f"   {json.dumps(row, ensure_ascii=False)[:300]}" for row in d.rows]
        return "\n".join(lines)


@dataclass
class PreviewProgress:
    """How far a preview has come: stage is 'reading' or 'tokenizing' (the caller adds its own, e.g. 'tokenizer')."""

    stage: str
    dataset: str
    done: int
    total: int


def preview_datasets(config: DataConfig, rows: int = 5, tokenizer=None, progress=lambda report: None) -> Preview:
    """Raw first rows of each dataset, its kind and skipped rows; SFT token statistics when a tokenizer is given."""
    dataset_dir = resolve_dataset_dir(config.dataset_dir)
    previews = []
    for spec in resolve_specs(dataset_dir, config.datasets):
        progress(PreviewProgress("reading", spec.name, 0, 0))
        records = read_records(dataset_dir, spec)
        loaded = to_examples(spec, records, config.system_prompt)
        sft = loaded.kind == "sft" and tokenizer is not None
        report = lambda done, name=spec.name, total=len(loaded.examples): progress(
            PreviewProgress("tokenizing", name, done, total)
        )  # noqa: E731
        previews.append(
            DatasetPreview(
                name=spec.name,
                file=spec.file_name or spec.hf_hub_url or "",
                formatting=spec.formatting,
                num_rows=len(records),
                num_usable=len(loaded.examples),
                skipped=loaded.skipped,
                rows=records.rows[:rows],
                tokens=_token_stats(tokenizer, loaded.examples, config, report) if sft else None,
                kind=loaded.kind,
                skipped_rows=loaded.skipped_rows,
            )
        )
    return Preview(previews)


def _token_stats(tokenizer, examples, config: DataConfig, report=lambda done: None) -> TokenStats:
    lengths, truncated = [], 0
    for index, messages in enumerate(examples):
        if index % 50 == 0:
            report(index)
        encoded = encode_conversation(tokenizer, messages, cutoff_len=10**9, train_on_responses_only=False)
        length = len(encoded.input_ids) if encoded else 0
        lengths.append(length)
        truncated += length > config.cutoff_len
    ordered = sorted(lengths)
    return TokenStats(
        count=len(lengths),
        min=ordered[0],
        mean=statistics.fmean(ordered),
        median=statistics.median(ordered),
        p95=ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        max=ordered[-1],
        truncated=truncated,
        lengths=lengths,
    )
