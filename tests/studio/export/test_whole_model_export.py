"""Exporting what full, freeze and OFT runs trained: a whole model saved again as it is (no peft), an OFT adapter
merged; both through the reload check, with a card that says how the run trained."""

import torch

from studio.adapters import read_adapter
from studio.config import RunConfig
from studio.export.hub import plan_upload
from studio.export.merge import export_merged
from studio.export.model_card import adapter_card

PROMPT = "你好，请介绍一下你自己。"


def _config(tiny_model_dir, out, **overrides):
    return RunConfig().with_overrides(
        {"model.name_or_path": str(tiny_model_dir), "export.output_dir": str(out), **overrides}
    )


def _logits(model, model_dir) -> torch.Tensor:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(model_dir)(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def test_a_full_runs_export_is_its_model_in_the_export_dtype(method_runs, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    run, out = method_runs("full"), tmp_path / "full-export"
    report = export_merged(_config(tiny_model_dir, out, **{"export.dtype": "fp32"}), str(run.model_dir))
    assert report.passed and report.max_logit_diff == 0 and report.dtype == "float32"
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "README.md"} <= set(report.files)
    assert "adapter_config.json" not in report.files and "studio_config.yaml" not in report.files
    exported = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, fp32 as asked
    trained = AutoModelForCausalLM.from_pretrained(run.model_dir, dtype=torch.float32)
    assert exported.dtype == torch.float32
    assert torch.equal(_logits(exported, out), _logits(trained, run.model_dir))
    card = (out / "README.md").read_text()
    assert "run `full`, a full fine-tune of" in card and "Fine-tuning: full (every weight trained)" in card


def test_an_oft_adapter_is_merged_into_its_base(method_runs, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, out = method_runs("oft"), tmp_path / "oft-export"
    report = export_merged(_config(tiny_model_dir, out), str(run.adapter_dir))
    assert report.passed and "adapter_config.json" not in report.files
    merged = AutoModelForCausalLM.from_pretrained(out)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(run.adapter_dir))
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert torch.allclose(_logits(merged, out), _logits(tuned, out), atol=1e-4)
    assert not torch.allclose(_logits(merged, out), _logits(base, out), atol=1e-3)  # the adapter is in there
    assert "the OFT adapter `oft` merged into" in (out / "README.md").read_text()


def test_a_freeze_runs_model_goes_to_the_hub_with_a_card_of_its_own(method_runs):
    info = read_adapter(method_runs("freeze").model_dir)
    card = adapter_card(info, "me/freeze")
    assert card.startswith("---\nlibrary_name: transformers\ntags: [freeze, qlora-studio]")
    assert 'AutoModelForCausalLM.from_pretrained("me/freeze")' in card and "PeftModel" not in card
    assert "Fine-tuning: freeze (the last 1 decoder layers trained" in card
    upload = plan_upload(info.path, card)
    assert upload.kind == "model" and upload.card == card and "model.safetensors" in upload.files


def test_a_freeze_runs_model_becomes_one_gguf_file_with_its_modelfile(method_runs, tiny_model_dir, tmp_path):
    from studio.export.gguf_export import export_gguf

    out = tmp_path / "freeze-gguf"
    config = _config(tiny_model_dir, out, **{"export.format": "gguf", "export.gguf_type": "f16"})
    report = export_gguf(config, str(method_runs("freeze").model_dir))
    assert report.passed and report.agreement == 1.0 and {"Modelfile", "freeze-gguf-f16.gguf"} <= set(report.files)
    assert "run `freeze`, a freeze fine-tune of" in (out / "README.md").read_text()
