"""Plotly figures for a run: loss (raw, smoothed, eval), learning rate, GPU memory or worker RSS."""

from __future__ import annotations

import threading

import plotly.graph_objects as go
from gradio.components.plot import PlotData

from app.i18n import T
from studio.monitoring import RunHistory, smooth

_COLORS = {"raw": "rgba(99,110,250,0.35)", "smooth": "#636efa", "eval": "#ef553b", "lr": "#00cc96", "mem": "#ab63fa"}


def _layout(figure: go.Figure, title: str, x_title: str, y_title: str) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.02, "font": {"size": 15}},
        margin={"l": 55, "r": 15, "t": 45, "b": 45},
        height=300,
        # plotly_white's look without its 7 KB template in every figure sent to every page
        template="none", plot_bgcolor="white", paper_bgcolor="white", font={"color": "#2a3f5f"},
        legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"},
        xaxis={"title": x_title, "gridcolor": "#ebf0f8", "zeroline": False, "linecolor": "#ebf0f8"},
        yaxis={"title": y_title, "gridcolor": "#ebf0f8", "zeroline": False, "linecolor": "#ebf0f8"},
    )
    return figure


def loss_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    figure = go.Figure()
    if history and history.loss.x:
        figure.add_scatter(x=history.loss.x, y=history.loss.y, name="loss", mode="lines", line={"color": _COLORS["raw"]})
        figure.add_scatter(
            x=history.loss.x, y=smooth(history.loss.y), name="loss (smoothed)", mode="lines",
            line={"color": _COLORS["smooth"], "width": 2.5},
        )
    if history and history.eval_loss.x:
        figure.add_scatter(
            x=history.eval_loss.x, y=history.eval_loss.y, name="eval_loss", mode="lines+markers",
            line={"color": _COLORS["eval"], "width": 2}, marker={"size": 7},
        )
    _mark_resumes(figure, history, lang)
    return _layout(figure, T.loss_chart(lang), "step", "loss")


def _mark_resumes(figure: go.Figure, history: RunHistory | None, lang: str) -> None:
    """Where a resumed attempt took over (its steps replace the ones after its checkpoint)."""
    for step in history.resumed_at if history else []:
        figure.add_vline(x=step, line_dash="dot", line_color="#888", annotation_text=T.resumed_from(lang),
                         annotation_position="top left", annotation_font_size=10)


def lr_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    figure = go.Figure()
    if history and history.learning_rate.x:
        figure.add_scatter(
            x=history.learning_rate.x, y=history.learning_rate.y, name="learning rate", mode="lines",
            line={"color": _COLORS["lr"], "width": 2},
        )
    _mark_resumes(figure, history, lang)
    figure = _layout(figure, T.lr_chart(lang), "step", "lr")
    figure.update_yaxes(exponentformat="e")
    return figure


def memory_figure(history: RunHistory | None, lang: str = "en") -> go.Figure:
    """nvidia-smi used/total MiB per GPU over time; without GPU readings, the worker's RSS, labelled as such."""
    figure = go.Figure()
    if history and history.gpu_used_mib:
        for index, series in sorted(history.gpu_used_mib.items()):
            name = f"GPU {index} {history.gpu_names.get(index, '')} used".strip()
            figure.add_scatter(x=series.x, y=series.y, name=name, mode="lines", line={"width": 2})
            total = history.gpu_total_mib.get(index)
            if total:
                figure.add_hline(y=total, line_dash="dot", annotation_text=f"GPU {index} total {total:.0f} MiB")
        return _layout(figure, T.memory_chart(lang) + " (nvidia-smi)", "seconds", "MiB")
    if history and history.rss_mib.x:
        figure.add_scatter(
            x=history.rss_mib.x, y=history.rss_mib.y, name="worker RSS", mode="lines",
            line={"color": _COLORS["mem"], "width": 2},
        )
    title = "RSS" if lang != "zh" else "内存 (RSS)"
    figure = _layout(figure, title, "seconds", "MiB")
    figure.add_annotation(
        text=T.no_gpu(lang), xref="paper", yref="paper", x=0.5, y=-0.32, showarrow=False, font={"size": 11, "color": "#666"}
    )
    figure.update_layout(margin={"b": 70})
    return figure


def token_histogram(lengths: list[int], cutoff_len: int, lang: str = "en") -> go.Figure:
    figure = go.Figure()
    figure.add_histogram(x=lengths, nbinsx=40, marker={"color": _COLORS["smooth"]}, name="examples")
    figure.add_vline(x=cutoff_len, line_dash="dash", line_color=_COLORS["eval"], annotation_text=f"cutoff_len {cutoff_len}")
    title = "Token length per example" if lang != "zh" else "每条样本的 token 长度"
    return _layout(figure, title, "tokens", "examples")


class FigureCache:
    """Figures of a history snapshot, built and serialised once for every page that shows it.

    Keyed by run, events offset and language; a gr.Plot given PlotData sends it as it is, so
    twenty pages on the same run cost one plotly build and one JSON encoding per new step.
    """

    def __init__(self, capacity: int = 24):
        self._capacity = capacity
        self._figures: dict[tuple, tuple[PlotData, PlotData, PlotData]] = {}
        self._lock = threading.Lock()

    def get(self, history: RunHistory, lang: str, version: str | None = None) -> tuple[PlotData, PlotData, PlotData]:
        """The figures of `history`, or of the first history seen for `version` (so pages asking for it agree)."""
        key = (history.run_id, version or history.offset, lang, len(history.resumed_at))
        with self._lock:
            figures = self._figures.pop(key, None)
            if figures is None:
                built = (loss_figure(history, lang), lr_figure(history, lang), memory_figure(history, lang))
                figures = tuple(PlotData(type="plotly", plot=figure.to_json()) for figure in built)
            self._figures[key] = figures  # most recently used last
            while len(self._figures) > self._capacity:
                del self._figures[next(iter(self._figures))]
            return figures
