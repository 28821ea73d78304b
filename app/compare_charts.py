"""Figures of the Compare tab: each ticked run in its own colour, every chart on the same x-axis (step or tokens)."""

from __future__ import annotations

import plotly.graph_objects as go

from app.charts import say_empty
from app.i18n import T

PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff", "#fecb52"]


def _layout(figure: go.Figure, title: str, x_title: str, lang: str, height: int = 320) -> go.Figure:
    figure.update_layout(
        title={"text": title, "x": 0.02, "font": {"size": 15}},
        height=height,
        margin={"l": 55, "r": 15, "t": 45, "b": 45},
        template="none",
        plot_bgcolor="white",
        paper_bgcolor="white",
        font={"color": "#2a3f5f"},
        legend={"x": 1.01, "y": 1, "font": {"size": 11}},  # beside the plot: never over an axis
    )
    figure.update_xaxes(title=x_title, gridcolor="#ebf0f8", zeroline=False)
    figure.update_yaxes(gridcolor="#ebf0f8", zeroline=False)
    if not figure.data:
        say_empty(figure, T.compare_pick(lang))
    return figure


def _x(curves, series, axis: str):
    return curves.tokens(series.x) if axis == "tokens" else series.x


def _x_title(axis: str, lang: str) -> str:
    return T.axis_tokens(lang) if axis == "tokens" else T.axis_step(lang)


def loss_figure(comparison, axis: str, lang: str) -> go.Figure:
    """Train loss (lines) and eval loss (dashed, with markers) of every run, one colour per run."""
    figure = go.Figure()
    for index, curves in enumerate(comparison.curves):
        color = PALETTE[index % len(PALETTE)]
        for name, dash in (("loss", None), ("eval_loss", "dash")):
            series = curves.series.get(name)
            if series and series.x:
                label = f"{curves.run_id} · {T.trace_loss(lang) if name == 'loss' else T.trace_eval(lang)}"
                figure.add_scatter(
                    x=_x(curves, series, axis),
                    y=series.y,
                    name=label,
                    legendgroup=curves.run_id,
                    mode="lines+markers" if dash or len(series.x) < 10 else "lines",
                    line={"color": color, "dash": dash, "width": 2},
                    marker={"size": 6},
                )
    return _layout(figure, T.loss_chart(lang), _x_title(axis, lang), lang, height=380)


def extra_names(comparison) -> list[str]:
    """Metrics beyond train and eval loss that some ticked run has (a preference stage's reward accuracy and
    margin), each once: a held-out ('eval_') curve shares its metric's panel."""
    names = (name.removeprefix("eval_") for c in comparison.curves for name in c.series)
    return list(dict.fromkeys(name for name in names if name != "loss"))


def _metric_title(name: str, lang: str) -> str:
    text = getattr(T, f"compare_col_training_{name}", None)
    return text(lang) if text is not None else name


def extras_figure(comparison, axis: str, lang: str) -> go.Figure:
    """One panel per extra metric, stacked: training values as lines, held-out ones dashed, runs in the same
    colours as the loss chart."""
    from plotly.subplots import make_subplots

    names = extra_names(comparison)
    if not names:
        return _layout(go.Figure(), T.compare_extra_chart(lang), _x_title(axis, lang), lang)
    titles = [_metric_title(name, lang) for name in names]
    figure = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.12)
    for index, curves in enumerate(comparison.curves):
        color = PALETTE[index % len(PALETTE)]
        for row, name in enumerate(names, start=1):
            for key, dash, kind in (
                (name, None, T.trace_train_split(lang)),
                (f"eval_{name}", "dash", T.trace_eval_split(lang)),
            ):
                series = curves.series.get(key)
                if series and series.x:
                    figure.add_scatter(
                        x=_x(curves, series, axis),
                        y=series.y,
                        name=f"{curves.run_id} · {kind}",
                        legendgroup=f"{curves.run_id}-{kind}",
                        showlegend=row == 1,
                        mode="lines+markers",
                        marker={"size": 5},
                        line={"color": color, "width": 2, "dash": dash},
                        row=row,
                        col=1,
                    )
        if "reward_accuracy" in names:
            figure.update_yaxes(tickformat=".0%", row=names.index("reward_accuracy") + 1, col=1)
    figure = _layout(figure, T.compare_extra_chart(lang), _x_title(axis, lang), lang, height=240 + 200 * len(names))
    for row in range(1, len(names)):  # the axis is named once, at the bottom: between panels it met the next title
        figure.update_xaxes(title=None, row=row, col=1)
    return figure
