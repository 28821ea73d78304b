"""Plotly figures for a run: loss (raw, smoothed, eval), learning rate, GPU memory or worker RSS, and for DPO/KTO
the rewards of chosen and rejected answers and the reward margin with the preference accuracy."""

from __future__ import annotations

import threading

import plotly.graph_objects as go
from gradio.components.plot import PlotData

from app.i18n import T
from studio.runs.history import FUNCTION, RunHistory, smooth

_COLORS = {
    "raw": "rgba(99,110,250,0.35)",
    "smooth": "#636efa",
    "eval": "#ef553b",
    "lr": "#00cc96",
    "mem": "#ab63fa",
    "chosen": "#00cc96",
    "rejected": "#ef553b",
    "margin": "#636efa",
    "accuracy": "#ffa15a",
    "reward": "#00cc96",
    "kl": "#ef553b",
    "length": "#636efa",
    "flat": "#ffa15a",
}
# GRPO's reward functions, each its own colour (plotly's qualitative palette, past the colours above)
_FUNCTION_COLORS = ["#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52", "#ab63fa", "#8c564b"]


_HEIGHT = 320
_TITLE_PX = 36  # the band at a chart's top that holds its title; the legend starts under it


def _title_and_legend(title: str) -> dict:
    """The title and the legend on their own lines above the plot, both pinned to the figure's top in pixels: a
    legend too wide for one line wraps and plotly moves the plot down to make room, so the legend never slides
    under the title (as it did, right-aligned beside it, on a chart half the page wide)."""
    top = {"yref": "container", "yanchor": "top"}
    return {
        "title": {"text": title, "x": 0.02, "xanchor": "left", "y": 1 - 10 / _HEIGHT, "font": {"size": 15}, **top},
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1 - _TITLE_PX / _HEIGHT, **top},
    }


def _layout(figure: go.Figure, title: str, x_title: str, y_title: str, lang: str) -> go.Figure:
    # automargin: plotly widens the margins to fit tick labels and axis titles, whatever their length
    axis = {"gridcolor": "#ebf0f8", "zeroline": False, "linecolor": "#ebf0f8", "automargin": True}
    figure.update_layout(
        **_title_and_legend(title),
        margin={"l": 55, "r": 15, "t": _TITLE_PX + 10, "b": 45},
        height=_HEIGHT,
        # plotly_white's look without its 7 KB template in every figure sent to every page
        template="none",
        plot_bgcolor="white",
        paper_bgcolor="white",
        font={"color": "#2a3f5f"},
        xaxis={"title": x_title, **axis},
        yaxis={"title": y_title, **axis},
    )
    if not figure.data:
        say_empty(figure, T.waiting_first_step(lang))
    return figure


def say_empty(figure: go.Figure, text: str) -> None:
    """An empty chart says what it waits for instead of drawing made-up axes."""
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.add_annotation(
        text=text, xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"size": 13, "color": "#888"}
    )


def _mode(points: int) -> str:
    """A line needs two points: the first ones are drawn as markers, so they show at all."""
    return "lines+markers" if points < 10 else "lines"


def loss_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    figure = go.Figure()
    if history and history.loss.x:
        mode = _mode(len(history.loss.x))
        figure.add_scatter(
            x=history.loss.x,
            y=history.loss.y,
            name=T.trace_loss(lang),
            mode=mode,
            line={"color": _COLORS["raw"]},
            marker={"size": 5},
        )
        figure.add_scatter(
            x=history.loss.x,
            y=smooth(history.loss.y),
            name=T.trace_smoothed(lang),
            mode="lines",
            line={"color": _COLORS["smooth"], "width": 2.5},
        )
    if history and history.eval_loss.x:
        figure.add_scatter(
            x=history.eval_loss.x,
            y=history.eval_loss.y,
            name=T.trace_eval(lang),
            mode="lines+markers",
            line={"color": _COLORS["eval"], "width": 2},
            marker={"size": 7},
        )
    _mark_resumes(figure, history, lang)
    return _layout(figure, T.loss_chart(lang), T.axis_step(lang), T.loss_chart(lang), lang)


def _mark_resumes(figure: go.Figure, history: RunHistory | None, lang: str) -> None:
    """Where a resumed attempt took over (its steps replace the ones after its checkpoint)."""
    for step in history.resumed_at if history else []:
        figure.add_vline(
            x=step,
            line_dash="dot",
            line_color="#888",
            annotation_text=T.resumed_from(lang),
            annotation_position="top left",
            annotation_font_size=10,
        )


