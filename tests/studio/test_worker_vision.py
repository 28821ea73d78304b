"""A vision-language run through the real worker process on the picture demo set: it says which layout it uses,
evaluates and watches prompts with their pictures, saves the image processor beside the adapter, and a run resumed
from its checkpoint ends exactly where an unbroken one does (watching in between changes nothing); a full run keeps
the frozen vision tower bit for bit and saves a whole model with its processor; a Qwen3-VL run learns too."""

from __future__ import annotations

import torch

from tests.support import run_worker

SETTINGS = {
    "data.datasets": "[shapes_zh_demo]",
    "data.max_samples": "30",
    "data.val_size": "0.2",
    "training.precision": "fp32",
    "training.save_steps": "2",
    "training.eval_steps": "2",
    "evaluation.watch_count": "1",
}


def _adapter(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder.adapter_dir / "adapter_model.safetensors")


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: parameter.detach().float() for name, parameter in model.named_parameters()}


def test_a_picture_run_resumed_from_its_checkpoint_ends_where_an_unbroken_one_does(tmp_path, tiny_vl_model_dir):
    unbroken, events = run_worker(tmp_path / "unbroken", tiny_vl_model_dir, **SETTINGS)
    layout = next(e.message for e in events if e.type == "log" and e.message.startswith("Batches:"))
    assert "padding-free packing" in layout and "3-D rotary positions" in layout
    assert [e.step for e in events if e.type == "eval"] == [2, 4]
    watched = next(e for e in events if e.type == "watched").rows[0]  # answered with its picture
    assert watched.answer and "<|image_pad|>" not in watched.prompt
    assert (unbroken.adapter_dir / "preprocessor_config.json").is_file()
    checkpoint = unbroken.checkpoints_dir / "checkpoint-2"
    resumed, again = run_worker(
        tmp_path / "resumed", tiny_vl_model_dir, **SETTINGS, **{"training.resume_from_checkpoint": str(checkpoint)}
    )
    assert next(e for e in again if e.type == "started").start_step == 2
    losses = {e.step: e.loss for e in events if e.type == "step"}
    assert {e.step: e.loss for e in again if e.type == "step"} == {3: losses[3], 4: losses[4]}
    assert losses[4] < losses[1]
    one, other = _adapter(unbroken), _adapter(resumed)
    assert one.keys() == other.keys() and all(torch.equal(one[name], other[name]) for name in one)


def test_a_full_picture_run_keeps_the_frozen_vision_tower_and_saves_a_whole_model_with_its_processor(
    tmp_path, tiny_vl_model_dir
):
    from transformers import AutoImageProcessor, AutoModelForImageTextToText

    settings = {**SETTINGS, "finetuning.method": "full", "evaluation.watch_count": "0"}
    folder, _ = run_worker(tmp_path / "full", tiny_vl_model_dir, **settings)
    before, after = (
        _weights(AutoModelForImageTextToText.from_pretrained(f)) for f in (tiny_vl_model_dir, folder.model_dir)
    )
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {name for name in before if not name.startswith("model.visual.")}
    assert AutoImageProcessor.from_pretrained(folder.model_dir).size.longest_edge == 112 * 112


def test_a_picture_run_is_evaluated_and_predicted_with_its_pictures(tmp_path, tiny_vl_model_dir):
    """Evaluate & Predict on the run's own held-out examples: their turns carry their pictures (val.jsonl), so the
    loss and the predictions of base and adapter both see them."""
    from studio.chat.engine import ChatEngine
    from studio.evaluation.runner import evaluate

    settings = {**SETTINGS, "training.max_steps": "2", "evaluation.watch_count": "0", "training.save_steps": "100"}
    folder, _ = run_worker(tmp_path / "run", tiny_vl_model_dir, **settings)
    config = folder.load_config().with_overrides(
        {"evaluation.max_samples": "3", "generation.max_new_tokens": "4", "evaluation.batch_size": "3"}
    )
    report = evaluate(ChatEngine(), config, str(folder.adapter_dir), compare=True)
    assert report.columns[0] == "base" and len(report.columns) == 2
    assert len(report.samples) == 3 and all(any(turn.get("images") for turn in s.prompt) for s in report.samples)
    for column in report.columns:
        assert report.metrics[column]["eval_loss"] > 0 and len(report.predictions[column]) == 3


def test_a_qwen3_vl_run_learns_from_its_pictures(tmp_path, tiny_qwen3_vl_model_dir):
    """Qwen3-VL (16-pixel patches, deepstack) through the worker: packed with its 3-D positions, it learns, answers a
    watched prompt with its picture and saves its image processor (Qwen3-VL's patch size) beside the adapter. (Its
    4-bit base keeps the vision tower unquantised: tests/studio/modeling/test_vision_parts.py.)"""
    from transformers import AutoImageProcessor

    settings = {**SETTINGS, "training.save_steps": "100"}
    folder, events = run_worker(tmp_path / "qwen3-vl", tiny_qwen3_vl_model_dir, **settings)
    layout = next(e.message for e in events if e.type == "log" and e.message.startswith("Batches:"))
    assert "padding-free packing" in layout and "3-D rotary positions" in layout
    losses = [e.loss for e in events if e.type == "step"]
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert next(e for e in events if e.type == "watched").rows[0].answer
    assert AutoImageProcessor.from_pretrained(folder.adapter_dir).patch_size == 16
