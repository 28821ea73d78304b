"""What each finetuning.method and lora.init makes trainable, and where each adapter starts: freeze picks exactly the
named parameters, OFT and PiSSA/OLoRA start at the original model, PiSSA's saved adapter works on the original base."""

from __future__ import annotations

import pytest
import torch

from studio.config import ConfigError, FinetuningConfig, LoraConfig, RunConfig
from studio.modeling.methods import attach_method, trainable_layers
from studio.modeling.sources import ModelLoadError


def _base(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.requires_grad_(False)


def _logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def _trainable(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


IDS = torch.arange(3, 40).unsqueeze(0)


def test_trainable_layers_count_from_the_end_or_from_the_start():
    assert list(trainable_layers(24, 2)) == [22, 23]
    assert list(trainable_layers(24, -2)) == [0, 1]
    assert list(trainable_layers(2, 5)) == [0, 1]
    assert list(trainable_layers(24, 0)) == []


def test_freeze_trains_the_last_layer_s_mlp_and_the_final_norm_only(tiny_model_dir):
    config = FinetuningConfig(
        method="freeze", freeze_trainable_layers=1, freeze_trainable_modules=["mlp"], freeze_extra_modules=["norm"]
    )
    model = attach_method(_base(tiny_model_dir), config, LoraConfig())
    assert _trainable(model) == {
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight",
    }


def test_freeze_refuses_a_module_the_model_does_not_have_and_lists_those_it_has(tiny_model_dir):
    config = FinetuningConfig(method="freeze", freeze_trainable_modules=["attention"])
    with pytest.raises(ModelLoadError) as caught:
        attach_method(_base(tiny_model_dir), config, LoraConfig())
    assert (
        "'attention'" in str(caught.value) and "self_attn" in str(caught.value) and "embed_tokens" in str(caught.value)
    )
    with pytest.raises(ModelLoadError, match="freeze_trainable_layers"):
        attach_method(_base(tiny_model_dir), FinetuningConfig(method="freeze", freeze_trainable_layers=0), LoraConfig())


def test_full_makes_every_weight_trainable(tiny_model_dir):
    model = attach_method(_base(tiny_model_dir), FinetuningConfig(method="full"), LoraConfig())
    assert all(p.requires_grad for p in model.parameters())


def test_oft_starts_as_the_base_model_and_trains_only_its_blocks(tiny_model_dir):
    base_logits = _logits(_base(tiny_model_dir), IDS)
    model = attach_method(_base(tiny_model_dir), FinetuningConfig(method="oft", oft_block_size=16), LoraConfig())
    assert _trainable(model) and all("oft_" in name for name in _trainable(model))
    # the orthogonal factor starts as the identity: the rotated weights are the base weights
    torch.testing.assert_close(_logits(model, IDS), base_logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_and_olora_move_the_principal_part_into_the_adapter_and_start_at_the_original_model(tiny_model_dir, init):
    original = _base(tiny_model_dir)
    weight = original.model.layers[0].self_attn.q_proj.weight.detach().clone()
    model = attach_method(_base(tiny_model_dir), FinetuningConfig(), LoraConfig(init=init))
    residual = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert (residual - weight).abs().max() > 1e-3  # the base keeps only what the adapter does not hold
    torch.testing.assert_close(_logits(model, IDS), _logits(original, IDS), rtol=0, atol=1e-4)


def test_a_trained_pissa_adapter_is_saved_as_a_plain_lora_of_the_original_base(tiny_model_dir, tmp_path):
    from peft import PeftModel

    model = attach_method(
        _base(tiny_model_dir), FinetuningConfig(), LoraConfig(init="pissa"), initial_dir=tmp_path / "a0"
    )
    with torch.no_grad():  # stands for training: every adapter weight moves
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    trained = _logits(model, IDS)
    model.save_pretrained(str(tmp_path / "adapter"), path_initial_model_for_weight_conversion=str(tmp_path / "a0"))
    loaded = PeftModel.from_pretrained(_base(tiny_model_dir), str(tmp_path / "adapter"))
    assert loaded.peft_config["default"].r == 2 * LoraConfig().rank
    torch.testing.assert_close(_logits(loaded, IDS), trained, rtol=0, atol=1e-4)


def test_modules_to_save_train_whole_beside_the_adapter(tiny_model_dir):
    model = attach_method(_base(tiny_model_dir), FinetuningConfig(), LoraConfig(modules_to_save=["lm_head"]))
    whole = [name for name in _trainable(model) if "lora_" not in name]
    # the tiny model ties its output layer to the embeddings: one trained copy, still tied
    assert whole == ["base_model.model.model.embed_tokens.modules_to_save.default.weight"]
    head = model.base_model.model.lm_head
    assert (
        head.modules_to_save["default"].weight
        is model.base_model.model.model.embed_tokens.modules_to_save["default"].weight
    )


@pytest.mark.parametrize(
    ("overrides", "said"),
    [
        ({"finetuning.method": "full", "quantization.method": "4bit"}, "quantization.method"),
        ({"finetuning.method": "freeze", "quantization.method": "8bit"}, "quantization.method"),
        ({"finetuning.method": "full", "training.stage": "ppo", "ppo.reward_model": "x"}, "finetuning.method to lora"),
        ({"finetuning.method": "full", "lora.init_adapter": "runs/x/adapter"}, "lora.init_adapter"),
        ({"lora.init": "pissa", "quantization.method": "4bit"}, "full precision"),
        ({"lora.init": "loftq", "quantization.method": "none"}, "4bit"),
    ],
)
def test_combinations_that_cannot_train_are_refused_with_what_to_change(overrides, said):
    with pytest.raises(ConfigError) as caught:
        RunConfig().with_overrides(overrides)
    assert said in str(caught.value)


def test_fsdp_refuses_a_model_trained_whole_and_says_to_use_ddp():
    from studio.control.devices import DeviceChoiceError, plan_devices

    config = RunConfig().with_overrides(
        {"finetuning.method": "full", "training.devices": "2", "distributed.strategy": "fsdp"}
    )
    with pytest.raises(DeviceChoiceError, match="'ddp'"):
        plan_devices(config, gpu_count=0)
    assert plan_devices(config.with_overrides({"distributed.strategy": "ddp"}), gpu_count=0).processes == 2


@pytest.mark.parametrize("pure", [False, True])
def test_pure_bf16_keeps_the_trained_weights_and_their_moments_in_bf16(tiny_model_dir, tiny_tokenizer, tmp_path, pure):
    import threading

    from studio.config import QuantizationConfig, TrainingConfig
    from studio.modeling.compute import resolve_plan
    from studio.training.loop import Trainer
    from tests.support import demo_conversations

    training = TrainingConfig(precision="bf16", pure_bf16=pure, max_steps=1, batch_size=2, save_steps=1000)
    plan = resolve_plan(QuantizationConfig(method="none"), training, cuda=False, finetuning="full")
    model = attach_method(_base(tiny_model_dir).to(torch.bfloat16), FinetuningConfig(method="full"), LoraConfig())
    trainer = Trainer(
        model,
        train=demo_conversations(tiny_tokenizer, 4),
        val=[],
        config=training,
        lora=LoraConfig(),
        plan=plan,
        checkpoints_dir=tmp_path,
        emit=lambda event: None,
        abort=threading.Event(),
    )
    trainer.run()
    want = torch.bfloat16 if pure else torch.float32  # else fp32 master weights under bf16 autocast
    assert {p.dtype for p in model.parameters()} == {want}
    moments = [v for state in trainer.optimizer.state.values() for k, v in state.items() if k.startswith("exp_avg")]
    assert moments and {m.dtype for m in moments} == {want}


def test_loftq_starts_a_4bit_model_closer_to_the_original_than_a_plain_qlora_start(tiny_model_dir):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    def four_bit():
        quantized = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, quantization_config=quantized, dtype=torch.float32)
        return model.requires_grad_(False)

    original = _logits(_base(tiny_model_dir), IDS)
    plain = attach_method(four_bit(), FinetuningConfig(), LoraConfig(rank=16))
    loftq = attach_method(four_bit(), FinetuningConfig(), LoraConfig(rank=16, init="loftq"), model_path=tiny_model_dir)
    plain_error = (_logits(plain, IDS) - original).abs().mean()
    loftq_error = (_logits(loftq, IDS) - original).abs().mean()
    assert loftq_error < 0.8 * plain_error  # B·A holds the best rank-16 part of what the rounding lost
