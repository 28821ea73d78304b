"""The Train tab's live view of one run: run picker, progress bar, loss / learning-rate / memory charts (and for
DPO/KTO runs rewards and margin/accuracy charts), log.

Every open page polls once a second, and that poll is kept small: it answers the progress box
and a version string (run, events offset, language). Charts and log are drawn by the version's
change event, so a page fetches them only when its run has moved on. (Returning gr.skip() for
unchanged charts instead would make Gradio rebuild each skipped component on every poll.)
The run's events are folded once for all pages (Studio.history) and its figures built and
serialised once per new snapshot (FigureCache).
"""

from __future__ import annotations

import html
import threading
import time
import zlib
from dataclasses import dataclass

import gradio as gr

from app.charts import FigureCache
from app.feedback import problem
from app.i18n import Labels, T, named
from studio.api import Studio
from studio.errors import StudioError
from studio.locales import in_language
from studio.runs.history import RunHistory
from studio.runs.text import format_duration

LIVE = ("starting", "running")
MIN_REDRAW_S = 2.0  # charts follow a fast run every 2 s; the progress box follows it every second


class _ChartPace:
    """The events offset each run's charts show: it moves at most every MIN_REDRAW_S, the same for every page,
    so pages on one run draw the same figures (built once) however fast its steps come."""

    def __init__(self):
        self._shown: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def offset(self, run_id: str, latest: int) -> int:
        with self._lock:
            shown, at = self._shown.get(run_id, (None, 0.0))
            if latest != shown and (shown is None or time.monotonic() - at >= MIN_REDRAW_S):
                shown, at = latest, time.monotonic()
                self._shown[run_id] = (shown, at)
            return shown


# the log box shows its newest lines: scrolled to its end after every redraw, and whenever its tab is shown again.
# The textarea takes its new text (and its tab its height) a moment after the event; scroll then too, since
# Gradio's own autoscroll gives up when the box was not near its end before a redraw that added many lines.
FOLLOW_LOG_END = (
    "() => { for (const ms of [0, 100, 400]) setTimeout(() => { const box = document.querySelector('#qs-log textarea');"
    " if (box) box.scrollTop = box.scrollHeight; }, ms); }"
)

_FIGURES = FigureCache()
_PACE = _ChartPace()


@dataclass
class Monitor:
    runs: gr.Dropdown
    refresh_runs: gr.Button
    progress: gr.HTML
    loss: gr.Plot
    lr: gr.Plot
    memory: gr.Plot
    rewards: gr.Plot  # DPO/KTO/RM: chosen and rejected rewards; PPO/GRPO: the reward of sampled answers
    margin: gr.Plot  # DPO/KTO/RM: margin and accuracy; PPO/GRPO: KL, answer length, learning signal
    answers: gr.Dataframe  # PPO/GRPO: the latest sampled answers with their rewards
    watched: gr.Dataframe  # every stage: the watched prompts' answers at each evaluation, newest first
    log: gr.Textbox
    version: gr.Textbox  # hidden: "run offset lang" of what the poll saw; its change redraws the charts
    catalog: gr.Textbox  # hidden: which runs exist and in what state; its change refreshes run and adapter lists

    @property
    def charts(self) -> list:
        return [self.loss, self.lr, self.memory, self.rewards, self.margin, self.answers, self.watched, self.log]


