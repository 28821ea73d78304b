"""The adapter lists' labels: a full or freeze run's whole model is named as one, and kept out of lora.init_adapter."""

from app import adapter_picker
from studio.api import Studio


def test_whole_models_are_labelled_and_left_out_where_only_an_adapter_fits(method_runs):
    full, oft = method_runs("full"), method_runs("oft")
    studio = Studio(full.path.parent)
    listed = {path: label for label, path in adapter_picker.choices(studio, "en")["choices"]}
    assert listed[str(full.model_dir)] == "full (full, whole model)" and listed[str(oft.adapter_dir)] == "oft"
    chinese = {path: label for label, path in adapter_picker.choices(studio, "zh")["choices"]}
    assert chinese[str(full.model_dir)] == "full（full，完整模型）"
    init = [path for _, path in adapter_picker.choices(studio, "en", adapters_only=True)["choices"]]
    assert init == [str(oft.adapter_dir)]
