"""What the Train tab's buttons and timer do, as plain functions over the training service.

They return plain values (or raise); the tab wires them to components. Errors that a user
can fix come back as readable messages in the page, never as a dead app.
"""

from __future__ import annotations

import functools
import html
from pathlib import Path

import pandas as pd

from app.i18n import T
from studio.config import ConfigError, ModelConfig, RunConfig
from studio.data.preview import Preview, preview_datasets
from studio.data.registry import DataError, load_registry
from studio.device_lock import DeviceBusy
from studio.follow import format_duration
from studio.modeling.loader import ModelLoadError
from studio.monitoring import RunHistory
from studio.paths import resolve_dataset_dir
from studio.service import RunNotFound, TrainingService

USER_ERRORS = (ConfigError, DataError, ModelLoadError, DeviceBusy, RunNotFound, ValueError, OSError)


def dataset_choices(dataset_dir: str) -> list[str]:
    try:
        return sorted(load_registry(resolve_dataset_dir(dataset_dir)))
    except DataError:
        return []


@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str, chat_template: str):
    from studio.modeling.loader import load_tokenizer, resolve_model_path

    model = ModelConfig(name_or_path=name_or_path, chat_template=chat_template)
    return load_tokenizer(model, resolve_model_path(model, progress=lambda _: None))


def preview(config: RunConfig, rows: int = 10) -> tuple[Preview, str | None]:
    """The preview with token statistics when the model's tokenizer loads; else without, and why."""
    try:
        tokenizer = _tokenizer(config.model.name_or_path, config.model.chat_template)
    except Exception as error:  # the rows are still worth showing without token counts
        return preview_datasets(config.data, rows=rows), f"Token lengths unavailable: {error}"
    return preview_datasets(config.data, rows=rows, tokenizer=tokenizer), None


def preview_table(result: Preview) -> pd.DataFrame:
    records = []
    for dataset in result.datasets:
        for row in dataset.rows:
            records.append({"dataset": dataset.name, **{k: _cell(v) for k, v in row.items()}})
    table = pd.DataFrame.from_records(records).fillna("")
    empty = [c for c in table.columns if not table[c].astype(str).str.strip().any()]
    return table.drop(columns=empty)  # e.g. alpaca's usually blank 'input'


def _cell(value) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 300 else text[:297] + "..."


def preview_summary(result: Preview, note: str | None, lang: str) -> str:
    lines = []
    for d in result.datasets:
        line = f"**{d.name}** — {d.num_usable} / {d.num_rows} {T.rows(lang)} ({d.formatting}, `{d.file}`)"
        if d.tokens:
            t = d.tokens
            line += f"; tokens: median {t.median:.0f}, p95 {t.p95}, max {t.max}; {t.truncated} > cutoff_len"
        if d.skipped:
            line += "; skipped: " + ", ".join(f"{n} {reason}" for reason, n in d.skipped.items())
        lines.append(f"- {line}")
    if note:
        lines.append(f"\n_{note}_")
    return "\n".join(lines)


def all_lengths(result: Preview) -> list[int]:
    return [n for d in result.datasets if d.tokens for n in d.tokens.lengths]


def run_choices(service: TrainingService) -> list[tuple[str, str]]:
    return [s.run_id for s in service.list_runs()]  # state and progress live in the progress box, never stale


def default_run(service: TrainingService) -> str | None:
    runs = service.list_runs()
    live = [s for s in runs if s.state in ("starting", "running")]
    chosen = live or runs
    return chosen[0].run_id if chosen else None


def poll(service: TrainingService, run_id: str | None, history: RunHistory | None) -> tuple[RunHistory | None, bool]:
    """Fold the events written since the last poll into the history; (history, whether anything changed)."""
    if not run_id:
        return None, history is not None
    if history is None or history.run_id != run_id:
        history = RunHistory(run_id)
    try:
        events, offset = service.read_events(run_id, history.offset)
    except RunNotFound:
        return None, True
    if not events:
        return history, False
    return history.update(events, offset), True


def progress_html(service: TrainingService, history: RunHistory | None, lang: str) -> str:
    if history is None:
        return f"<div class='qs-progress qs-empty'>{html.escape(T.no_run(lang))}</div>"
    try:
        state = service.status(history.run_id).state
    except RunNotFound:
        state = "missing"
    percent = round(history.fraction_done * 100, 1)
    total = history.total_steps or "?"
    details = [
        f"{T.steps(lang)} {history.step}/{total}",
        f"{T.elapsed(lang)} {_duration(history.elapsed_s)}",
        f"{T.eta(lang)} {_duration(history.eta_s)}",
    ]
    if history.tokens_per_second:
        details.append(f"{history.tokens_per_second:.0f} tok/s")
    method = f"<div class='qs-method'>{html.escape(history.method)}</div>" if history.method else ""
    error = f"<div class='qs-error'>{html.escape(history.error)}</div>" if history.error else ""
    return (
        f"<div class='qs-progress'><div class='qs-head'><b>{html.escape(history.run_id)}</b>"
        f"<span class='qs-state qs-{state}'>{state}</span><span class='qs-phase'>{html.escape(history.phase)}</span></div>"
        f"<div class='qs-bar'><div class='qs-fill' style='width:{percent}%'></div></div>"
        f"<div class='qs-details'>{' · '.join(details)} · {percent}%</div>{method}{error}</div>"
    )


def _duration(seconds: float | None) -> str:
    return format_duration(seconds, unknown="–")


def save_config(config: RunConfig, path: str) -> Path:
    if not path.strip():
        raise ValueError("Give a file path to save the config to, e.g. configs/my_run.yaml")
    return config.save(Path(path).expanduser())


def load_config(path: str) -> RunConfig:
    return RunConfig.from_yaml(Path(path).expanduser())
