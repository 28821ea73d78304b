"""Merging on the tiny model: logits match base+adapter, shards respect the size, plain transformers loads it."""

import json

import pytest
import torch

from studio.config import RunConfig
from studio.export.merge import ExportError, export_merged, read_index, shard_sizes


def test_merged_export_matches_base_plus_adapter(tiny_model_dir, strong_adapter, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    config = RunConfig().with_overrides(
        {
            "model.name_or_path": str(tiny_model_dir),
            "export.output_dir": str(out),
            "export.max_shard_size": "200KB",
        }
    )
    report = export_merged(config, str(strong_adapter))
    assert report.passed and report.max_logit_diff < 1e-3 and report.dtype == "float32"
    sizes = shard_sizes(out)
    tensors_per_shard = {}
    for shard in read_index(out)["weight_map"].values():
        tensors_per_shard[shard] = tensors_per_shard.get(shard, 0) + 1
    assert len(sizes) > 1
    for shard, size in sizes.items():  # only a single tensor larger than the limit may overshoot it
        assert size <= 200_000 + 1_000 or tensors_per_shard[shard] == 1, (shard, size)
    assert {"README.md", "tokenizer_config.json", "config.json"} <= set(report.files)
    assert "strong" in (out / "README.md").read_text()

    merged = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no peft
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), strong_adapter)
    ids = AutoTokenizer.from_pretrained(out)("你好", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, tuned(ids).logits, atol=1e-4)
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen2"


def test_export_refuses_a_non_empty_folder(tiny_model_dir, strong_adapter, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    config = RunConfig().with_overrides(
        {"model.name_or_path": str(tiny_model_dir), "export.output_dir": str(tmp_path / "taken")}
    )
    with pytest.raises(ExportError, match="not empty"):
        export_merged(config, str(strong_adapter))