def lr_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    figure = go.Figure()
    if history and history.learning_rate.x:
        figure.add_scatter(
            x=history.learning_rate.x,
            y=history.learning_rate.y,
            name=T.trace_lr(lang),
            mode=_mode(len(history.learning_rate.x)),
            line={"color": _COLORS["lr"], "width": 2},
            marker={"size": 5},
        )
    _mark_resumes(figure, history, lang)
    figure = _layout(figure, T.lr_chart(lang), T.axis_step(lang), T.lr_chart(lang), lang)
    figure.update_yaxes(exponentformat="e")
    return figure


def memory_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    """nvidia-smi used/total MiB per GPU over time; without GPU readings, the worker's RSS, labelled as such."""
    figure = go.Figure()
    if history and history.gpu_used_mib:
        for index, series in sorted(history.gpu_used_mib.items()):
            name = f"GPU {index} {history.gpu_names.get(index, '')} {T.trace_gpu_used(lang)}".replace("  ", " ")
            figure.add_scatter(x=series.x, y=series.y, name=name, mode=_mode(len(series.x)), line={"width": 2})
            total = history.gpu_total_mib.get(index)
            if total:
                figure.add_hline(  # its label under the line: above it, a line at the top would put it on the legend
                    y=total,
                    line_dash="dot",
                    annotation_text=f"GPU {index} {T.trace_gpu_total(lang)} {total:.0f} MiB",
                    annotation_position="bottom right",
                )
        return _layout(figure, T.memory_chart(lang) + " (nvidia-smi)", T.axis_seconds(lang), "MiB", lang)
    if history and history.rss_mib.x:
        figure.add_scatter(
            x=history.rss_mib.x,
            y=history.rss_mib.y,
            name=T.trace_rss(lang),
            mode=_mode(len(history.rss_mib.x)),
            line={"color": _COLORS["mem"], "width": 2},
            marker={"size": 5},
        )
    figure = _layout(figure, T.rss_chart(lang), T.axis_seconds(lang), "MiB", lang)
    # why RSS, under the title: wrapped so that it fits a chart half the page wide (below the plot, it met the
    # axis title)
    note = T.no_gpu(lang).replace(": ", ":<br>").replace("：", "：<br>")
    figure.update_layout(
        title_subtitle={"text": note, "font": {"size": 11, "color": "#666"}}, margin={"t": _TITLE_PX + 42}
    )
    return figure


def rewards_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    """Rewards of chosen and rejected answers: lines for the training steps, markers for evaluations."""
    figure = go.Figure()
    for name, text in (("rewards_chosen", T.trace_rewards_chosen), ("rewards_rejected", T.trace_rewards_rejected)):
        color = _COLORS["chosen" if name == "rewards_chosen" else "rejected"]
        _split_traces(figure, history, name, text(lang), color, lang)
    _mark_resumes(figure, history, lang)
    return _layout(figure, T.rewards_chart(lang), T.axis_step(lang), T.axis_reward(lang), lang)


def margin_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    """Reward margin (left axis) and preference accuracy (right axis, 0 to 1), train and eval."""
    figure = go.Figure()
    _split_traces(figure, history, "reward_margin", T.trace_margin(lang), _COLORS["margin"], lang)
    _split_traces(figure, history, "reward_accuracy", T.trace_accuracy(lang), _COLORS["accuracy"], lang, yaxis="y2")
    _mark_resumes(figure, history, lang)
    figure = _layout(figure, T.margin_chart(lang), T.axis_step(lang), T.axis_margin(lang), lang)
    # room for a point at 0% or 100%, drawn whole
    return _right_axis(figure, T.axis_accuracy(lang), range=[-0.05, 1.05], tickformat=".0%")


def reward_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    """PPO/GRPO: the mean reward of the sampled answers (train) and of greedy answers to the validation prompts
    (eval), and each GRPO reward function's mean beside it."""
    figure = go.Figure()
    _split_traces(figure, history, "reward_mean", T.trace_reward_mean(lang), _COLORS["reward"], lang, source="rewards")
    functions = sorted(
        {m for split in (history.rewards.values() if history else []) for m in split if m.startswith(FUNCTION)}
    )
    for index, metric in enumerate(functions):
        color = _FUNCTION_COLORS[index % len(_FUNCTION_COLORS)]
        _split_traces(figure, history, metric, metric.removeprefix(FUNCTION), color, lang, source="rewards")
    _mark_resumes(figure, history, lang)
    return _layout(figure, T.rewards_chart(lang), T.axis_step(lang), T.axis_reward(lang), lang)