def layout(labels: Labels) -> Monitor:
    with gr.Row():
        runs = labels.add(gr.Dropdown(choices=[], label=T.runs("en"), scale=4, elem_id="qs-runs"), T.runs)
        refresh_runs = labels.add(gr.Button(T.refresh("en"), size="sm", scale=1), T.refresh, "value")
    progress = gr.HTML(elem_id="qs-progress")
    # a grid of two columns, one on a narrow screen (server.CSS): the loss across the page, then pairs
    with gr.Column(elem_classes="qs-charts"):
        loss = gr.Plot(show_label=False, elem_id="qs-loss-chart")
        lr = gr.Plot(show_label=False, elem_id="qs-lr-chart")
        memory = gr.Plot(show_label=False, elem_id="qs-memory-chart")
        rewards = gr.Plot(show_label=False, elem_id="qs-rewards-chart", visible=False)  # preference runs only
        margin = gr.Plot(show_label=False, elem_id="qs-margin-chart", visible=False)
    answers = gr.Dataframe(
        headers=_answer_headers("en"),
        label=T.answers_table("en"),
        interactive=False,
        wrap=True,
        visible=False,
        elem_id="qs-answers",
    )
    watched = gr.Dataframe(
        headers=_watched_headers("en"),
        label=T.watched_table("en"),
        interactive=False,
        wrap=True,
        max_height=420,
        visible=False,
        elem_id="qs-watched",
    )
    log = labels.add(
        gr.Textbox(label=T.logs("en"), lines=8, max_lines=8, interactive=False, autoscroll=True, elem_id="qs-log"),
        T.logs,
    )
    version = gr.Textbox(visible=False, elem_id="qs-run-version")
    catalog = gr.Textbox(visible=False, elem_id="qs-run-catalog")
    return Monitor(
        runs, refresh_runs, progress, loss, lr, memory, rewards, margin, answers, watched, log, version, catalog
    )


def wire(studio: Studio, monitor: Monitor, lang: gr.State) -> None:
    monitor.refresh_runs.click(
        lambda run: gr.update(choices=run_choices(studio), value=run), monitor.runs, monitor.runs, api_name="runs"
    )
    polled = [monitor.progress, monitor.version, monitor.catalog]
    tick = lambda run, lng: poll(studio, run, lng)  # noqa: E731
    gr.Timer(1.0).tick(tick, [monitor.runs, lang], polled, show_progress="hidden", api_name="poll", queue=False)
    monitor.runs.change(tick, [monitor.runs, lang], polled, show_progress="hidden", api_visibility="private")
    monitor.version.change(
        lambda run, version, lng: draw(studio, run, version, lng),
        [monitor.runs, monitor.version, lang],
        monitor.charts,
        show_progress="hidden",
        api_name="draw",
        queue=False,
    ).then(None, js=FOLLOW_LOG_END)


def poll(studio: Studio, run_id: str | None, lang: str) -> tuple[str, str, str]:
    """(progress box, version, catalog): cheap enough for every open page, every second."""
    catalog = catalog_version(studio)
    if not run_id:
        return _empty_progress(lang), f"- 0 {lang}", catalog
    try:
        history, status = studio.history(run_id), studio.status(run_id)
    except StudioError as error:
        return f"<div class='qs-progress qs-empty'>{problem(error, lang)}</div>", f"{run_id} error {lang}", catalog
    box = progress_html(history, status.state, lang, _queue_note(status, lang))
    return box, f"{run_id} {_PACE.offset(run_id, history.offset)} {lang}", catalog


def _queue_note(status, lang: str) -> str:
    """Where a queued run stands: its place in line and what it waits for, as the backend says it."""
    return in_language(status.message, lang) if status.state == "queued" else ""


def catalog_version(studio: Studio) -> str:
    """Changes when a run starts, ends or goes away (and so when an adapter appears): lists refresh then."""
    runs = studio.runs()
    return f"{len(runs)}-{zlib.crc32(repr([(s.run_id, s.state) for s in runs]).encode()):08x}"


def draw(studio: Studio, run_id: str | None, version: str, lang: str) -> list:
    """Values for Monitor.charts: the run's figures for `version` (built once for every page) and the end of its log."""
    try:
        history = studio.history(run_id) if run_id else RunHistory("")
    except StudioError:
        history = RunHistory("")
    shown = version.split()[1] if version and len(version.split()) == 3 else "0"
    loss, lr, memory, rewards, margin = _FIGURES.get(history, lang, version=shown)
    preference = [gr.update(value=figure, visible=figure is not None) for figure in (rewards, margin)]
    return [
        loss,
        lr,
        memory,
        *preference,
        answers_update(history, lang),
        watched_update(history, lang),
        "\n".join(history.log[-40:]),
    ]


