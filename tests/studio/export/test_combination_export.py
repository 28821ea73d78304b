"""Export merges a weighted combination of adapters: made again from the folders, its logits equal Chat's."""

import json

import torch
from transformers import AutoModelForCausalLM

from studio.api import Studio
from studio.chat import ChatEngine
from studio.config import ModelConfig, QuantizationConfig, RunConfig
from studio.export.merge import export_merged


def test_merged_combination_answers_as_the_chat_combination(tiny_model_dir, strong_adapter, second_adapter, tmp_path):
    engine = ChatEngine()
    engine.load(ModelConfig(name_or_path=str(tiny_model_dir)), QuantizationConfig(method="none"), precision="fp32")
    a, b = engine.load_adapter(str(strong_adapter)).name, engine.load_adapter(str(second_adapter)).name
    engine.combine("mix", {a: 0.7, b: 0.3}, "linear")
    ids = engine.tokenizer("你好，世界", return_tensors="pt")["input_ids"]
    with engine.selected("mix") as (model, _), torch.inference_mode():
        chatted = model(input_ids=ids).logits
    combination = engine.combinations["mix"]
    engine.unload()

    out = tmp_path / "merged"
    config = RunConfig().with_overrides({"model.name_or_path": str(tiny_model_dir), "export.output_dir": str(out)})
    report = export_merged(config, str(strong_adapter), combination=combination)
    assert report.passed and "studio_combination.json" in report.files
    recipe = json.loads((out / "studio_combination.json").read_text())
    assert recipe["combination_type"] == "linear"
    assert [(p["name"], p["path"], p["weight"]) for p in recipe["adapters"]] == [
        (a, str(strong_adapter), 0.7),
        (b, str(second_adapter), 0.3),
    ]
    assert "0.7 × strong + 0.3 × second (linear)" in (out / "README.md").read_text()
    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft
    with torch.inference_mode():
        assert torch.allclose(merged(input_ids=ids).logits, chatted, atol=1e-4)


def test_studio_reads_a_recipe_of_folders(tmp_path, strong_adapter, second_adapter):
    studio = Studio(tmp_path / "runs")
    mix = studio.combination([(str(strong_adapter), 1.0), (str(second_adapter), -0.5)], "cat")
    assert (mix.rank, mix.describe()) == (8, "1 × strong + -0.5 × second (cat)")
    assert mix.parts[1].path == str(second_adapter)


def test_a_combination_exports_as_gguf_with_its_recipe(tmp_path, tiny_model_dir, strong_adapter, second_adapter):
    from studio.export.gguf_export import export_gguf

    out = tmp_path / "take-home"
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "export.output_dir": str(out),
            "export.format": "gguf",
            "export.gguf_type": "f16",
        }
    )
    mix = Studio(tmp_path / "runs").combination([(str(strong_adapter), 0.5), (str(second_adapter), 0.5)], "svd")
    report = export_gguf(config, str(strong_adapter), combination=mix)
    assert report.passed and "studio_combination.json" in report.files
    assert json.loads((out / "studio_combination.json").read_text())["combination_type"] == "svd"
