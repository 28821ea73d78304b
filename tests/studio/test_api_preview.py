"""The front door's dataset preview with a vision-language model: pictures counted as their image tokens, the model's
image processor loaded once and kept, as its tokenizer is (the page asks again at every change)."""

from studio.api import Studio, _picture_processor
from studio.config import RunConfig


def test_a_preview_with_pictures_loads_the_image_processor_once(tiny_vl_model_dir, tmp_path):
    studio = Studio(tmp_path / "runs")
    config = RunConfig().with_overrides(
        {"model.name_or_path": str(tiny_vl_model_dir), "data.datasets": "[shapes_zh_demo]"}
    )
    loads = _picture_processor.cache_info().misses
    first, note = studio.preview(config, rows=1)
    again, _ = studio.preview(config, rows=1)
    assert note is None and first.datasets[0].tokens is not None and first.datasets[0].stage_problem is None
    assert again.datasets[0].tokens == first.datasets[0].tokens
    assert _picture_processor.cache_info().misses - loads <= 1  # none when an earlier test loaded it already