def policy_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    """PPO/GRPO: KL to the reference (left axis) and answer length (right axis); the share of answers in flat groups
    (GRPO) or clipped tokens (PPO) on the left axis too, as fractions."""
    figure = go.Figure()
    _split_traces(figure, history, "kl", T.trace_kl(lang), _COLORS["kl"], lang, source="rewards")
    _split_traces(figure, history, "flat_groups", T.trace_flat_groups(lang), _COLORS["flat"], lang, source="rewards")
    if history and history.stage == "ppo":
        _split_traces(
            figure, history, "clip_fraction", T.trace_clip_fraction(lang), _COLORS["flat"], lang, source="rewards"
        )
        _split_traces(
            figure, history, "value_loss", T.trace_value_loss(lang), _COLORS["margin"], lang, source="rewards"
        )
    length = T.trace_length(lang)
    _split_traces(figure, history, "completion_length", length, _COLORS["length"], lang, yaxis="y2", source="rewards")
    _mark_resumes(figure, history, lang)
    figure = _layout(figure, T.policy_chart(lang), T.axis_step(lang), T.axis_kl(lang), lang)
    return _right_axis(figure, T.axis_length(lang), rangemode="tozero")


def _right_axis(figure: go.Figure, title: str, **axis: object) -> go.Figure:
    """A second y axis on the right for the traces drawn on "y2" (only once there are traces)."""
    if figure.data:
        # automargin: the right margin grows to fit the tick labels and the axis title beside them
        base = {"title": title, "overlaying": "y", "side": "right", "showgrid": False, "zeroline": False}
        figure.update_layout(yaxis2={**base, "automargin": True, **axis})
    return figure


def _split_traces(
    figure: go.Figure,
    history: RunHistory | None,
    metric: str,
    name: str,
    color: str,
    lang: str,
    yaxis: str = "y",
    source: str = "preference",
) -> None:
    """`metric`'s train line and eval markers, from the history's preference or rewards series."""
    for split, text in (("train", T.split_train), ("eval", T.split_eval)):
        series = getattr(history, source).get(split, {}).get(metric) if history else None
        if not series or not series.x:
            continue
        line = {"color": color, "width": 2, "dash": "solid" if split == "train" else "dot"}
        mode = _mode(len(series.x)) if split == "train" else "lines+markers"
        figure.add_scatter(
            x=series.x,
            y=series.y,
            name=f"{name} ({text(lang)})",
            mode=mode,
            line=line,
            marker={"size": 5 if split == "train" else 7},
            yaxis=yaxis,
        )


def token_histogram(lengths: list[int], cutoff_len: int, lang: str = "en") -> go.Figure:
    figure = go.Figure()
    figure.add_histogram(x=lengths, nbinsx=40, marker={"color": _COLORS["smooth"]}, name=T.axis_examples(lang))
    figure.add_vline(
        x=cutoff_len, line_dash="dash", line_color=_COLORS["eval"], annotation_text=f"cutoff_len {cutoff_len}"
    )
    return _layout(figure, T.tokens_chart(lang), T.axis_tokens(lang), T.axis_examples(lang), lang)


class FigureCache:
    """Figures of a history snapshot, built and serialised once for every page that shows it.

    Keyed by run, events offset and language; a gr.Plot given PlotData sends it as it is, so
    twenty pages on the same run cost one plotly build and one JSON encoding per new step.
    """

    def __init__(self, capacity: int = 24):
        self._capacity = capacity
        self._figures: dict[tuple, tuple[PlotData, ...]] = {}
        self._lock = threading.Lock()

    def get(self, history: RunHistory, lang: str, version: str | None = None) -> tuple[PlotData, ...]:
        """The figures of `history` (loss, learning rate, memory, rewards, margin), or of the first history seen for
        `version` (so pages asking for it agree). The last two are None for runs without preference metrics."""
        key = (history.run_id, version or history.offset, lang, len(history.resumed_at))
        with self._lock:
            figures = self._figures.pop(key, None)
            if figures is None:
                built = [loss_figure(history, lang), lr_figure(history, lang), memory_figure(history, lang)]
                if history.has_preference:
                    built += [rewards_figure(history, lang), margin_figure(history, lang)]
                elif history.has_rewards:
                    built += [reward_figure(history, lang), policy_figure(history, lang)]
                figures = tuple(PlotData(type="plotly", plot=figure.to_json()) for figure in built)
                figures += (None, None) if len(figures) == 3 else ()
            self._figures[key] = figures  # most recently used last
            while len(self._figures) > self._capacity:
                del self._figures[next(iter(self._figures))]
            return figures
