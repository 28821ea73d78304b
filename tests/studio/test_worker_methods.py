"""Every finetuning method through the real worker process: full updates every weight, freeze exactly the chosen ones
(the rest bit-identical), both save a whole model that transformers loads and resume where they stopped; OFT and an
8-bit base train an adapter."""

from __future__ import annotations

import json

import pytest
import torch

from tests.support import run_worker

FP32 = {"training.precision": "fp32"}  # the saved weights then compare bit for bit with the original ones


def _weights(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return {name: p.detach() for name, p in model.named_parameters()}


def test_full_fine_tuning_changes_every_weight_and_saves_a_whole_model(tmp_path, tiny_model_dir):
    folder, events = run_worker(tmp_path / "full", tiny_model_dir, **FP32, **{"finetuning.method": "full"})
    started = next(e for e in events if e.type == "started")
    assert started.method.startswith("Full fine-tuning") and started.trainable_params == started.total_params
    finished = next(e for e in events if e.type == "finished")
    assert finished.adapter_dir == str(folder.model_dir) and not folder.adapter_dir.exists()
    before, after = _weights(tiny_model_dir), _weights(folder.model_dir)
    assert before.keys() == after.keys()
    assert all(not torch.equal(before[name], after[name]) for name in before)
    assert (folder.model_dir / "studio_config.yaml").is_file() and (folder.model_dir / "tokenizer.json").is_file()


def test_freeze_changes_exactly_the_chosen_weights(tmp_path, tiny_model_dir):
    chosen = {"finetuning.freeze_trainable_layers": "1", "finetuning.freeze_extra_modules": "[norm]"}
    folder, _ = run_worker(tmp_path / "freeze", tiny_model_dir, **FP32, **{"finetuning.method": "freeze"}, **chosen)
    before, after = _weights(tiny_model_dir), _weights(folder.model_dir)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed == {name for name in before if name.startswith("model.layers.1.") or name == "model.norm.weight"}


def test_a_full_run_resumed_from_its_checkpoint_ends_where_an_unbroken_one_does(tmp_path, tiny_model_dir):
    settings = {**FP32, "finetuning.method": "full", "training.save_steps": "2", "training.eval_steps": "1000"}
    unbroken, _ = run_worker(tmp_path / "unbroken", tiny_model_dir, **settings)
    checkpoint = unbroken.checkpoints_dir / "checkpoint-2"
    assert (checkpoint / "state.json").is_file()
    resumed, events = run_worker(
        tmp_path / "resumed", tiny_model_dir, **settings, **{"training.resume_from_checkpoint": str(checkpoint)}
    )
    assert next(e for e in events if e.type == "started").start_step == 2
    one, other = _weights(unbroken.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(one[name], other[name]) for name in one)


@pytest.mark.parametrize(
    ("overrides", "method", "peft_type"),
    [
        ({"finetuning.method": "oft", "finetuning.oft_block_size": "16"}, "OFT on", "OFT"),
        ({"quantization.method": "8bit"}, "LoRA on a quantised base (8-bit", "LORA"),
    ],
)
def test_oft_and_an_8bit_base_train_an_adapter(tmp_path, tiny_model_dir, overrides, method, peft_type):
    folder, events = run_worker(tmp_path / "run", tiny_model_dir, **overrides)
    assert next(e for e in events if e.type == "started").method.startswith(method)
    losses = [e.loss for e in events if e.type == "step"]
    assert len(losses) == 4 and all(loss == loss for loss in losses)  # four finite steps
    config = json.loads((folder.adapter_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == peft_type


@pytest.mark.parametrize("optimizer", ["adamw_8bit", "galore"])
def test_optimizers_of_whole_weights_train_and_checkpoint_a_full_run(tmp_path, tiny_model_dir, optimizer):
    # bitsandbytes' moments share one quantisation map among all weights, and GaLore's package imports bitsandbytes
    # in a run that quantises nothing
    settings = {"finetuning.method": "full", "optimizer.name": optimizer, "training.save_steps": "2"}
    folder, events = run_worker(tmp_path / optimizer, tiny_model_dir, **settings)
    losses = [e.loss for e in events if e.type == "step"]
    assert losses[-1] < losses[0]
    assert (folder.checkpoints_dir / "checkpoint-2" / "optimizer.safetensors").is_file()