WATCHED_SHOWN = 10  # evaluations whose watched answers the table shows, the newest


def watched_update(history: RunHistory, lang: str) -> dict:
    """The watched prompts' answers, newest evaluation first, a row per prompt; hidden until the first one."""
    if not history.watched:
        return gr.update(visible=False)
    rows = [
        [event.step, row.prompt, row.answer, row.reference or ""]
        for event in reversed(history.watched[-WATCHED_SHOWN:])
        for row in event.rows
    ]
    return gr.update(value={"headers": _watched_headers(lang), "data": rows}, label=T.watched_table(lang), visible=True)


def _watched_headers(lang: str) -> list[str]:
    return [
        T.watched_col_step(lang),
        T.answers_col_prompt(lang),
        T.answers_col_answer(lang),
        T.answers_col_reference(lang),
    ]


def answers_update(history: RunHistory, lang: str) -> dict:
    """The latest sampled answers (PPO/GRPO runs), one row each: prompt, answer, reference, reward and each reward
    function's value; hidden for other stages."""
    if not history.has_rewards:
        return gr.update(visible=False)
    functions = list(dict.fromkeys(name for row in history.answers for name in row.scores))
    rows = [
        [row.prompt, row.answer, row.reference or "", round(row.reward, 3), *(row.scores.get(f) for f in functions)]
        for row in history.answers
    ]
    title = T.answers_at_step(lang, step=history.answers_step) if history.answers_step else T.answers_table(lang)
    return gr.update(value={"headers": _answer_headers(lang) + functions, "data": rows}, label=title, visible=True)


def _answer_headers(lang: str) -> list[str]:
    return [
        T.answers_col_prompt(lang),
        T.answers_col_answer(lang),
        T.answers_col_reference(lang),
        T.answers_col_reward(lang),
    ]


def run_choices(studio: Studio) -> list[str]:
    return [status.run_id for status in studio.runs()]  # state and progress live in the progress box, never stale


def progress_html(history: RunHistory, state: str, lang: str, note: str = "") -> str:
    percent = round(history.fraction_done * 100, 1)
    details = [
        f"{T.steps(lang)} {history.step}/{history.total_steps or '?'}",
        f"{T.elapsed(lang)} {format_duration(history.elapsed_now(live=state in LIVE), '–')}",
        f"{T.eta(lang)} {format_duration(history.eta_now(live=state in LIVE), '–')}",
    ]
    if history.tokens_per_second:
        details.append(T.tokens_per_second(lang, rate=history.tokens_per_second))
    method_text = in_language(history.method, lang) if history.method else ""
    method = f"<div class='qs-method'>{html.escape(method_text)}</div>" if method_text else ""
    error = f"<div class='qs-error'>{html.escape(history.error)}</div>" if history.error else ""
    error += f"<div class='qs-method qs-queue'>{html.escape(note)}</div>" if note else ""
    phase = named("phase", history.phase, lang) if history.phase and state in LIVE else ""  # an ended run has no phase
    return (
        f"<div class='qs-progress'><div class='qs-head'><b>{html.escape(history.run_id)}</b>"
        f"<span class='qs-state qs-{state}'>{named('state', state, lang)}</span>"
        f"<span class='qs-phase'>{html.escape(phase)}</span></div>"
        f"<div class='qs-bar'><div class='qs-fill' style='width:{percent}%'></div></div>"
        + ("" if state == "queued" else f"<div class='qs-details'>{' · '.join(details)} · {percent}%</div>")
        + f"{method}{error}</div>"
    )


def _empty_progress(lang: str) -> str:
    return f"<div class='qs-progress qs-empty'>{html.escape(T.no_run(lang))}</div>"
