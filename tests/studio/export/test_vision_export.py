"""Exporting a vision-language model of each family: merged with its adapter, saved with its image processor, and
reloaded with equal logits on a prompt with a picture as well as on text."""

import json

import pytest
import torch

from studio.config import RunConfig
from studio.export.merge import export_merged
from studio.modeling.vision import check_picture, load_image_processor, picture_prompt, vision_family


def _vision_adapter(model_dir, target):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    torch.manual_seed(0)
    # the language model's layers and the projector's first layer (Qwen3-VL's linear_fc1), so that the picture's
    # path changes too
    modules = r".*(language_model.*\.(q_proj|v_proj|down_proj)|visual\.merger\.(mlp\.0|linear_fc1))"
    model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(model_dir), LoraConfig(r=4, target_modules=modules)
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    model.save_pretrained(target)
    return target


def test_a_vision_model_exports_with_its_image_processor_and_equal_logits(each_vl_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoTokenizer

    adapter = _vision_adapter(each_vl_model_dir, tmp_path / "adapter")
    out = tmp_path / "merged"
    config = RunConfig().with_overrides(
        {"model.name_or_path": str(each_vl_model_dir), "export.output_dir": str(out), "export.check_prompts": "2"}
    )
    report = export_merged(config, str(adapter))
    assert report.passed and report.max_logit_diff < 1e-3
    assert "preprocessor_config.json" in report.files
    assert json.loads((out / "config.json").read_text())["model_type"] == vision_family(each_vl_model_dir)
    assert "AutoModelForImageTextToText.from_pretrained" in (out / "README.md").read_text()  # how to load it

    merged = AutoModelForImageTextToText.from_pretrained(out).eval()
    tuned = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(each_vl_model_dir), adapter).eval()
    base = AutoModelForImageTextToText.from_pretrained(each_vl_model_dir).eval()
    pixels = (config.model.image_min_pixels, config.model.image_max_pixels)
    inputs = picture_prompt(
        AutoTokenizer.from_pretrained(out), load_image_processor(out), "几个圆？", check_picture(), pixels
    )
    with torch.no_grad():
        merged_logits, tuned_logits, base_logits = (m(**inputs).logits for m in (merged, tuned, base))
    assert torch.allclose(merged_logits, tuned_logits, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-2)  # the adapter changed the answer


def test_gguf_refuses_a_vision_model_by_name(each_vl_model_dir):
    from transformers import AutoConfig

    from studio.export.gguf_arch import GgufUnsupported, architecture_of

    with pytest.raises(GgufUnsupported, match="vision-language model.*mmproj"):
        architecture_of(AutoConfig.from_pretrained(each_vl_model_dir))
