"""Events to figures, without a browser."""

import pytest

from app.charts import loss_figure, lr_figure, memory_figure, token_histogram
from studio.runs.events import Eval, Gpu, GpuReading, Step
from studio.runs.history import RunHistory, smooth


def _step(n, loss, t):
    return Step(
        time=t,
        step=n,
        total_steps=10,
        epoch=n / 10,
        loss=loss,
        learning_rate=1e-4 * (1 - n / 10),
        grad_norm=1.0,
        tokens_per_second=100.0,
        elapsed_s=n,
        eta_s=10 - n,
        rss_mib=500 + n,
    )


def _history():
    events = [_step(n, 3.0 - 0.1 * n, 1000.0 + n) for n in range(1, 6)]
    events.append(Eval(time=1006.0, step=5, epoch=0.5, eval_loss=2.6, best_eval_loss=2.6, patience_left=3))
    return RunHistory("r").update(events, 123)


def test_loss_figure_has_raw_smoothed_and_eval_traces():
    figure = loss_figure(_history())
    names = [trace.name for trace in figure.data]
    assert names == ["loss", "loss (smoothed)", "eval loss"]
    assert list(figure.data[0].x) == [1, 2, 3, 4, 5] and list(figure.data[2].y) == [2.6]


def test_learning_rate_and_progress_fields():
    history = _history()
    assert list(lr_figure(history).data[0].y)[0] == 1e-4 * 0.9
    assert history.step == 5 and history.fraction_done == 0.5 and history.offset == 123


def test_memory_without_gpu_shows_rss_and_says_so():
    figure = memory_figure(_history(), "en")
    assert figure.data[0].name == "worker RSS"
    assert "No GPU" in figure.layout.title.subtitle.text  # under the title, where it meets no axis title


def test_memory_with_gpu_shows_used_and_total():
    history = _history().update(
        [Gpu(time=1002.0, gpus=[GpuReading(index=0, name="H100", used_mib=9000, total_mib=81559, utilization_pct=90)])],
        200,
    )
    figure = memory_figure(history)
    assert figure.data[0].name.startswith("GPU 0") and list(figure.data[0].y) == [9000]
    assert "nvidia-smi" in figure.layout.title.text


def test_empty_and_chinese_figures_render():
    empty = loss_figure(None, "zh")
    assert empty.layout.title.text == "损失" and empty.layout.xaxis.visible is False
    assert empty.layout.annotations[0].text == "等待第一步完成……"  # no made-up axes before the first step
    assert [t.name for t in loss_figure(_history(), "zh").data] == ["训练损失", "训练损失（平滑）", "验证损失"]
    assert len(token_histogram([10, 20, 30], 64).data) == 1


def test_a_single_point_is_drawn_as_a_marker():
    one = RunHistory("r").update([_step(1, 3.0, 1001.0)], 1)
    assert "markers" in loss_figure(one).data[0].mode and "markers" in lr_figure(one).data[0].mode


def test_smoothing_starts_at_the_first_value():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])


def test_preference_runs_chart_rewards_and_margin_with_accuracy():
    from app.charts import FigureCache, margin_figure, rewards_figure
    from studio.runs.events import Preference

    events = [
        Preference(
            time=1000.0 + n,
            step=n,
            split="train",
            rewards_chosen=0.1 * n,
            rewards_rejected=-0.1 * n,
            reward_margin=0.2 * n,
            reward_accuracy=0.5 + 0.1 * n,
        )
        for n in range(1, 4)
    ]
    events.append(
        Preference(
            time=1004.0,
            step=3,
            split="eval",
            rewards_chosen=0.2,
            rewards_rejected=-0.3,
            reward_margin=0.5,
            reward_accuracy=0.8,
        )
    )
    history = _history().update(events, 200)
    rewards = rewards_figure(history)
    assert [t.name for t in rewards.data] == ["chosen (train)", "chosen (eval)", "rejected (train)", "rejected (eval)"]
    margin = margin_figure(history, "zh")
    assert [t.name for t in margin.data] == ["差值 (训练)", "差值 (验证)", "准确率 (训练)", "准确率 (验证)"]
    assert margin.data[2].yaxis == "y2" and margin.layout.yaxis2.range == (-0.05, 1.05)
    assert margin.layout.yaxis2.automargin  # "100%" and the axis title get the room they need on the right
    figures = FigureCache().get(history, "en")
    assert len(figures) == 5 and all(figure is not None for figure in figures)
    assert FigureCache().get(_history(), "en")[3:] == (None, None)  # an SFT run has no preference charts


def test_title_and_legend_are_pinned_to_the_top_one_under_the_other():
    """Both in pixels from the figure's top (a legend wider than the chart wraps and pushes the plot down)."""
    for figure in (loss_figure(_history()), memory_figure(_history()), token_histogram([10, 20], 64)):
        title, legend, height = figure.layout.title, figure.layout.legend, figure.layout.height
        assert title.yref == legend.yref == "container" and title.yanchor == legend.yanchor == "top"
        assert (1 - title.y) * height + 20 < (1 - legend.y) * height  # the legend starts under a 15 px title
